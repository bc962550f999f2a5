//! Upstream tiers against real origins that die, hang, reset and answer 404/5xx: the
//! balancer's order, tier failover, next_upstream on errors, timeouts and statuses,
//! passive max_fails/fail_timeout, active health checks, and redirect mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, raw_request, status_of, Origin, Weir};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A weir with upstream `images` (`upstream` is its YAML body, indented 4) and `routes`.
fn start(upstream: &str, routes: &str) -> Weir {
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         upstreams:\n  images:\n{upstream}routes:\n{routes}"
    );
    Weir::start(&yaml, port)
}

const PROXY: &str = "  - { upstream: images }\n";

/// `tiers:` with one line per tier.
fn tiers(list: &[(&str, Vec<String>)]) -> String {
    let mut s = "    tiers:\n".to_string();
    for (name, servers) in list {
        let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
        s += &format!(
            "      - {{ name: {name}, servers: [{}] }}\n",
            servers.join(", ")
        );
    }
    s
}

/// An address where nothing listens: connections are refused.
fn dead() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// (status, X-Origin, whole response) of `GET path` on a new connection.
fn get(weir: &Weir, path: &str) -> (u16, String, String) {
    request(weir, "GET", path, "")
}

fn request(weir: &Weir, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: img.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_request(weir.port, raw.as_bytes());
    let origin = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-origin: ")
                .or_else(|| l.strip_prefix("X-Origin: "))
        })
        .unwrap_or("-")
        .trim()
        .to_string();
    (status_of(&resp), origin, resp)
}

/// A server that reads each request (head and Content-Length body) and then resets the
/// connection without answering; counts the requests it read.
fn resetting_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let complete = loop {
                let Ok(n) = conn.read(&mut chunk) else {
                    break false;
                };
                if n == 0 {
                    break false;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break true;
                    }
                }
            };
            if complete {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            // SO_LINGER 0: close sends an RST.
            let _ = socket_linger_zero(&conn);
            drop(conn);
        }
    });
    (addr, count)
}

fn socket_linger_zero(conn: &std::net::TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO))
}

/// A server that accepts connections and never answers.
fn hanging_server() -> (SocketAddr, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener.local_addr().unwrap(), listener)
}

