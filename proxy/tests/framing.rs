//! Request and response framing at the edge, through the real binary over raw TCP: no
//! request smuggling (Content-Length with Transfer-Encoding, keep-alive Pingora turned off),
//! framing headers refused as nginx refuses them, readable bodies for HTTP/1.0 clients,
//! pipelining, chunk syntax errors, `Expect: 100-continue`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
mod wire;

use common::{free_port, simple_config, Origin, Weir};
use wire::Conn;

fn start() -> (Origin, Weir) {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    (origin, weir)
}

/// Issue 14, bug 2: `POST /a` with both Content-Length and Transfer-Encoding and the body
/// `0\r\n\r\n`, then `GET /smuggled` on the same connection.
#[test]
fn content_length_with_transfer_encoding_is_refused_and_nothing_is_smuggled() {
    let (origin, weir) = start();
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let resp = conn.response().expect("a response to the POST");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    // The smuggled request goes out once the refusal is in; the connection must be closed.
    conn.send(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        conn.closed(),
        "the connection stayed open after a CL+TE request"
    );
    assert_eq!(origin.hits("/smuggled"), 0);
    assert_eq!(origin.hits("/a"), 0);
    assert_eq!(origin.total_hits(), 0);
}

/// nginx 1.22's answers (measured) to framing headers Pingora's parser lets through, and to
/// those it refuses itself; every one closes the connection and reaches no origin.
#[test]
fn framing_headers_are_refused_as_nginx_refuses_them() {
    let (origin, weir) = start();
    let cases: &[(&str, &str, u16)] = &[
        (
            "two equal Content-Length lines",
            "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (
            "two different Content-Length lines",
            "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (
            "a Content-Length list",
            "Content-Length: 3, 3\r\n\r\nabc",
            400,
        ),
        (
            "a signed Content-Length",
            "Content-Length: +3\r\n\r\nabc",
            400,
        ),
        (
            "two Transfer-Encoding lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "chunked twice in one line",
            "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "a coding before chunked",
            "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "a coding other than chunked",
            "Transfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (
            "CL with a coding other than chunked",
            "Content-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            501,
        ),
    ];
    for (what, headers, want) in cases {
        let mut conn = Conn::open(weir.port);
        conn.send(format!("POST /f HTTP/1.1\r\nHost: x\r\n{headers}").as_bytes());
        let resp = conn
            .response()
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(resp.status, *want, "{what}: {resp:?}");
        assert!(conn.closed(), "{what}: the connection stayed open");
    }
    // HTTP/1.0 has no Transfer-Encoding (nginx: 400).
    let mut conn = Conn::open(weir.port);
    conn.send(b"POST /f HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(conn.response().map(|r| r.status), Some(400));
    assert!(conn.closed());
    assert_eq!(origin.total_hits(), 0);

    // The coding name is case-insensitive, as in nginx: forwarded.
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"POST /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(conn.response().map(|r| r.status), Some(200));
    assert_eq!(origin.hits("/f"), 1);
}

/// HTTP/1.0 without `Connection: keep-alive` is closed after its answer; with it, the
/// connection is kept (a body of known length).
#[test]
fn http_1_0_keeps_alive_only_when_asked() {
    let (origin, weir) = start();
    let mut conn = Conn::open(weir.port);
    conn.send(b"GET /old HTTP/1.0\r\n\r\n");
    let resp = conn.response().expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    assert!(conn.closed());

    let mut conn = Conn::open(weir.port);
    for _ in 0..2 {
        conn.send(b"GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = conn.response().expect("a response");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
    }
    assert_eq!(origin.hits("/kept"), 2);
}

fn pattern(n: u64) -> Vec<u8> {
    (0..n).map(weir_origin::expected_byte).collect()
}

/// Issue 14, bug 4: an HTTP/1.0 client of a chunked origin gets the body as is, ended by
/// the close, with no `Transfer-Encoding` (also when it asked for keep-alive: the length
/// is unknown, so nginx closes too).
#[test]
fn http_1_0_gets_a_close_delimited_body_from_a_chunked_origin() {
    let (origin, weir) = start();
    for ask in ["", "Connection: keep-alive\r\n"] {
        let mut conn = Conn::open(weir.port);
        conn.send(format!("GET /c?chunked=1&size=200k HTTP/1.0\r\n{ask}\r\n").as_bytes());
        let resp = conn.response().expect("a response");
        assert_eq!(resp.status, 200, "{ask:?}: {resp:?}");
        assert_eq!(resp.header("transfer-encoding"), None, "{ask:?}: {resp:?}");
        assert_eq!(
            resp.header("connection"),
            Some("close"),
            "{ask:?}: {resp:?}"
        );
        assert!(resp.close_delimited, "{ask:?}");
        assert!(resp.body == pattern(200 << 10), "{ask:?}: body differs");
    }
    assert_eq!(origin.hits("/c"), 2);
    // An HTTP/1.1 client of the same origin keeps chunked and keep-alive.
    let mut conn = Conn::open(weir.port);
    conn.send(b"GET /c?chunked=1&size=1k HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = conn.response().expect("a response");
    assert_eq!(
        resp.header("transfer-encoding"),
        Some("chunked"),
        "{resp:?}"
    );
    assert_eq!(resp.body, pattern(1024));
    assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
}

/// A cached object stored from a chunked origin, served to an HTTP/1.0 client: readable,
/// Content-Length when the cache knows it, else close-delimited.
#[test]
fn http_1_0_reads_a_cache_hit_of_a_chunked_object() {
    let origin = Origin::start("o");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = simple_config(port, origin.addr(), "", "", "{cache: {zone: c}}").replace(
        "upstreams:\n",
        &format!(
            "caches:\n  c:\n    path: {}\nupstreams:\n",
            dir.path().display()
        ),
    );
    let weir = Weir::start(&yaml, port);
    let url = "/hit?chunked=1&size=70k&cc=max-age%3D60";
    for want in ["MISS", "HIT"] {
        let mut conn = Conn::open(weir.port);
        conn.send(format!("GET {url} HTTP/1.0\r\n\r\n").as_bytes());
        let resp = conn.response().expect("a response");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.header("x-cache-status"), Some(want), "{resp:?}");
        assert_eq!(resp.header("transfer-encoding"), None, "{want}: {resp:?}");
        assert!(resp.body == pattern(70 << 10), "{want}: body differs");
        assert!(
            conn.closed(),
            "{want}: HTTP/1.0 without keep-alive stayed open"
        );
    }
    assert_eq!(origin.hits("/hit"), 1);
}

/// Issue 14, bug 5: three requests in one write get three answers, in order, and the
/// origin sees each once.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let (origin, weir) = start();
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for path in ["/p1", "/p2", "/p3"] {
        let resp = conn
            .response()
            .unwrap_or_else(|| panic!("no answer for {path}"));
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.body, format!("o {path}\n").as_bytes(), "{path}");
    }
    for path in ["/p1", "/p2", "/p3"] {
        assert_eq!(origin.hits(path), 1, "{path}");
    }
    // The connection is still usable afterwards.
    conn.send(b"GET /p4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.response().map(|r| r.body), Some(b"o /p4\n".to_vec()));
    assert!(conn.closed());

    // Fifty in one write, far more than one read of the header buffer.
    let mut conn = Conn::open(weir.port);
    let batch: String = (0..50)
        .map(|i| format!("GET /m{i} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    conn.send(batch.as_bytes());
    for i in 0..50 {
        let resp = conn
            .response()
            .unwrap_or_else(|| panic!("no answer for /m{i}"));
        assert_eq!(resp.body, format!("o /m{i}\n").as_bytes());
    }
    assert_eq!(origin.total_hits(), 54);
}

/// Pipelined requests with bodies (Content-Length, chunked) next to each other in one
/// write, and requests arriving while the previous one is still being proxied.
#[test]
fn pipelined_requests_with_bodies_and_during_proxying() {
    let (origin, weir) = start();
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"POST /__echo?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /__echo?n=2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n\
          GET /__echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for (n, body_bytes) in [(1, 5), (2, 7), (3, 0)] {
        let resp = conn.response().unwrap_or_else(|| panic!("no answer {n}"));
        let echo: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(echo["uri"], format!("/__echo?n={n}"), "{echo}");
        assert_eq!(echo["body_bytes"], body_bytes, "{echo}");
    }
    assert_eq!(origin.hits("/__echo"), 3);

    // The next requests come while the origin takes 300 ms over the first.
    let mut conn = Conn::open(weir.port);
    conn.send(b"GET /d1?delay=300 HTTP/1.1\r\nHost: x\r\n\r\n");
    while origin.hits("/d1") == 0 {
        // until the origin has the first request and sits on it
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    conn.send(b"GET /d2 HTTP/1.1\r\nHost: x\r\n\r\nGET /d3 HTTP/1.1\r\nHost: x\r\n\r\n");
    for path in ["/d1", "/d2", "/d3"] {
        let resp = conn
            .response()
            .unwrap_or_else(|| panic!("no answer for {path}"));
        assert_eq!(resp.body, format!("o {path}\n").as_bytes());
        assert_eq!(origin.hits(path), 1, "{path}");
    }
}

/// Chunk syntax errors get 400 and a closed connection, and the bytes after them are never
/// read as a request: nothing is desynced.
#[test]
fn chunk_syntax_errors_get_400_and_close() {
    let (origin, weir) = start();
    let cases: &[(&str, &str)] = &[
        ("a bare LF in a chunk extension", "3;ext\nabc\r\n0\r\n\r\n"),
        ("a bare LF ending a chunk extension line", "3;a=b\n"),
        ("a bare LF ending a chunk size line", "3\nabc\r\n0\r\n\r\n"),
        ("a size that is not hex", "zz\r\nabc\r\n0\r\n\r\n"),
        (
            "a size beyond 64 bits",
            "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ),
        ("no CRLF after the chunk data", "3\r\nabcX\r\n0\r\n\r\n"),
    ];
    for (what, body) in cases {
        let mut conn = Conn::open(weir.port);
        conn.send(
            format!(
                "POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}\
                 GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        );
        let resp = conn
            .response()
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        assert!(conn.closed(), "{what}: the connection stayed open");
    }
    assert_eq!(origin.hits("/smuggled"), 0);
    // A well-formed extension is fine.
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"POST /__echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;name=value\r\nabc\r\n0\r\n\r\n",
    );
    let resp = conn.response().expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    let echo: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(echo["body_bytes"], 3, "{echo}");
}

/// `Expect: 100-continue` is answered by weir with `100 Continue` before the body is sent
/// (the client waits for it here), the connection stays reusable, and the upstream never
/// sees `Expect`; a request refused by its declared length gets its 413 without a 100; an
/// HTTP/1.0 client gets no 1xx.
#[test]
fn expect_100_continue_is_answered_by_weir() {
    let (origin, weir) = start();
    let mut conn = Conn::open(weir.port);
    for framing in ["Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n"] {
        conn.send(
            format!("POST /__echo HTTP/1.1\r\nHost: x\r\n{framing}Expect: 100-continue\r\n\r\n")
                .as_bytes(),
        );
        let interim = conn.response().expect("a 100 before the body was sent");
        assert_eq!(interim.status, 100, "{framing}: {interim:?}");
        let body: &[u8] = if framing.starts_with("Content") {
            b"abc"
        } else {
            b"3\r\nabc\r\n0\r\n\r\n"
        };
        conn.send(body);
        let resp = conn.response().expect("the final response");
        assert_eq!(resp.status, 200, "{framing}: {resp:?}");
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
        let echo: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(echo["body_bytes"], 3, "{echo}");
        assert!(echo["headers"].get("expect").is_none(), "{echo}");
    }
    assert_eq!(origin.hits("/__echo"), 2);

    // Refused by its declared length (max_request_body 10 MiB): 413 at once, no 100.
    let mut conn = Conn::open(weir.port);
    conn.send(
        b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    let resp = conn.response().expect("a response");
    assert_eq!(resp.status, 413, "{resp:?}");
    assert!(conn.closed());
    assert_eq!(origin.hits("/big"), 0);

    // HTTP/1.0: no 100; the final answer comes once the body is there.
    let mut conn = Conn::open(weir.port);
    conn.send(b"POST /__echo HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc");
    let resp = conn.response().expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
}
