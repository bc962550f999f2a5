//! Routing through the real binary: exact and wildcard hosts, path prefixes, exact paths, first match
//! wins, and 404 when nothing matches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};

async fn origin_name(weir: &Weir, host: &str, path: &str) -> (u16, String) {
    let r = common::client()
        .get(weir.url(path))
        .header("Host", host)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let name = r
        .headers()
        .get("x-origin")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    (status, if name.is_empty() { body } else { name })
}

#[tokio::test]
async fn host_wildcard_prefix_and_no_match() {
    let (a, b, c, d) = (
        Origin::start("exact"),
        Origin::start("wild"),
        Origin::start("prefix"),
        Origin::start("late"),
    );
    let port = free_port();
    let up = |o: &Origin| format!("{{tiers: [{{name: t, servers: ['{}']}}]}}", o.addr());
    let yaml = format!(
        "server: {{listen: ['127.0.0.1:{port}'], threads: 2}}\n\
         upstreams: {{a: {}, b: {}, c: {}, d: {}}}\n\
         routes:\n\
         - {{name: exact, match: {{host: img.example.com}}, upstream: a}}\n\
         - {{name: wild, match: {{host: ['*.img.example.com']}}, upstream: b}}\n\
         - {{name: api, match: {{host: api.example.com, path_prefix: /v1/}}, upstream: c}}\n\
         - {{name: api-late, match: {{path_prefix: /v1/}}, upstream: d}}\n",
        up(&a),
        up(&b),
        up(&c),
        up(&d)
    );
    let weir = Weir::start(&yaml, port);

    assert_eq!(
        origin_name(&weir, "img.example.com", "/x").await,
        (200, "exact".into())
    );
    assert_eq!(
        origin_name(&weir, "IMG.Example.COM:8080", "/x").await,
        (200, "exact".into())
    );
    assert_eq!(
        origin_name(&weir, "a.img.example.com", "/x").await,
        (200, "wild".into())
    );
    assert_eq!(
        origin_name(&weir, "a.b.img.example.com", "/x").await,
        (200, "wild".into())
    );
    assert_eq!(
        origin_name(&weir, "api.example.com", "/v1/users").await,
        (200, "prefix".into())
    );
    // Same prefix, other host: the first route does not match, the later one does.
    assert_eq!(
        origin_name(&weir, "other.example.com", "/v1/users").await,
        (200, "late".into())
    );
    let (status, body) = origin_name(&weir, "api.example.com", "/v2/users").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
    let (status, _) = origin_name(&weir, "img.example.org", "/x").await;
    assert_eq!(status, 404);
    assert_eq!(a.hits("/x"), 2);
    assert_eq!(b.hits("/x"), 2);
    assert_eq!(c.hits("/v1/users"), 1);
    assert_eq!(d.hits("/v1/users"), 1);
}

#[tokio::test]
async fn exact_path_matches_only_that_path() {
    let (a, b) = (Origin::start("exact"), Origin::start("rest"));
    let port = free_port();
    let up = |o: &Origin| format!("{{tiers: [{{name: t, servers: ['{}']}}]}}", o.addr());
    let yaml = format!(
        "server: {{listen: ['127.0.0.1:{port}'], threads: 2}}\n\
         upstreams: {{a: {}, b: {}}}\n\
         routes:\n\
         - {{name: health, match: {{path: /healthz}}, upstream: a}}\n\
         - {{name: rest, upstream: b}}\n",
        up(&a),
        up(&b)
    );
    let weir = Weir::start(&yaml, port);
    assert_eq!(
        origin_name(&weir, "x.example.com", "/healthz").await,
        (200, "exact".into())
    );
    // The query string is not part of the path.
    assert_eq!(
        origin_name(&weir, "x.example.com", "/healthz?full=1").await,
        (200, "exact".into())
    );
    // The normalised path is compared.
    for same in ["/%68ealthz", "//healthz"] {
        assert_eq!(
            origin_name(&weir, "x.example.com", same).await,
            (200, "exact".into()),
            "{same}"
        );
    }
    for longer in ["/healthz/", "/healthzz", "/healthz/x"] {
        assert_eq!(
            origin_name(&weir, "x.example.com", longer).await,
            (200, "rest".into()),
            "{longer}"
        );
    }
    // `/healthz` and `/healthz?full=1`.
    assert_eq!(a.hits("/healthz"), 2);
    assert_eq!(b.hits("/healthz/x"), 1);
}

#[tokio::test]
async fn smooth_weighted_round_robin_over_one_tier() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let port = free_port();
    let yaml = format!(
        "server: {{listen: ['127.0.0.1:{port}'], threads: 1}}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: [{{addr: '{}', weight: 2}}, '{}']}}]}}}}\n\
         routes: [{{upstream: o}}]\n",
        a.addr(),
        b.addr()
    );
    let weir = Weir::start(&yaml, port);
    let mut seq = String::new();
    for _ in 0..6 {
        let (_, name) = origin_name(&weir, "x", "/rr").await;
        seq.push_str(&name[..1]);
    }
    assert_eq!(seq, "abaaba");
}