#[test]
fn smooth_weighted_round_robin_5_1_1() {
    let (a, b, c) = (Origin::start("A"), Origin::start("B"), Origin::start("C"));
    let up = format!(
        "    tiers:\n      - name: edge\n        servers:\n\
         \x20         - {{ addr: \"{}\", weight: 5 }}\n\
         \x20         - {{ addr: \"{}\", weight: 1 }}\n\
         \x20         - {{ addr: \"{}\", weight: 1 }}\n",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let weir = start(&up, PROXY);
    let order: String = (0..14).map(|_| get(&weir, "/x").1).collect();
    assert_eq!(order, "AABACAAAABACAA");
}

#[test]
fn edge_dead_then_origin_dead_then_backup() {
    let mut origin = Origin::start("origin");
    let backup = Origin::start("backup");
    // The backup is named by host name: resolved at load.
    let up = tiers(&[
        ("edge", vec![dead()]),
        ("origin", vec![origin.addr().to_string()]),
        (
            "backup",
            vec![format!("localhost:{}", backup.addr().port())],
        ),
    ]);
    let weir = start(&up, PROXY);
    let (status, from, _) = get(&weir, "/img/1.jpg");
    assert_eq!((status, from.as_str()), (200, "origin"));
    assert!(
        weir.wait_log("(edge) failed for /img/1.jpg: connection refused; trying the next server")
    );
    origin.stop();
    let (status, from, _) = get(&weir, "/img/2.jpg");
    assert_eq!((status, from.as_str()), (200, "backup"));
    assert_eq!(backup.hits("/img/1.jpg"), 0);
}

#[test]
fn http_404_listed_goes_to_backup_and_unlisted_does_not() {
    let origin = Origin::start("origin");
    let backup = Origin::start("backup");
    origin.state().set_fixed_status(404);
    let two = tiers(&[
        ("origin", vec![origin.addr().to_string()]),
        ("backup", vec![backup.addr().to_string()]),
    ]);
    let weir = start(
        &format!("{two}    next_upstream: [error, timeout, http_404]\n"),
        PROXY,
    );
    let (status, from, _) = get(&weir, "/new.jpg");
    assert_eq!((status, from.as_str()), (200, "backup"));
    // 404 never counts toward max_fails: the origin is asked first again.
    let (status, from, _) = get(&weir, "/new.jpg");
    assert_eq!((status, from.as_str()), (200, "backup"));
    assert_eq!(origin.hits("/new.jpg"), 2);

    let weir = start(&two, PROXY);
    let (status, from, _) = get(&weir, "/other.jpg");
    assert_eq!((status, from.as_str()), (404, "origin"));
    assert_eq!(backup.hits("/other.jpg"), 0);
}

#[test]
fn http_502_listed_moves_to_the_next_server_else_passes_through() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    a.state().set_fixed_status(502);
    let one_tier = tiers(&[("edge", vec![a.addr().to_string(), b.addr().to_string()])]);
    let weir = start(
        &format!("{one_tier}    next_upstream: [error, timeout, http_502]\n"),
        PROXY,
    );
    let (status, from, _) = get(&weir, "/p");
    assert_eq!((status, from.as_str()), (200, "b"));
    assert_eq!((a.hits("/p"), b.hits("/p")), (1, 1));

    // Every try answers a listed status: the client gets the last server's own response.
    b.state().set_fixed_status(502);
    let weir = start(
        &format!("{one_tier}    next_upstream: [http_502]\n    max_fails: 0\n"),
        PROXY,
    );
    let (status, from, resp) = get(&weir, "/q");
    assert_eq!(status, 502);
    assert!(from == "a" || from == "b", "the origin's own 502: {resp}");
    assert_eq!(a.hits("/q") + b.hits("/q"), 2);

    // Not listed: the first server's 502 goes to the client.
    let weir = start(&one_tier, PROXY);
    let (status, _, resp) = get(&weir, "/r");
    assert_eq!(status, 502);
    assert!(
        resp.contains("x-origin") || resp.contains("X-Origin"),
        "{resp}"
    );
    assert_eq!(a.hits("/r") + b.hits("/r"), 1);
}

#[test]
fn all_dead_are_tried_in_tier_order_then_502_fast() {
    let (e, o, b) = (dead(), dead(), dead());
    let up = tiers(&[
        ("edge", vec![e.clone()]),
        ("origin", vec![o.clone()]),
        ("backup", vec![b.clone()]),
    ]);
    let weir = start(&up, PROXY);
    for round in 0..2 {
        let t = Instant::now();
        let (status, _, _) = get(&weir, &format!("/x{round}"));
        assert_eq!(status, 502);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The second round: every server is down by now, and they are still tried in order.
        assert!(weir.wait_log(&format!("{b} (backup) failed for /x{round}")));
        let log = weir.stderr();
        let at = |needle: String| {
            log.find(&needle)
                .unwrap_or_else(|| panic!("{needle} missing:\n{log}"))
        };
        let (ie, io, ib) = (
            at(format!("{e} (edge) failed for /x{round}")),
            at(format!("{o} (origin) failed for /x{round}")),
            at(format!("{b} (backup) failed for /x{round}")),
        );
        assert!(ie < io && io < ib, "not in tier order:\n{log}");
    }
    assert!(weir.stderr().contains(&format!(
        "{e} (edge) down for 10s: 1 failure(s) within 10s (connection refused)"
    )));

    // next_upstream_tries: 1 stops after the first server.
    let weir = start(&format!("{up}    next_upstream_tries: 1\n"), PROXY);
    assert_eq!(get(&weir, "/once").0, 502);
    assert!(weir.wait_log("(edge) failed for /once"));
    assert!(!weir.stderr().contains("(origin) failed for /once"));
}

#[test]
fn slow_upstreams_with_tries_exhausted_answer_504() {
    let (h1, _keep1) = hanging_server();
    let (h2, _keep2) = hanging_server();
    let up = format!(
        "{}    read_timeout: 300ms\n",
        tiers(&[
            ("edge", vec![h1.to_string()]),
            ("origin", vec![h2.to_string()])
        ])
    );
    let weir = start(&up, PROXY);
    let t = Instant::now();
    let (status, _, _) = get(&weir, "/slow");
    assert_eq!(status, 504);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "both tried: {:?}",
        t.elapsed()
    );
    assert!(weir
        .stderr()
        .contains("(edge) failed for /slow: read timed out; trying the next server"));
    assert!(weir
        .stderr()
        .contains("(origin) failed for /slow: read timed out"));
}

