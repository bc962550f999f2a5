//! The fast path for plain fresh cache HITs against pingora-cache's hit path: the same
//! request answered both ways (a non-matching `If-None-Match` sends it down pingora-cache's
//! path without changing the answer) gives the same status, headers in the same order (the
//! zone's status header and the `headers` plugin's edits included), body and access-log
//! fields; only `Date` and `Age` may differ; the cache counters count both as HITs. With the
//! memory tier off and on, bodies in one piece and over several, stored with a length and
//! chunked, GET and HEAD; sendfile on plain HTTP/1, bytes over TLS and HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};
use weir_origin::expected_byte;

struct Setup {
    weir: Weir,
    _origin: Origin,
    dir: tempfile::TempDir,
    port: u16,
    admin: u16,
}

/// weir (trace lines of the fast path on) with zone `c` (`memory`), a JSON access log and a
/// route that edits response headers before caching them.
fn start(memory: &str) -> Setup {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 1\n  grace_period: 1s\n\
         \x20 access_log: {{ path: {dir}/access.log, format: json }}\n\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: t0ken }}\n\
         caches:\n  c:\n    path: {dir}/cache\n    memory: {memory}\n    valid: {{ \"200\": 10m }}\n\
         upstreams:\n  o: {{ tiers: [{{ name: a, servers: [\"{origin}\"] }}] }}\n\
         routes:\n  - upstream: o\n    plugins:\n\
         \x20     - headers: {{ response: {{ set: {{ X-Served-By: weir }}, add: {{ X-Extra: one }}, remove: [X-Origin] }} }}\n\
         \x20     - cache: {{ zone: c }}\n",
        dir = dir.path().display(),
        origin = origin.addr()
    );
    let env = [("RUST_LOG", "info,weir::proxy::fresh_hit=trace")];
    let weir = Weir::start_with_env(&yaml, port, &env);
    common::wait_listening(("127.0.0.1", admin));
    Setup {
        weir,
        _origin: origin,
        dir,
        port,
        admin,
    }
}

