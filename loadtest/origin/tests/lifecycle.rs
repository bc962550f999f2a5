//! Lifecycle of the fixture origin: stop() closes the port and open
//! connections, use from tests without a runtime, several threads, and the
//! binary's listening line and signal handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_origin::Origin;

fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn works_without_a_runtime() {
    let o = Origin::start("sync");
    let r = raw_get(o.addr(), "/p");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nsync /p\n"), "{r}");
    assert_eq!(o.hits("/p"), 1);
}

#[test]
fn stop_closes_listener_and_open_connections() {
    let mut o = Origin::start("stop");
    let addr = o.addr();
    // A keep-alive connection that has finished one exchange, and one stuck
    // in a slow response.
    let mut idle = TcpStream::connect(addr).unwrap();
    write!(idle, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).unwrap() > 0);
    let mut slow = TcpStream::connect(addr).unwrap();
    write!(slow, "GET /2?delay=60000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));

    o.stop();
    for s in [&mut idle, &mut slow] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // EOF or reset: either way closed, not timed out.
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    o.stop(); // idempotent
    assert_eq!(o.total_hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_threaded_origin_serves_concurrently() {
    let o = Origin::start_on("127.0.0.1:0".parse().unwrap(), "mt", 2).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let addr = o.addr();
            tokio::spawn(async move { common::get(addr, &format!("/c{}?size=100k", i % 4)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().body.len(), 100 * 1024);
    }
    assert_eq!(o.total_hits(), 16);
    assert_eq!(o.hits("/c0"), 4);
}

#[test]
fn binary_announces_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-origin"))
        .args(["--listen", "127.0.0.1:0", "--name", "bin"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("weir-origin bin listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .parse()
        .unwrap();
    let r = raw_get(addr, "/hello");
    assert!(r.contains("\r\nx-origin: bin\r\n"), "{r}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert!(TcpStream::connect(addr).is_err());
}