#[test]
fn post_reset_after_its_body_was_sent_is_not_retried() {
    let (resetter, seen) = resetting_server();
    let backup = Origin::start("backup");
    let up = tiers(&[
        ("edge", vec![resetter.to_string()]),
        ("backup", vec![backup.addr().to_string()]),
    ]);
    let weir = start(&format!("{up}    max_fails: 0\n"), PROXY);
    let (status, _, _) = request(&weir, "POST", "/upload", "hello");
    assert_eq!(status, 502);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the edge read the whole POST"
    );
    assert_eq!(backup.hits("/upload"), 0, "a POST is not sent twice");

    // The same failure on a GET moves on to the backup.
    let (status, from, _) = request(&weir, "GET", "/upload", "");
    assert_eq!((status, from.as_str()), (200, "backup"));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    // A PUT (idempotent) with a small body is replayed to the backup too.
    let (status, from, _) = request(&weir, "PUT", "/upload", "replayed");
    assert_eq!((status, from.as_str()), (200, "backup"));
}

#[test]
fn max_fails_skips_a_server_for_fail_timeout_then_probes_it() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    a.state().set_fixed_status(503);
    let up = format!(
        "{}    next_upstream: [error, timeout, http_503]\n    max_fails: 1\n    fail_timeout: 1s\n",
        tiers(&[("edge", vec![a.addr().to_string(), b.addr().to_string()])])
    );
    let weir = start(&up, PROXY);
    // a fails once (retried on b) and is then skipped.
    for i in 0..6 {
        let (status, from, _) = get(&weir, &format!("/f{i}"));
        assert_eq!((status, from.as_str()), (200, "b"), "request {i}");
    }
    assert_eq!(a.total_hits(), 1, "skipped while down");
    assert!(weir.wait_log("(edge) down for 1s: 1 failure(s) within 1s (status 503)"));

    // After fail_timeout (whole seconds: 1-2 s) one request probes a; it fails again.
    std::thread::sleep(Duration::from_millis(2100));
    for i in 0..4 {
        assert_eq!(get(&weir, &format!("/g{i}")).1, "b");
    }
    assert_eq!(a.total_hits(), 2, "exactly one probe");
    assert!(weir.wait_log("(edge) down for 1s: the probe after fail_timeout failed (status 503)"));

    // Healed: the next probe succeeds and a is back in rotation.
    a.state().set_fixed_status(0);
    std::thread::sleep(Duration::from_millis(2100));
    let froms: Vec<String> = (0..6).map(|i| get(&weir, &format!("/h{i}")).1).collect();
    assert!(froms.iter().filter(|f| *f == "a").count() >= 2, "{froms:?}");
    assert!(weir.wait_log("(edge) up: a request succeeded after fail_timeout"));
}

#[test]
fn active_checks_take_a_server_out_and_bring_it_back() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let dead_edge = dead();
    let up = format!(
        "{}    health_check: {{ path: /__health, interval: 100ms, timeout: 500ms, rise: 2, fall: 2 }}\n",
        tiers(&[("edge", vec![a.addr().to_string(), b.addr().to_string(), dead_edge.clone()])])
    );
    let weir = start(&up, PROXY);
    assert!(weir.wait_log(&format!(
        "{dead_edge} (edge) down: 2 failed checks (connection refused)"
    )));
    a.state().set_health_status(503);
    assert!(weir.wait_log(&format!(
        "{} (edge) down: 2 failed checks (status 503)",
        a.addr()
    )));
    let before = a.hits("/x");
    for _ in 0..6 {
        assert_eq!(get(&weir, "/x").1, "b");
    }
    assert_eq!(a.hits("/x"), before, "a is out while its checks fail");
    a.state().set_health_status(200);
    assert!(weir.wait_log(&format!("{} (edge) up after 2 good checks", a.addr())));
    let froms: Vec<String> = (0..6).map(|_| get(&weir, "/y").1).collect();
    assert_eq!(froms.iter().filter(|f| *f == "a").count(), 3, "{froms:?}");
    assert!(a.hits("/__health") >= 4, "checks ran in the background");
}

