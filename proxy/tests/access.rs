//! The `access` plugin through the real binary: deny and allow lists, IPv6 clients, a
//! deny file re-read on SIGHUP, and a bad deny-file line reported by `weir -t`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{check_config, free_port, simple_config, Origin, Weir};
use std::net::TcpListener;

/// Starts weir in front of `origin` with one `access` plugin configured by `access`.
fn start(origin: &Origin, access: &str) -> Weir {
    let port = free_port();
    Weir::start(
        &simple_config(port, origin.addr(), "", "", &format!("access: {access}")),
        port,
    )
}

async fn status(url: &str) -> u16 {
    common::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn denied_range_gets_403_and_never_reaches_the_origin() {
    let origin = Origin::start("o");
    let weir = start(&origin, "{deny: [\"127.0.0.0/8\"]}");
    let r = common::client().get(weir.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "403 forbidden\n");
    assert_eq!(origin.hits("/x"), 0);
    assert!(
        weir.wait_log("access: refused 127.0.0.1 /x"),
        "{}",
        weir.stderr()
    );
}

#[tokio::test]
async fn allow_list_refuses_everyone_else() {
    let origin = Origin::start("o");
    let elsewhere = start(&origin, "{allow: [\"10.0.0.0/8\", \"::1\"]}");
    assert_eq!(status(&elsewhere.url("/a")).await, 403);
    let here = start(&origin, "{allow: [\"10.0.0.0/8\", \"127.0.0.1\"]}");
    assert_eq!(status(&here.url("/a")).await, 200);
    assert_eq!(origin.hits("/a"), 1);
    // The first match wins in the order written, as nginx's allow/deny directives.
    let deny_first = start(&origin, "{deny: [\"127.0.0.1\"], allow: [\"127.0.0.0/8\"]}");
    assert_eq!(status(&deny_first.url("/a")).await, 403);
    let allow_first = start(&origin, "{allow: [\"127.0.0.1\"], deny: [\"127.0.0.0/8\"]}");
    assert_eq!(status(&allow_first.url("/a")).await, 200);
    let rest_of_range = start(&origin, "{allow: [\"127.0.0.2\"], deny: [\"127.0.0.0/8\"]}");
    assert_eq!(status(&rest_of_range.url("/a")).await, 403);
}

#[tokio::test]
async fn ipv6_clients_are_matched_on_their_own_address() {
    let v6_port = match TcpListener::bind("[::1]:0") {
        Ok(l) => l.local_addr().unwrap().port(),
        Err(e) => {
            println!("skipped: cannot bind [::1] on this machine: {e}");
            return;
        }
    };
    let origin = Origin::start("o");
    let port = free_port();
    let yaml = simple_config(port, origin.addr(), "", "", "access: {deny: [\"::1\"]}").replace(
        &format!("listen: [\"127.0.0.1:{port}\"]"),
        &format!("listen: [\"127.0.0.1:{port}\", \"[::1]:{v6_port}\"]"),
    );
    let weir = Weir::start(&yaml, port);
    // Weir::start waits for the first listener; the IPv6 one may come up a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("::1", v6_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "[::1]:{v6_port} never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status(&format!("http://[::1]:{v6_port}/six")).await, 403);
    assert_eq!(status(&weir.url("/four")).await, 200);
    assert_eq!(origin.hits("/six"), 0);
}

#[tokio::test]
async fn deny_file_is_reread_on_reload() {
    let origin = Origin::start("o");
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("blocklist.txt");
    std::fs::write(&list, "# nobody local yet\n192.0.2.0/24\n").unwrap();
    let weir = start(&origin, &format!("{{deny_file: \"{}\"}}", list.display()));
    assert_eq!(status(&weir.url("/f")).await, 200);

    std::fs::write(&list, "192.0.2.0/24\n127.0.0.1  # now us\n").unwrap();
    weir.signal("HUP");
    assert!(weir.wait_log("reload done"), "{}", weir.stderr());
    assert_eq!(status(&weir.url("/f")).await, 403);
    assert_eq!(origin.hits("/f"), 1);
}

#[test]
fn bad_deny_file_line_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "10.0.0.0/8\n\nnope\n").unwrap();
    let yaml = simple_config(
        free_port(),
        "127.0.0.1:9".parse().unwrap(),
        "",
        "",
        &format!("access: {{deny_file: \"{}\"}}", list.display()),
    );
    let conf = dir.path().join("weir.yaml");
    std::fs::write(&conf, yaml).unwrap();
    let (ok, out) = check_config(&conf);
    assert!(!ok);
    assert_eq!(
        out,
        format!(
            "routes[0].plugins[0].access.deny_file: {}:3: `nope` is not an IP address or CIDR\n",
            list.display()
        )
    );
}
