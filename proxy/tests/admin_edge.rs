//! The admin listener against hostile input, over raw TCP: a request Pingora cannot parse
//! (a NUL in `Authorization`) gets a reply, a declared 10 GB body gets `413` at once (not
//! after the read timeout), a refused body is not drained, and keep-alive follows the client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
mod wire;

use common::{free_port, wait_listening, Origin, Weir};
use std::time::{Duration, Instant};
use wire::Conn;

const TOKEN: &str = "adm1n-t0ken";

fn start() -> (Origin, Weir, u16) {
    let origin = Origin::start("o");
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: \"{TOKEN}\" }}\n\
         upstreams:\n  o:\n    tiers: [{{name: a, servers: [\"{}\"]}}]\n\
         routes:\n  - upstream: o\n",
        origin.addr()
    );
    let weir = Weir::start(&yaml, port);
    wait_listening(("127.0.0.1", admin));
    (origin, weir, admin)
}

#[test]
fn a_nul_in_authorization_gets_a_reply() {
    let (_origin, _weir, admin) = start();
    let mut conn = Conn::open(admin);
    conn.send(
        format!(
            "POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\0x\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    let resp = conn.response().expect("a reply, not a silent close");
    assert!(matches!(resp.status, 400 | 401), "{resp:?}");
    assert!(conn.closed());
}

#[test]
fn a_declared_10_gb_body_gets_413_at_once_and_the_connection_closes() {
    let (_origin, _weir, admin) = start();
    let started = Instant::now();
    let mut conn = Conn::open(admin);
    conn.send(
        format!(
            "POST /purge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{{\"zone\""
        )
        .as_bytes(),
    );
    let resp = conn.response().expect("a reply");
    assert_eq!(resp.status, 413, "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "413 took {:?}",
        started.elapsed()
    );
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    assert!(conn.closed(), "the rest of the body would be read");

    // Unauthorized with a body on its way: 401 at once, and the body is not drained.
    let mut conn = Conn::open(admin);
    conn.send(b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n{");
    let resp = conn.response().expect("a reply");
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(conn.closed());
}

#[test]
fn admin_keep_alive_follows_the_client() {
    let (_origin, _weir, admin) = start();
    let mut conn = Conn::open(admin);
    for _ in 0..2 {
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = conn.response().expect("a reply");
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
    }
    let mut conn = Conn::open(admin);
    conn.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let resp = conn.response().expect("a reply");
    assert_eq!(resp.status, 200);
    assert!(conn.closed(), "HTTP/1.0 without keep-alive stayed open");
    // A body within the limit is read and the connection stays usable.
    let mut conn = Conn::open(admin);
    for _ in 0..2 {
        conn.send(
            format!(
                "POST /purge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 25\r\n\r\n{{\"zone\":\"none\",\"key\":\"k\"}}"
            )
            .as_bytes(),
        );
        let resp = conn.response().expect("a reply");
        assert_eq!(resp.status, 404, "{resp:?}");
    }
}
