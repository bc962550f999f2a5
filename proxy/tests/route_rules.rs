//! Route rules cannot be dodged by spelling the path differently: every spelling nginx
//! normalises to `/NAME/secret` (`..` segments, `%2e%2e`, `..%2f`, `//`, `/./`, an encoded
//! letter, an encoded `/`) is matched, limited and cached as `/NAME/secret` — through the real
//! binary, over raw TCP so the spelling reaches weir untouched — while the origin receives
//! the target exactly as the client sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, raw_request, status_of, Origin, Weir};

/// The spellings of `/{name}/secret` from issue 14 (bug 1), `name` of at least two letters.
fn dodges(name: &str) -> Vec<String> {
    let (first, rest) = name.split_at(1);
    let encoded = format!("%{:02x}{rest}", first.as_bytes()[0]);
    vec![
        format!("/public/../{name}/secret"),
        format!("/public/%2e%2e/{name}/secret"),
        format!("/public/..%2f{name}/secret"),
        format!("//{name}/secret"),
        format!("/./{name}/secret"),
        format!("/{encoded}/secret"),
        format!("/{name}%2fsecret"),
        format!("/{name}%2Fsecret"),
        format!("/{name}//secret"),
        format!("/a/b/%2E%2E/..//{name}/./secret"),
    ]
}

/// A private route denying everyone, a limited route (one request a minute per `uri`), a
/// cached route keyed by `$uri`, and everything else to the origin.
fn start(origin: &Origin, cache_dir: &std::path::Path) -> Weir {
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  threads: 2\n  access_log: {{path: 'off'}}\n\
         limits: {{per_uri: {{key: uri, rate: 1r/m}}}}\n\
         caches: {{c: {{path: {cache}, key: '$scheme$host$uri', valid: {{'200': 10m}}}}}}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{origin}']}}]}}}}\n\
         routes:\n\
         \x20 - {{name: private, match: {{path_prefix: /private/}}, upstream: o,\n\
         \x20     plugins: [{{access: {{deny: ['0.0.0.0/0', '::/0']}}}}]}}\n\
         \x20 - {{name: limited, match: {{path_prefix: /limited/}}, upstream: o,\n\
         \x20     plugins: [{{limit_req: {{zone: per_uri, status: 429}}}}]}}\n\
         \x20 - {{name: cached, match: {{path_prefix: /cached/}}, upstream: o,\n\
         \x20     plugins: [{{cache: {{zone: c}}}}]}}\n\
         \x20 - {{name: main, match: {{path_prefix: /}}, upstream: o}}\n",
        cache = cache_dir.display(),
        origin = origin.addr(),
    );
    Weir::start(&yaml, port)
}

fn get(port: u16, target: &str) -> String {
    raw_request(
        port,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn access_catches_every_spelling() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start(&origin, dir.path());
    assert_eq!(status_of(&get(weir.port, "/private/secret")), 403);
    for dodge in dodges("private") {
        let resp = get(weir.port, &dodge);
        assert_eq!(status_of(&resp), 403, "{dodge}: {resp}");
    }
    assert_eq!(origin.total_hits(), 0, "nothing private reached the origin");
    // The same spellings of a public path reach the origin exactly as sent.
    for dodge in dodges("public") {
        let resp = get(weir.port, &dodge);
        assert_eq!(status_of(&resp), 200, "{dodge}: {resp}");
        assert_eq!(origin.hits(&dodge), 1, "{dodge} forwarded as sent");
    }
}

#[test]
fn limit_req_counts_every_spelling_as_one_uri() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start(&origin, dir.path());
    assert_eq!(status_of(&get(weir.port, "/limited/secret")), 200);
    for dodge in dodges("limited") {
        let resp = get(weir.port, &dodge);
        assert_eq!(status_of(&resp), 429, "{dodge}: {resp}");
    }
    assert_eq!(origin.total_hits(), 1);
    assert_eq!(origin.hits("/limited/secret"), 1);
    // Another path has a key (and a bucket) of its own.
    assert_eq!(status_of(&get(weir.port, "/limited/other")), 200);
}

#[test]
fn cache_serves_every_spelling_from_one_key() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start(&origin, dir.path());
    let first = "/public/%2e%2e/cached/secret";
    let resp = get(weir.port, first);
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(header(&resp, "x-cache-status"), Some("MISS"), "{resp}");
    // The origin got the first spelling as sent, and nothing more.
    assert_eq!(origin.hits(first), 1);
    for dodge in dodges("cached")
        .into_iter()
        .chain(["/cached/secret".to_string()])
    {
        let resp = get(weir.port, &dodge);
        assert_eq!(status_of(&resp), 200, "{dodge}: {resp}");
        assert_eq!(
            header(&resp, "x-cache-status"),
            Some("HIT"),
            "{dodge}: {resp}"
        );
    }
    assert_eq!(origin.total_hits(), 1);
}

#[test]
fn paths_above_root_and_bad_escapes_are_refused() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start(&origin, dir.path());
    for bad in [
        "/..",
        "/../private/secret",
        "/a/..%2f..%2f..%2fetc/passwd",
        "/%2e%2e/x",
        "/x/%zz",
        "/x%2",
        "/x%00y",
    ] {
        let resp = get(weir.port, bad);
        assert_eq!(status_of(&resp), 400, "{bad}: {resp}");
    }
    assert_eq!(origin.total_hits(), 0);
}
