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

/// The JSON body `/__echo` answered in a raw response.
fn echo_of(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn request_targets_methods_and_hosts_as_nginx() {
    let origin = Origin::start("o");
    let port = free_port();
    let _weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let header = |n: usize| format!("X-Big-{n}: {}\r\n", "b".repeat(7 << 10));
    let headers_28k: String = (0..4).map(header).collect();
    let headers_35k: String = (0..5).map(header).collect();
    let refused: Vec<(&str, String, u16)> = vec![
        (
            "relative",
            "GET ../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "bare dots",
            "GET .. HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "encoded climb",
            "GET /a/..%2f..%2f..%2fetc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "user info",
            "GET @evil.test/x HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "relative name",
            "GET h/rel HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "query only",
            "GET ?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "asterisk not OPTIONS",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "absolute climb",
            "GET http://x/../a HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "bad escape",
            "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "NUL escaped",
            "GET /a%00 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        ("NUL", "GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("space", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("tab", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("DEL", "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("TRACE", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n".into(), 405),
        (
            "lowercase method",
            "get / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "Host with a path",
            "GET / HTTP/1.1\r\nHost: [../../etc]\r\n\r\n".into(),
            400,
        ),
        (
            "Host twice",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".into(),
            400,
        ),
        (
            "headers over 32 KiB",
            format!("GET / HTTP/1.1\r\nHost: x\r\n{headers_35k}\r\n"),
            400,
        ),
    ];
    for (what, raw, want) in &refused {
        let resp = raw_request(port, raw.as_bytes());
        assert_eq!(status_of(&resp), *want, "{what}: {resp}");
    }
    assert_eq!(origin.total_hits(), 0, "nothing refused reached the origin");

    // OPTIONS * is answered by weir itself.
    let resp = raw_request(
        port,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("\r\nallow: get,"),
        "{resp}"
    );
    assert_eq!(origin.total_hits(), 0);

    // 28 KiB of headers, an unknown uppercase method, and absolute-form (sent upstream in
    // origin-form, as nginx's proxy_pass does) pass.
    let ok = format!("GET /big HTTP/1.1\r\nHost: x\r\n{headers_28k}Connection: close\r\n\r\n");
    assert_eq!(status_of(&raw_request(port, ok.as_bytes())), 200);
    let resp = raw_request(
        port,
        b"PURGE_IT /m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(origin.hits("/m"), 1);
    let resp = raw_request(
        port,
        b"GET http://x/__echo?a=%2e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(echo_of(&resp)["uri"], "/__echo?a=%2e");
}

#[test]
fn header_names_with_underscores_are_not_forwarded() {
    let origin = Origin::start("o");
    let port = free_port();
    let _weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let resp = raw_request(
        port,
        b"GET /__echo HTTP/1.1\r\nHost: x\r\nX_Secret: 1\r\nX-Ok: 2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    let headers = &echo_of(&resp)["headers"];
    assert!(headers.get("x_secret").is_none(), "{headers}");
    assert_eq!(headers["x-ok"][0], "2");
}
