//! Slow clients against short configured timeouts, over raw sockets: a header dripped a line
//! at a time (slowloris) is cut by `client_header_timeout` though each line comes well
//! within any per-read timeout; a body that stalls is cut by `client_body_timeout`; a client
//! that never reads its response is cut by `send_timeout`. Each is closed without an answer,
//! as nginx does (408 in the access log for the first two).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, simple_config, Origin, Weir};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How a connection ended for the client.
#[derive(Debug)]
struct Cut {
    /// From the first byte sent until weir closed the connection.
    after: Duration,
    /// What weir sent before closing.
    received: Vec<u8>,
}

/// Sends `first`, then `drip` every `every` while the connection stays open (at most 40
/// times), and reports when weir closed it; `None` when it never did.
fn drip_until_closed(s: &mut TcpStream, first: &[u8], drip: &[u8], every: Duration) -> Option<Cut> {
    s.set_read_timeout(Some(every)).unwrap();
    drip_on(s, first, drip)
}

/// [`drip_until_closed`] on any stream whose reads time out after the drip interval.
fn drip_on(s: &mut impl ReadWrite, first: &[u8], drip: &[u8]) -> Option<Cut> {
    let start = Instant::now();
    s.write_all(first).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..40 {
        match s.read(&mut buf) {
            Ok(0) => {
                return Some(Cut {
                    after: start.elapsed(),
                    received,
                })
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                return Some(Cut {
                    after: start.elapsed(),
                    received,
                })
            }
        }
        if s.write_all(drip).is_err() {
            return Some(Cut {
                after: start.elapsed(),
                received,
            });
        }
    }
    None
}

/// A byte stream both ways (plain TCP or TLS).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn start(origin: &Origin, server: &str, upstream: &str) -> Weir {
    let port = free_port();
    Weir::start(
        &simple_config(port, origin.addr(), server, upstream, ""),
        port,
    )
}

fn connect(weir: &Weir) -> TcpStream {
    TcpStream::connect(("127.0.0.1", weir.port)).unwrap()
}

#[test]
fn a_header_dripped_a_line_at_a_time_is_cut_by_client_header_timeout() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_header_timeout: 1s\n", "");
    let mut s = connect(&weir);
    let cut = drip_until_closed(
        &mut s,
        b"GET /slow HTTP/1.1\r\nHost: x\r\n",
        b"X-Drip: 1\r\n",
        Duration::from_millis(200),
    )
    .expect("weir never cut the dripped header");
    assert!(
        cut.after >= Duration::from_millis(900) && cut.after < Duration::from_secs(4),
        "cut after {:?}",
        cut.after
    );
    assert!(cut.received.is_empty(), "answered {:?}", cut.received);
    assert_eq!(origin.total_hits(), 0);
    // weir keeps serving.
    let resp = common::raw_request(weir.port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(common::status_of(&resp), 200, "{resp}");
}

#[test]
fn a_dripped_header_on_a_kept_alive_connection_is_cut_too() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_header_timeout: 1s\n", "");
    let mut s = connect(&weir);
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let cut = drip_until_closed(
        &mut s,
        b"GET /second HTTP/1.1\r\n",
        b"X-Drip: 1\r\n",
        Duration::from_millis(200),
    )
    .expect("weir never cut the dripped header");
    assert!(
        cut.after >= Duration::from_millis(900) && cut.after < Duration::from_secs(4),
        "cut after {:?}",
        cut.after
    );
    assert_eq!(origin.hits("/second"), 0);
}

#[test]
fn a_steady_header_within_the_limit_is_answered() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_header_timeout: 3s\n", "");
    let mut s = connect(&weir);
    let lines: [&[u8]; 6] = [
        b"GET /steady HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"X-A: 1\r\n",
        b"X-B: 2\r\n",
        b"Connection: close\r\n",
        b"\r\n",
    ];
    for line in lines {
        s.write_all(line).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(origin.hits("/steady"), 1);
}

#[test]
fn a_silent_new_connection_is_closed_after_client_header_timeout() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_header_timeout: 1s\n", "");
    let mut s = connect(&weir);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let after = start.elapsed();
    assert_eq!(n, 0, "answered {:?}", &buf[..n]);
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "closed after {after:?}"
    );
}

