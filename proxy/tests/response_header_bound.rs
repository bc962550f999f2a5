//! `upstreams.*.max_response_header`: an upstream response header block larger than the
//! bound is answered 502 and never cached (nginx: "upstream sent too big header", 502,
//! beyond `proxy_buffer_size`); below it the response passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, simple_config, Origin, Weir};

fn start(upstream_extra: &str) -> (Origin, Weir, tempfile::TempDir) {
    let origin = Origin::start("o");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = simple_config(
        port,
        origin.addr(),
        "",
        upstream_extra,
        "{cache: {zone: c}}",
    )
    .replace(
        "upstreams:\n",
        &format!(
            "caches:\n  c:\n    path: {}\nupstreams:\n",
            dir.path().display()
        ),
    );
    let weir = Weir::start(&yaml, port);
    (origin, weir, dir)
}

async fn get(weir: &Weir, path: &str) -> (u16, Option<String>) {
    let resp = common::client().get(weir.url(path)).send().await.unwrap();
    let cache = resp
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (resp.status().as_u16(), cache)
}

#[tokio::test]
async fn a_response_header_over_the_default_32k_is_502_and_not_cached() {
    let (origin, weir, _dir) = start("");
    // 100 KiB of header (issue 14): 502, twice, so the origin was asked twice.
    let big = "/big?big_header=100k&cc=max-age%3D600";
    assert_eq!(get(&weir, big).await.0, 502);
    assert_eq!(get(&weir, big).await.0, 502);
    assert_eq!(origin.hits("/big"), 2);
    // Just over the bound.
    assert_eq!(get(&weir, "/edge?big_header=33k").await.0, 502);
    // Below it: passed through and cached.
    let fine = "/fine?big_header=30k&cc=max-age%3D600";
    assert_eq!(get(&weir, fine).await, (200, Some("MISS".into())));
    assert_eq!(get(&weir, fine).await, (200, Some("HIT".into())));
    assert_eq!(origin.hits("/fine"), 1);
    assert!(
        weir.stderr().contains("larger than max_response_header"),
        "{}",
        weir.stderr()
    );
}

#[tokio::test]
async fn the_bound_is_configured_per_upstream() {
    let (_origin, weir, _dir) = start("    max_response_header: 8KiB\n");
    assert_eq!(get(&weir, "/a?big_header=10k").await.0, 502);
    assert_eq!(get(&weir, "/b?big_header=7k").await.0, 200);
}
