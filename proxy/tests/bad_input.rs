//! Bad client input gets nginx's statuses and never stops the process: each refusal is
//! followed by a good request that must succeed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, raw_request, simple_config, status_of, Origin, Weir};

fn good_request_works(weir: &Weir) {
    let resp = raw_request(
        weir.port,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
}

#[test]
fn refusals_and_the_process_keeps_serving() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9 << 10)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 << 10));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "bad method token",
            b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        ("header line over 8 KiB", long_header.into_bytes(), 400),
        ("URI over 8 KiB", long_uri.into_bytes(), 414),
        ("101 headers", many_headers.into_bytes(), 400),
        (
            "invalid Host",
            b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n".to_vec(),
            400,
        ),
        (
            "missing Host on HTTP/1.1",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "path above root",
            b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "encoded path above root",
            b"GET /a/%2e%2e/%2E%2E/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, raw, want) in cases {
        let resp = raw_request(port, &raw);
        assert_eq!(status_of(&resp), want, "{what}: {resp}");
        good_request_works(&weir);
    }
    assert_eq!(origin.hits("/ok"), 9);
    // Nothing refused reached the origin.
    assert_eq!(origin.total_hits(), 9);
}

#[test]
fn dot_segments_that_stay_below_root_are_forwarded_as_received() {
    let origin = Origin::start("o");
    let port = free_port();
    let _weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let resp = raw_request(
        port,
        b"GET /a/../b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(origin.hits("/a/../b"), 1);
}

#[test]
fn http_1_0_without_host_is_accepted() {
    let origin = Origin::start("o");
    let port = free_port();
    let _weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let resp = raw_request(port, b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&resp), 200, "{resp}");
}
