//! limit_req through the real binary: the NGINX.md traces (statuses and delays, with
//! tolerances for a noisy 2-core machine), dry_run, 429, per-client keys behind a trusted
//! proxy, spoofing from an untrusted peer, and a delayed client that leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};
use std::io::Write;
use std::time::{Duration, Instant};

/// weir with one zone per `zones` entry (`name: rate`), a route with `plugins`, and
/// `server_extra` lines.
fn start(origin: &Origin, zones: &str, plugins: &str, server_extra: &str) -> Weir {
    // Several zones on one route: one worker thread, like the single nginx worker of the
    // NGINX.md traces (with more, concurrent requests may interleave between the zones, as
    // across nginx workers).
    let threads = if zones.contains("}, ") { 1 } else { 2 };
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  threads: {threads}\n  access_log: {{path: 'off'}}\n{server_extra}\
         limits: {{{zones}}}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
         routes: [{{upstream: o, plugins: [{plugins}]}}]\n",
        origin.addr()
    );
    Weir::start(&yaml, port)
}

/// Sends `n` requests at once (one connection each) with `headers`; returns (status,
/// seconds after the start, Retry-After) sorted by time.
async fn burst(weir: &Weir, n: usize, headers: &[(&str, &str)]) -> Vec<(u16, f64, Option<String>)> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        // A client per request: no connection is shared, like nginx's traces.
        let mut req = common::client().get(weir.url("/x"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), t0.elapsed().as_secs_f64(), retry)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

fn statuses(trace: &[(u16, f64, Option<String>)], status: u16) -> Vec<f64> {
    trace
        .iter()
        .filter(|t| t.0 == status)
        .map(|t| t.1)
        .collect()
}

/// "At once": well before the first 500 ms step.
const AT_ONCE: f64 = 0.3;

fn assert_near(got: &[f64], want: &[f64], trace: &[(u16, f64, Option<String>)]) {
    assert_eq!(got.len(), want.len(), "{trace:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.25, "expected ≈{w}s, got {g}s: {trace:?}");
    }
}

#[tokio::test]
async fn rate_only_rejects_the_rest_with_retry_after() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    assert_eq!(statuses(&trace, 200).len(), 1, "{trace:?}");
    assert_eq!(statuses(&trace, 503).len(), 5, "{trace:?}");
    assert!(trace.iter().all(|t| t.1 < AT_ONCE), "{trace:?}");
    assert!(
        trace
            .iter()
            .filter(|t| t.0 == 503)
            .all(|t| t.2.as_deref() == Some("1")),
        "{trace:?}"
    );
    assert_eq!(origin.hits("/x"), 1);
}

#[tokio::test]
async fn burst_delays_like_nginx() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, burst: 4}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    let ok = statuses(&trace, 200);
    assert_eq!(statuses(&trace, 503).len(), 1, "{trace:?}");
    assert!(statuses(&trace, 503)[0] < AT_ONCE, "{trace:?}");
    assert_near(&ok, &[0.0, 0.5, 1.0, 1.5, 2.0], &trace);
}

#[tokio::test]
async fn nodelay_and_delay_n() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, burst: 4, nodelay: true}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    assert_near(&statuses(&trace, 200), &[0.0; 5], &trace);
    assert_eq!(statuses(&trace, 503).len(), 1, "{trace:?}");

    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, burst: 4, delay: 2}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    assert_near(&statuses(&trace, 200), &[0.0, 0.0, 0.0, 0.5, 1.0], &trace);
    assert_eq!(statuses(&trace, 503).len(), 1, "{trace:?}");
}

#[tokio::test]
async fn status_429_and_dry_run() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, status: 429}",
        "",
    );
    let trace = burst(&weir, 3, &[]).await;
    assert_eq!(statuses(&trace, 200).len(), 1, "{trace:?}");
    assert_eq!(statuses(&trace, 429).len(), 2, "{trace:?}");

    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, burst: 2, dry_run: true}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    assert_near(&statuses(&trace, 200), &[0.0; 6], &trace);
    assert!(weir.wait_log("would reject (dry run)"), "{}", weir.stderr());
}

