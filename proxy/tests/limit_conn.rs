//! The `limit_conn` plugin through the real binary: the NGINX.md trace (refusals at once,
//! the admitted requests finish normally), and no leaked count whatever way a request ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, simple_config, Origin, Weir};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// "At once" on a noisy 2-core machine.
const AT_ONCE: Duration = Duration::from_millis(400);

#[tokio::test]
async fn max_2_with_5_parallel_gives_3_refusals_at_once_and_2_answers_after_the_delay() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(
            port,
            origin.addr(),
            "",
            "",
            "limit_conn: {key: client_ip, max: 2}",
        ),
        port,
    );
    let client = common::client();
    let start = Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let req = client.get(weir.url("/slow?delay=600")).send();
            tokio::spawn(async move {
                let r = req.await.unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                (status, start.elapsed(), body)
            })
        })
        .collect();
    let mut trace = Vec::new();
    for t in tasks {
        trace.push(t.await.unwrap());
    }
    let refused: Vec<_> = trace.iter().filter(|t| t.0 == 503).collect();
    let passed: Vec<_> = trace.iter().filter(|t| t.0 == 200).collect();
    assert_eq!((refused.len(), passed.len()), (3, 2), "{trace:?}");
    for (_, at, body) in &refused {
        assert!(*at < AT_ONCE, "refused late: {trace:?}");
        assert_eq!(body, "too many requests in flight\n");
    }
    for (_, at, _) in &passed {
        assert!(*at >= Duration::from_millis(550), "{trace:?}");
    }
    assert_eq!(origin.hits("/slow"), 2);
    assert!(
        weir.wait_log("limit_conn: refused 127.0.0.1 on route all with 503"),
        "{}",
        weir.stderr()
    );
}

/// GETs `url`; a `503` is retried for up to 2 s, since a request that just ended may release
/// its place a moment after its client saw the end. A leaked place never comes back.
async fn status_when_free(client: &reqwest::Client, url: &str) -> (u16, bool) {
    for _ in 0..40 {
        let r = client.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let body_ok = r.bytes().await.is_ok();
        if status != 503 {
            return (status, body_ok);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (503, true)
}

/// A client that sends a request and leaves before the answer.
fn abandon(port: u16, path: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
}

#[tokio::test]
async fn every_way_a_request_ends_gives_its_place_back() {
    let origin = Origin::start("o");
    let port = free_port();
    let dead = free_port();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n\
         upstreams:\n\
         \x20 o: {{tiers: [{{name: t, servers: [\"{}\"]}}]}}\n\
         \x20 dead: {{tiers: [{{name: t, servers: [\"127.0.0.1:{dead}\"]}}], connect_timeout: 1s}}\n\
         routes:\n\
         \x20 - {{name: dead, match: {{path_prefix: /dead/}}, upstream: dead, plugins: [limit_conn: {{key: client_ip, max: 1}}]}}\n\
         \x20 - {{name: all, upstream: o, plugins: [limit_conn: {{key: client_ip, max: 1}}]}}\n",
        origin.addr()
    );
    let weir = Weir::start(&yaml, port);
    let client = common::client();
    for i in 0..30 {
        match i % 4 {
            0 => assert_eq!(
                status_when_free(&client, &weir.url("/n")).await,
                (200, true)
            ),
            1 => {
                let (status, body_ok) =
                    status_when_free(&client, &weir.url("/r?size=1m&reset_after=1000")).await;
                assert_eq!(status, 200, "request {i}");
                assert!(!body_ok, "the origin reset mid-body");
            }
            2 => assert_eq!(
                status_when_free(&client, &weir.url("/dead/x")).await.0,
                502,
                "request {i}"
            ),
            _ => abandon(port, "/slow?delay=300"),
        }
    }
    assert_eq!(
        status_when_free(&client, &weir.url("/n")).await,
        (200, true)
    );
    assert_eq!(status_when_free(&client, &weir.url("/dead/x")).await.0, 502);
    assert!(
        origin.hits("/slow") >= 1,
        "the abandoned requests went upstream"
    );
}