#[test]
fn redirect_mode_points_at_a_usable_server() {
    let a = Origin::start("a");
    let dead_edge = dead();
    let up = format!(
        "    tiers:\n\
         \x20     - {{ name: edge, servers: [\"{dead_edge}\", \"{}\"] }}\n\
         \x20     - {{ name: backup, servers: [{{ addr: \"localhost:443\", tls: true }}, \"127.0.0.1:80\"] }}\n\
         \x20   health_check: {{ tcp: true, interval: 100ms, timeout: 500ms, fall: 1, rise: 1 }}\n",
        a.addr()
    );
    let routes = "  - { name: jump, redirect: images }\n";
    let weir = start(&up, routes);
    assert!(weir.wait_log(&format!("{dead_edge} (edge) down")));
    let (status, _, resp) = get(&weir, "/img/cat.jpg?w=100");
    assert_eq!(status, 302, "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "location: http://{}/img/cat.jpg?w=100\r\n",
            a.addr()
        )),
        "{resp}"
    );
    assert!(lower.contains("cache-control: no-store"), "{resp}");
    assert_eq!(a.hits("/img/cat.jpg"), 0, "redirect mode does not proxy");
}

#[test]
fn redirect_mode_with_nothing_usable_uses_the_last_tiers_first_server() {
    let up = format!(
        "    tiers:\n\
         \x20     - {{ name: edge, servers: [\"{}\"] }}\n\
         \x20     - {{ name: backup, servers: [{{ addr: \"localhost:{}\", tls: true }}] }}\n\
         \x20   health_check: {{ tcp: true, interval: 100ms, timeout: 500ms, fall: 1, rise: 1 }}\n",
        dead(),
        free_port()
    );
    let weir = start(&up, "  - { redirect: images }\n");
    assert!(weir.wait_log("(backup) down"));
    let (status, _, resp) = get(&weir, "/a/b?c=d");
    assert_eq!(status, 302);
    assert!(
        resp.to_ascii_lowercase()
            .contains("location: https://localhost:"),
        "{resp}"
    );
    assert!(resp.contains("/a/b?c=d\r\n"), "{resp}");
}

#[test]
fn hash_balance_keeps_a_uri_on_its_server() {
    let origins: Vec<Origin> = ["a", "b", "c"].iter().map(|n| Origin::start(n)).collect();
    let up = format!(
        "{}    balance: hash\n",
        tiers(&[(
            "edge",
            origins.iter().map(|o| o.addr().to_string()).collect()
        )])
    );
    let weir = start(&up, PROXY);
    let first = get(&weir, "/img/42.jpg").1;
    for _ in 0..5 {
        assert_eq!(get(&weir, "/img/42.jpg").1, first);
    }
    let spread: std::collections::BTreeSet<String> = (0..30)
        .map(|i| get(&weir, &format!("/img/{i}.jpg")).1)
        .collect();
    assert!(spread.len() >= 2, "{spread:?}");
}

#[test]
fn a_slow_stream_is_never_retried_once_the_head_was_sent() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let up = format!(
        "{}    read_timeout: 300ms\n",
        tiers(&[
            ("edge", vec![a.addr().to_string()]),
            ("backup", vec![b.addr().to_string()])
        ])
    );
    let weir = start(&up, PROXY);
    // The head comes at once, then each body chunk waits longer than read_timeout.
    let (status, from, _) = get(&weir, "/stream?size=200k&body_delay=600");
    assert_eq!((status, from.as_str()), (200, "a"));
    assert_eq!(b.hits("/stream"), 0);
}