#[tokio::test]
async fn two_zones_restore_and_take_the_longest_delay() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "a: {key: client_ip, rate: 2r/s}, b: {key: client_ip, rate: 1r/s}",
        "limit_req: {zone: a, burst: 4}, limit_req: {zone: b, burst: 2, nodelay: true}",
        "",
    );
    let trace = burst(&weir, 6, &[]).await;
    assert_near(&statuses(&trace, 200), &[0.0, 0.5, 1.0], &trace);
    let rejected = statuses(&trace, 503);
    assert_eq!(rejected.len(), 3, "{trace:?}");
    assert!(rejected.iter().all(|t| *t < AT_ONCE), "{trace:?}");
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_limited_apart() {
    let origin = Origin::start("o");
    let trusted =
        "  trusted_proxies: ['127.0.0.1/32', '10.0.0.0/8']\n  real_ip_header: X-Forwarded-For\n";
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z}",
        trusted,
    );
    for xff in ["203.0.113.1", "203.0.113.2", "198.51.100.9, 203.0.113.3"] {
        let trace = burst(&weir, 3, &[("X-Forwarded-For", xff)]).await;
        let codes: Vec<u16> = trace.iter().map(|t| t.0).collect();
        assert_eq!(statuses(&trace, 200).len(), 1, "{xff}: {codes:?}");
        assert_eq!(statuses(&trace, 503).len(), 2, "{xff}: {codes:?}");
    }
    // `a, b` is keyed by b: 203.0.113.3 is already limited, whatever comes before it.
    let trace = burst(&weir, 1, &[("X-Forwarded-For", "192.0.2.77, 203.0.113.3")]).await;
    assert_eq!(trace[0].0, 503, "{trace:?}");
    // A trusted hop on the right is skipped: 10.1.1.1 is a proxy, the client is 192.0.2.8.
    let trace = burst(&weir, 2, &[("X-Forwarded-For", "192.0.2.8, 10.1.1.1")]).await;
    assert_eq!(statuses(&trace, 200).len(), 1, "{trace:?}");
    assert_eq!(statuses(&trace, 503).len(), 1, "{trace:?}");
    // The upstream learns the client, as nginx's $proxy_add_x_forwarded_for after realip.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let echo: serde_json::Value = common::client()
        .get(weir.url("/__echo"))
        .header("X-Forwarded-For", "192.0.2.99")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-real-ip"][0], "192.0.2.99");
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_ignored() {
    let origin = Origin::start("o");
    let trusted = "  trusted_proxies: ['10.0.0.0/8']\n";
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z}",
        trusted,
    );
    let mut codes = Vec::new();
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        codes.extend(
            burst(&weir, 1, &[("X-Forwarded-For", xff)])
                .await
                .iter()
                .map(|t| t.0),
        );
    }
    // Every request is keyed by the peer 127.0.0.1: one passes.
    assert_eq!(codes, [200, 503, 503]);
}

#[tokio::test]
async fn a_delayed_client_that_leaves_is_dropped() {
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 2r/s}",
        "limit_req: {zone: z, burst: 4}",
        "",
    );
    let first = burst(&weir, 1, &[]).await;
    assert_eq!(first[0].0, 200);
    // Three requests that would wait 0.5, 1 and 1.5 s; their clients leave after 100 ms.
    let mut socks = Vec::new();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
        s.write_all(b"GET /left HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        socks.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(socks);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(
        origin.hits("/left"),
        0,
        "a request whose client left still went upstream"
    );
}

#[tokio::test]
async fn one_per_minute_says_when_to_come_back() {
    // 1r/m is 16 milli-requests/s in nginx's arithmetic: the next request passes after
    // 62.5 s, which Retry-After rounds up (the 60 s wait itself is unit-tested).
    let origin = Origin::start("o");
    let weir = start(
        &origin,
        "z: {key: client_ip, rate: 1r/m}",
        "limit_req: {zone: z}",
        "",
    );
    let first = burst(&weir, 1, &[]).await;
    assert_eq!(first[0].0, 200);
    let second = burst(&weir, 1, &[]).await;
    assert_eq!(second[0].0, 503);
    let retry: u64 = second[0].2.as_deref().unwrap().parse().unwrap();
    assert!((62..=63).contains(&retry), "Retry-After {retry}");
}
