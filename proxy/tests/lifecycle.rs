//! Process life: SIGHUP reload (valid, invalid, in-flight requests), graceful stop on
//! SIGTERM/SIGINT, and the access log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, simple_config, Origin, Weir};
use std::time::{Duration, Instant};

#[tokio::test]
async fn reload_swaps_routes_and_keeps_old_config_when_invalid() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let port = free_port();
    let weir = Weir::start(&simple_config(port, a.addr(), "", "", ""), port);
    let client = common::client();
    let who = |r: reqwest::Response| r.headers()["x-origin"].to_str().unwrap().to_string();

    // A slow request starts on the old config and must finish there.
    let slow = tokio::spawn(client.get(weir.url("/slow?delay=1500")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Valid: the new upstream serves new requests.
    std::fs::write(
        weir.config_path(),
        simple_config(port, b.addr(), "", "", ""),
    )
    .unwrap();
    weir.signal("HUP");
    assert!(weir.wait_log("reload done"), "{}", weir.stderr());
    assert_eq!(who(client.get(weir.url("/x")).send().await.unwrap()), "b");

    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(
        who(slow),
        "a",
        "in-flight request finished on the config it started with"
    );

    // Invalid: every error is logged, the running config stays.
    std::fs::write(
        weir.config_path(),
        simple_config(
            port,
            b.addr(),
            "  max_headers: 0\n",
            "    keepalive: lots\n",
            "bogus: {}",
        ),
    )
    .unwrap();
    weir.signal("HUP");
    assert!(
        weir.wait_log("reload rejected with 3 error(s)"),
        "{}",
        weir.stderr()
    );
    let log = weir.stderr();
    assert!(
        log.contains("reload rejected: server.max_headers: must be from 1 to 256"),
        "{log}"
    );
    assert!(
        log.contains("reload rejected: upstreams.o.keepalive:"),
        "{log}"
    );
    assert!(
        log.contains("reload rejected: routes[0].plugins[0]: unknown plugin `bogus`"),
        "{log}"
    );
    assert_eq!(who(client.get(weir.url("/y")).send().await.unwrap()), "b");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let origin = Origin::start("o");
    let port = free_port();
    // grace_period is 5s in simple_config: the exit must come well before it.
    let mut weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let client = common::client();
    let slow = tokio::spawn(client.get(weir.url("/slow?delay=800")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    weir.signal("TERM");

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "new connections are refused while draining"
    );
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "the in-flight request completes");
    let status = tokio::task::spawn_blocking(move || {
        let s = weir.wait_exit(Duration::from_secs(4));
        (s, weir)
    })
    .await
    .unwrap();
    let (exit, weir) = status;
    let exit = exit.unwrap_or_else(|| panic!("weir did not exit; stderr:\n{}", weir.stderr()));
    assert!(exit.success(), "{exit}");
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "exited after {:?}, the grace period is 5s",
        t.elapsed()
    );
    assert!(weir.stderr().contains("all requests finished"));
}

#[test]
fn sigint_is_graceful_and_fast_when_idle() {
    let origin = Origin::start("o");
    let port = free_port();
    let mut weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let t = Instant::now();
    weir.signal("INT");
    let exit = weir.wait_exit(Duration::from_secs(4)).expect("exits");
    assert!(exit.success());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn json_access_log_to_a_file() {
    let origin = Origin::start("o");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = format!(
        "  access_log: {{path: '{}', format: json}}\n",
        log.display()
    );
    let weir = Weir::start(&simple_config(port, origin.addr(), &server, "", ""), port);
    let r = common::client()
        .get(weir.url("/logged?size=123"))
        .header("User-Agent", "weir-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 123);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).unwrap();
    assert_eq!(line["method"], "GET");
    assert_eq!(line["uri"], "/logged?size=123");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_sent"], 123);
    assert_eq!(line["user_agent"], "weir-test");
    assert_eq!(line["route"], "all");
    assert_eq!(line["upstream"], origin.addr().to_string());
    assert!(
        weir.stdout().is_empty(),
        "nothing on stdout when the log goes to a file"
    );
}

#[tokio::test]
async fn combined_access_log_on_stdout() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    common::client()
        .get(weir.url("/c?size=5"))
        .header("Referer", "http://r/")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while weir.stdout().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = weir.stdout();
    assert!(out.starts_with("127.0.0.1 - - ["), "{out}");
    assert!(
        out.contains("] \"GET /c?size=5 HTTP/1.1\" 200 5 \"http://r/\" \""),
        "{out}"
    );
}

#[test]
fn a_busy_port_stops_the_start_with_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("weir.yaml");
    std::fs::write(
        &f,
        simple_config(port, "127.0.0.1:1".parse().unwrap(), "", "", ""),
    )
    .unwrap();
    let out = std::process::Command::new(common::weir_bin())
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("weir: cannot listen on 127.0.0.1:{port}:")),
        "{err}"
    );
}

#[test]
fn access_log_directory_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("weir.yaml");
    let server = "  access_log: {path: /nonexistent/dir/access.log}\n";
    std::fs::write(
        &f,
        simple_config(8080, "127.0.0.1:1".parse().unwrap(), server, "", ""),
    )
    .unwrap();
    let (ok, out) = common::check_config(&f);
    assert!(!ok);
    assert_eq!(
        out,
        "server.access_log.path: directory /nonexistent/dir does not exist\n"
    );
}