/// One answer: status line, header lines in order (without Date and Age), and the body with
/// any chunked framing removed.
#[derive(Debug, PartialEq)]
struct Answer {
    status_line: String,
    headers: Vec<String>,
    age: Option<String>,
    body: Vec<u8>,
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn ask(port: u16, method: &str, path: &str, extra: &str) -> Answer {
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: fast.test\r\nConnection: close\r\n{extra}\r\n");
    let raw = raw_request_bytes(port, req.as_bytes());
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let mut headers = Vec::new();
    let mut age = None;
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("age:") {
            age = Some(l.to_string());
        } else if !lower.starts_with("date:") {
            headers.push(l.to_string());
        }
    }
    let body = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked && method != "HEAD" {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Answer {
        status_line,
        headers,
        age,
        body,
    }
}

/// `raw_request`, but the bytes (bodies are binary).
fn raw_request_bytes(port: u16, raw: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(expected_byte).collect()
}

fn fast_lines(s: &Setup) -> usize {
    s.weir
        .stderr()
        .matches("fresh HIT on the fast path")
        .count()
}

/// The access log's lines as (uri, status, bytes_sent, cache) in order.
fn logged(s: &Setup) -> Vec<(String, u64, u64, String)> {
    let text = std::fs::read_to_string(s.dir.path().join("access.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["uri"].as_str().unwrap().to_string(),
                v["status"].as_u64().unwrap(),
                v["bytes_sent"].as_u64().unwrap(),
                v["cache"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn wait_logged(s: &Setup, n: usize) -> Vec<(String, u64, u64, String)> {
    for _ in 0..100 {
        let l = logged(s);
        if l.len() >= n {
            return l;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    logged(s)
}

const SLOW: &str = "If-None-Match: \"matches-nothing\"\r\n";

fn fast_and_pingora_hits_agree(memory: &str) {
    let s = start(memory);
    // (path, body length): one piece, several 64 KiB pieces, stored chunked, with validators.
    let cases = [
        ("/one?size=5000", 5000),
        ("/many?size=200k", 200 * 1024),
        ("/chunked?size=70000&chunked=1", 70000),
        (
            "/validators?size=300&etag=%22v1%22&last_modified=Sat,%2001%20Jan%202000%2000:00:00%20GMT",
            300,
        ),
    ];
    let mut fast = 0;
    let mut requests = 0;
    for (path, len) in cases {
        let miss = ask(s.port, "GET", path, "");
        assert!(
            miss.headers.contains(&"x-cache-status: MISS".to_string()),
            "{miss:?}"
        );
        assert_eq!(miss.body, pattern(len), "{path}");
        requests += 1;
        for method in ["GET", "HEAD", "GET"] {
            let by_fast = ask(s.port, method, path, "");
            let by_pingora = ask(s.port, method, path, SLOW);
            requests += 2;
            fast += 1;
            assert_eq!(
                fast_lines(&s),
                fast,
                "{method} {path} took the fast path once"
            );
            assert_eq!(by_fast.status_line, "HTTP/1.1 200 OK");
            assert!(by_fast.age.is_some() && by_pingora.age.is_some());
            assert!(
                by_fast.headers.contains(&"x-cache-status: HIT".to_string()),
                "{by_fast:?}"
            );
            assert!(
                by_fast.headers.contains(&"X-Served-By: weir".to_string())
                    || by_fast
                        .headers
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case("x-served-by: weir"))
            );
            assert!(!by_fast
                .headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("x-origin:")));
            assert_eq!(
                by_fast.status_line, by_pingora.status_line,
                "{method} {path}"
            );
            assert_eq!(by_fast.headers, by_pingora.headers, "{method} {path}");
            assert!(
                by_fast.body == by_pingora.body,
                "{method} {path}: bodies differ"
            );
            let want = if method == "HEAD" {
                Vec::new()
            } else {
                pattern(len)
            };
            assert_eq!(by_fast.body, want, "{method} {path}");
        }
    }
    // Bodies of 8 KiB or more with a length went out with sendfile (HTTP/1, plain TCP), from
    // the open file also when the memory tier holds a copy: 200 KiB twice (two GETs).
    let sendfile: usize = s
        .weir
        .stderr()
        .lines()
        .filter_map(|l| l.split("sendfile: ").nth(1))
        .map(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(sendfile, 2 * 200 * 1024);
    // The access log: each fast HIT logged like the pingora one after it.
    let log = wait_logged(&s, requests);
    assert_eq!(log.len(), requests);
    let hits: Vec<_> = log.iter().filter(|l| l.3 == "HIT").collect();
    assert_eq!(hits.len(), requests - 4);
    for pair in hits.chunks(2) {
        assert_eq!(pair[0], pair[1]);
        assert_eq!(pair[0].1, 200);
    }
    assert!(hits.iter().any(|l| l.2 == 200 * 1024));
    // The cache counters count fast HITs as HITs.
    let metrics = String::from_utf8_lossy(&raw_request_bytes(
        s.admin,
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ))
    .into_owned();
    let count = |status: &str| -> u64 {
        let line = format!("weir_cache_requests_total{{status=\"{status}\",zone=\"c\"}} ");
        let at = metrics
            .find(&line)
            .unwrap_or_else(|| panic!("{line} in {metrics}"));
        let rest = &metrics[at + line.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(count("HIT"), (requests - 4) as u64);
    assert_eq!(count("MISS"), 4);
}

#[test]
fn fast_and_pingora_hits_agree_from_disk() {
    fast_and_pingora_hits_agree("0");
}

#[test]
fn fast_and_pingora_hits_agree_from_memory() {
    fast_and_pingora_hits_agree("8MiB");
}

/// What the fast path must leave to pingora-cache: Range, conditionals that match, bypass
/// and expired objects are answered as before, never by the fast path.
#[test]
fn only_plain_fresh_hits_take_the_fast_path() {
    let s = start("0");
    let path = "/r?size=1000&etag=%22e%22&cc=max-age%3D1";
    assert_eq!(ask(s.port, "GET", path, "").status_line, "HTTP/1.1 200 OK");
    let range = ask(s.port, "GET", path, "Range: bytes=0-9\r\n");
    assert_eq!(range.status_line, "HTTP/1.1 206 Partial Content");
    assert_eq!(range.body, pattern(10));
    let inm = ask(s.port, "GET", path, "If-None-Match: \"e\"\r\n");
    assert_eq!(inm.status_line, "HTTP/1.1 304 Not Modified");
    assert_eq!(fast_lines(&s), 0);
    assert_eq!(ask(s.port, "GET", path, "").body, pattern(1000));
    assert_eq!(fast_lines(&s), 1);
    // Expired (max-age=1 lasts 1-2 s): pingora-cache's path refreshes it.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let expired = ask(s.port, "GET", path, "");
    assert!(
        !expired.headers.contains(&"x-cache-status: HIT".to_string()),
        "{:?}",
        expired.headers
    );
    assert_eq!(fast_lines(&s), 1);
    // Vary: one variant per value, never the fast path.
    let vary = "/v?size=10&vary=Accept";
    ask(s.port, "GET", vary, "Accept: a\r\n");
    let hit = ask(s.port, "GET", vary, "Accept: a\r\n");
    assert!(
        hit.headers.contains(&"x-cache-status: HIT".to_string()),
        "{hit:?}"
    );
    assert_eq!(fast_lines(&s), 1);
}

/// Over TLS (HTTP/1.1 and HTTP/2 by ALPN) the fast path answers too, and its bodies are
/// written as bytes: sendfile is for plain TCP only.
#[tokio::test]
async fn tls_hits_take_the_fast_path_without_sendfile() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (plain, h2, h1) = (free_port(), free_port(), free_port());
    let tls = format!(
        "tls: {{cert: '{}', key: '{}'}}",
        cert.display(),
        key.display()
    );
    let yaml = format!(
        "server:\n  listen:\n    - '127.0.0.1:{plain}'\n\
         \x20   - {{addr: '127.0.0.1:{h2}', {tls}, http2: true}}\n\
         \x20   - {{addr: '127.0.0.1:{h1}', {tls}}}\n\
         caches:\n  c:\n    path: {}/cache\n    valid: {{ \"200\": 10m }}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
         routes: [{{upstream: o, plugins: [{{cache: {{zone: c}}}}]}}]\n",
        dir.path().display(),
        origin.addr()
    );
    let env = [("RUST_LOG", "info,weir::proxy::fresh_hit=trace")];
    let weir = Weir::start_with_env(&yaml, plain, &env);
    common::wait_listening(("127.0.0.1", h2));
    common::wait_listening(("127.0.0.1", h1));
    let root = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .no_proxy()
        .build()
        .unwrap();
    let path = "/t?size=200k";
    for (port, version, status) in [
        (h1, reqwest::Version::HTTP_11, "MISS"),
        (h1, reqwest::Version::HTTP_11, "HIT"),
        (h2, reqwest::Version::HTTP_2, "HIT"),
    ] {
        let r = client
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.headers()["x-cache-status"], status);
        assert!(status == "MISS" || r.headers().contains_key("age"));
        assert_eq!(r.bytes().await.unwrap().to_vec(), pattern(200 * 1024));
    }
    let log = weir.stderr();
    assert_eq!(
        log.matches("fresh HIT on the fast path").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("sendfile:"), "{log}");
}

/// A body larger than the socket buffers, to a client that reads slowly: sendfile waits for
/// the socket to drain (its partial sends resume where they stopped) and the body arrives
/// whole, followed by the next answer on the same connection.
#[test]
fn a_slow_reader_gets_a_large_body_sent_from_the_file_whole() {
    use std::io::{Read, Write};
    let s = start("0");
    let path = "/big?size=6m";
    let len = 6 * 1024 * 1024;
    assert_eq!(ask(s.port, "GET", path, "").body.len(), len);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: fast.test\r\n\r\n");
    c.write_all(format!("{req}{req}").as_bytes()).unwrap();
    for _ in 0..2 {
        // The head, a byte at a time; then the body in slow 64 KiB reads.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"));
        let mut body = vec![0u8; len];
        for (i, piece) in body.chunks_mut(64 * 1024).enumerate() {
            c.read_exact(piece).unwrap();
            if i % 8 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        assert!(body == pattern(len), "the body arrived intact");
    }
    assert_eq!(fast_lines(&s), 2);
}