#[test]
fn a_stalled_body_is_cut_by_client_body_timeout_without_reaching_the_origin() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_body_timeout: 1s\n", "");
    let mut s = connect(&weir);
    let cut = drip_until_closed(
        &mut s,
        b"POST /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab",
        b"",
        Duration::from_millis(200),
    )
    .expect("weir never cut the stalled body");
    assert!(
        cut.after >= Duration::from_millis(900) && cut.after < Duration::from_secs(4),
        "cut after {:?}",
        cut.after
    );
    assert!(cut.received.is_empty(), "answered {:?}", cut.received);
    // Buffered: the origin never saw the request.
    assert_eq!(origin.connections(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !weir.stdout().contains("\"POST /__echo HTTP/1.1\" 408 ") {
        assert!(
            Instant::now() < deadline,
            "no 408 logged:\n{}",
            weir.stdout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_body_dripped_steadily_resets_client_body_timeout_at_each_read() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  client_body_timeout: 1s\n", "");
    let mut s = connect(&weir);
    s.write_all(
        b"POST /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // 8 bytes over ~2.4 s: longer than the timeout in all, never 1 s between two bytes.
    for b in b"abcdefgh" {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(&[*b]).unwrap();
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_bytes\":8"), "{text}");
}

#[test]
fn a_stalled_body_on_a_streaming_route_is_cut_too() {
    let origin = Origin::start("o");
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  client_body_timeout: 1s\n\
         upstreams:\n  o:\n    tiers: [{{name: a, servers: [\"{}\"]}}]\n\
         routes:\n  - {{upstream: o, request_buffering: false}}\n",
        origin.addr()
    );
    let weir = Weir::start(&yaml, port);
    let mut s = connect(&weir);
    let cut = drip_until_closed(
        &mut s,
        b"POST /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab",
        b"",
        Duration::from_millis(200),
    )
    .expect("weir never cut the stalled body");
    assert!(
        cut.after >= Duration::from_millis(900) && cut.after < Duration::from_secs(4),
        "cut after {:?}",
        cut.after
    );
    assert!(cut.received.is_empty(), "answered {:?}", cut.received);
}

#[test]
fn a_client_that_never_reads_is_cut_by_send_timeout() {
    let origin = Origin::start("o");
    let weir = start(&origin, "  send_timeout: 1s\n", "");
    let mut s = connect(&weir);
    let size: usize = 256 << 20;
    let sent = Instant::now();
    s.write_all(format!("GET /big?size={size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    // Not reading: weir's writes stop making progress once the socket buffers are full.
    assert!(
        weir.wait_log("client timed out"),
        "no send timeout logged:\n{}",
        weir.stderr()
    );
    assert!(sent.elapsed() >= Duration::from_secs(1));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) => break e.kind() == ErrorKind::ConnectionReset,
        }
    };
    assert!(closed, "the connection stayed open");
    assert!(got < size, "the whole response arrived ({got} bytes)");
}

#[test]
fn a_header_dripped_over_tls_is_cut_by_client_header_timeout() {
    use std::sync::Arc;
    let origin = Origin::start("o");
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (plain, tls) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen:\n    - '127.0.0.1:{plain}'\n\
         \x20   - {{addr: '127.0.0.1:{tls}', tls: {{cert: '{}', key: '{}'}}}}\n\
         \x20 client_header_timeout: 1s\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
         routes: [{{upstream: o}}]\n",
        cert.display(),
        key.display(),
        origin.addr()
    );
    let _weir = Weir::start(&yaml, plain);
    common::wait_listening(("127.0.0.1", tls));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", tls)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let cut = drip_on(
        &mut s,
        b"GET /tls HTTP/1.1\r\nHost: x\r\n",
        b"X-Drip: 1\r\n",
    )
    .expect("weir never cut the dripped header");
    assert!(
        cut.after >= Duration::from_millis(900) && cut.after < Duration::from_secs(4),
        "cut after {:?}",
        cut.after
    );
    assert!(cut.received.is_empty(), "answered {:?}", cut.received);
    assert_eq!(origin.hits("/tls"), 0);
}