#[test]
fn a_reload_keeps_what_weir_learned_about_servers() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    a.state().set_fixed_status(503);
    let up = format!(
        "{}    next_upstream: [error, timeout, http_503]\n    fail_timeout: 30s\n",
        tiers(&[("edge", vec![a.addr().to_string(), b.addr().to_string()])])
    );
    let weir = start(&up, PROXY);
    assert_eq!(get(&weir, "/one").1, "b");
    assert_eq!(a.total_hits(), 1);
    // The same upstream with a new route: a stays down for the rest of its fail_timeout.
    let yaml = std::fs::read_to_string(weir.config_path()).unwrap();
    let yaml = yaml.replace(
        "routes:\n",
        "routes:\n  - { match: { path_prefix: /new/ }, upstream: images }\n",
    );
    std::fs::write(weir.config_path(), yaml).unwrap();
    weir.signal("HUP");
    assert!(weir.wait_log("reload done"));
    for i in 0..4 {
        assert_eq!(get(&weir, &format!("/new/{i}")).1, "b");
    }
    assert_eq!(a.total_hits(), 1, "still skipped after the reload");
}

#[test]
fn a_refused_request_body_does_not_count_against_the_server() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  max_request_body: 1k\n\
         upstreams:\n  images:\n{}routes:\n{PROXY}",
        tiers(&[("edge", vec![a.addr().to_string(), b.addr().to_string()])])
    );
    let weir = Weir::start(&yaml, port);
    let chunk = "x".repeat(800);
    let raw = format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let resp = raw_request(port, raw.as_bytes());
    assert_eq!(status_of(&resp), 413, "{resp}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !weir.stderr().contains("failed for /up"),
        "{}",
        weir.stderr()
    );
    // Both servers still take turns.
    let froms: Vec<String> = (0..4).map(|i| get(&weir, &format!("/t{i}")).1).collect();
    assert_eq!(froms.iter().filter(|f| *f == "a").count(), 2, "{froms:?}");
}

#[test]
fn next_upstream_timeout_stops_new_attempts() {
    let (h1, _keep1) = hanging_server();
    let (h2, _keep2) = hanging_server();
    let up = format!(
        "{}    read_timeout: 300ms\n    next_upstream_timeout: 200ms\n",
        tiers(&[
            ("edge", vec![h1.to_string()]),
            ("origin", vec![h2.to_string()])
        ])
    );
    let weir = start(&up, PROXY);
    let t = Instant::now();
    assert_eq!(get(&weir, "/late").0, 504);
    assert!(
        t.elapsed() < Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    assert!(weir.wait_log("(edge) failed for /late: read timed out"));
    assert!(!weir.stderr().contains("(origin) failed for /late"));
}

#[test]
fn a_status_retry_closes_the_failed_connection_and_keeps_the_good_one_pooled() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    a.state().set_fixed_status(502);
    let up = format!(
        "{}    next_upstream: [error, http_502]\n    max_fails: 0\n",
        tiers(&[
            ("edge", vec![a.addr().to_string()]),
            ("backup", vec![b.addr().to_string()])
        ])
    );
    let weir = start(&up, PROXY);
    for i in 0..4 {
        assert_eq!(get(&weir, &format!("/c{i}")).1, "b");
    }
    assert_eq!(a.total_hits(), 4);
    // The 502's body was never read, so its connection is closed rather than pooled: one
    // connection per attempt. The backup's answers were complete and its connection is reused.
    assert_eq!(a.connections(), 4);
    assert!(b.connections() <= 2, "{}", b.connections());
}

#[test]
fn down_servers_are_tried_only_when_every_server_is_down() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    a.state().set_fixed_status(404);
    b.state().set_fixed_status(404);
    let gone = dead();
    let up = format!(
        "{}    next_upstream: [error, http_404]\n",
        tiers(&[
            ("edge", vec![a.addr().to_string(), gone.clone()]),
            ("backup", vec![b.addr().to_string()])
        ])
    );
    let weir = start(&up, PROXY);
    // The dead edge server fails once and is down from then on.
    assert_eq!(get(&weir, "/one").1, "b");
    assert!(weir.wait_log(&format!("{gone} (edge) down for 10s")));
    // (404s never count, so a and b stay usable.) Usable servers used up: the client gets the
    // last one's own 404; the down server is not tried by this request.
    let (status, from, _) = get(&weir, "/two");
    assert_eq!((status, from.as_str()), (404, "b"));
    assert_eq!((a.hits("/two"), b.hits("/two")), (1, 1));
    assert!(!weir
        .stderr()
        .contains(&format!("{gone} (edge) failed for /two")));
}
