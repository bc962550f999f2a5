//! Request buffering (nginx `proxy_request_buffering on`): bodies are read whole before an
//! upstream is chosen, so slow uploads hold no upstream connection, `max_request_body`
//! answers before the origin sees a byte, a buffered POST goes to the next server after a
//! connect failure, and the temp files under `server.temp_dir` are gone when the request
//! ends (success, 413, client gone). `request_buffering: false` still streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Larger than what weir keeps in memory (64 KiB): these bodies go to a temp file.
const BIG: usize = 100 << 10;

fn pattern(len: usize) -> Vec<u8> {
    weir_origin::pattern(0, len).to_vec()
}

/// weir with one upstream (`servers`, then `next` as a second tier when given) and one route.
fn start(servers: &str, next: Option<&str>, server_extra: &str, route_extra: &str) -> Weir {
    let port = free_port();
    let next = next.map_or(String::new(), |n| {
        format!(", {{name: b, servers: [\"{n}\"]}}")
    });
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n{server_extra}\
         upstreams:\n  o:\n    tiers: [{{name: a, servers: [\"{servers}\"]}}{next}]\n\
         routes:\n  - {{upstream: o{route_extra}}}\n"
    );
    Weir::start(&yaml, port)
}

/// weir's temp dir (the default, under the test's state dir).
fn temp_dir(weir: &Weir) -> PathBuf {
    weir.dir.path().join("state/tmp")
}

/// weir's open files under its temp dir (unnamed: they show as `…/tmp/#N (deleted)`).
fn open_temp_files(weir: &Weir) -> usize {
    let dir = temp_dir(weir);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", weir.pid())).unwrap();
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// Waits (up to 10 s) until weir holds `n` temp files.
fn wait_temp_files(weir: &Weir, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_temp_files(weir) != n {
        assert!(
            Instant::now() < deadline,
            "weir holds {} temp files, expected {n}",
            open_temp_files(weir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Names left in weir's temp dir.
fn temp_dir_entries(weir: &Weir) -> usize {
    std::fs::read_dir(temp_dir(weir)).map_or(0, |d| d.count())
}

/// Starts `POST /__echo` with a `Content-Length: total` body and sends its first `sent` bytes.
fn start_upload(weir: &Weir, body: &[u8], sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    let head = format!(
        "POST /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..sent]).unwrap();
    s
}

/// Sends the rest of the body and reads the whole response.
fn finish_upload(mut s: TcpStream, rest: &[u8]) -> String {
    s.write_all(rest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn echo_fields(resp: &str) -> serde_json::Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn slow_uploads_hold_no_upstream_connection_while_buffering() {
    let origin = Origin::start("o");
    let weir = start(&origin.addr().to_string(), None, "", "");
    let body = pattern(BIG);
    let first = 70 << 10;
    let uploads: Vec<TcpStream> = (0..20).map(|_| start_upload(&weir, &body, first)).collect();
    // Every upload is past its first 64 KiB: each has its temp file.
    wait_temp_files(&weir, 20);
    assert_eq!(
        origin.connections(),
        0,
        "an upload reached the origin early"
    );
    for s in uploads {
        let resp = finish_upload(s, &body[first..]);
        assert_eq!(common::status_of(&resp), 200, "{resp}");
        let echo = echo_fields(&resp);
        assert_eq!(echo["body_bytes"], BIG);
        assert_eq!(
            echo["body_fnv"],
            format!("{:016x}", weir_origin::fnv1a(&body))
        );
        // Sent with its length, as nginx sends a buffered body.
        assert_eq!(echo["headers"]["content-length"][0], BIG.to_string());
    }
    wait_temp_files(&weir, 0);
    assert_eq!(temp_dir_entries(&weir), 0);
}

#[test]
fn request_buffering_false_streams_the_body() {
    let origin = Origin::start("o");
    let weir = start(
        &origin.addr().to_string(),
        None,
        "",
        ", request_buffering: false",
    );
    let body = pattern(BIG);
    let first = 70 << 10;
    let upload = start_upload(&weir, &body, first);
    // The origin is reached while the client still owes part of its body.
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.connections() == 0 {
        assert!(Instant::now() < deadline, "the upload was not streamed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open_temp_files(&weir), 0);
    let resp = finish_upload(upload, &body[first..]);
    assert_eq!(common::status_of(&resp), 200, "{resp}");
    assert_eq!(echo_fields(&resp)["body_bytes"], BIG);
}

#[test]
fn temp_files_are_gone_after_a_client_disconnects() {
    let origin = Origin::start("o");
    let weir = start(&origin.addr().to_string(), None, "", "");
    let body = pattern(BIG);
    let upload = start_upload(&weir, &body, 70 << 10);
    wait_temp_files(&weir, 1);
    drop(upload);
    wait_temp_files(&weir, 0);
    assert_eq!(temp_dir_entries(&weir), 0);
    assert_eq!(origin.connections(), 0);
}

#[test]
fn a_chunked_body_over_max_request_body_gets_413_before_the_origin_sees_a_byte() {
    let origin = Origin::start("o");
    let weir = start(
        &origin.addr().to_string(),
        None,
        "  max_request_body: 96KiB\n",
        "",
    );
    let mut s = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    s.write_all(b"POST /__echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // 70 KiB first: past memory, into a temp file, under the limit.
    let piece = vec![b'x'; 10 << 10];
    for _ in 0..7 {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        s.write_all(&piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    wait_temp_files(&weir, 1);
    for _ in 0..5 {
        let _ = s.write_all(format!("{:x}\r\n", piece.len()).as_bytes());
        let _ = s.write_all(&piece);
        let _ = s.write_all(b"\r\n");
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(common::status_of(&resp), 413, "{resp}");
    assert_eq!(origin.connections(), 0);
    wait_temp_files(&weir, 0);
    assert_eq!(temp_dir_entries(&weir), 0);
}

#[tokio::test]
async fn a_buffered_post_goes_to_the_next_server_after_a_connect_failure() {
    let origin = Origin::start("o");
    // A port nobody listens on: connect fails at once.
    let dead = format!("127.0.0.1:{}", free_port());
    let weir = start(&dead, Some(&origin.addr().to_string()), "", "");
    for len in [10 << 10, 300 << 10] {
        let body = pattern(len);
        let r = common::client()
            .post(weir.url("/__echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["body_bytes"], len);
        assert_eq!(
            echo["body_fnv"],
            format!("{:016x}", weir_origin::fnv1a(&body))
        );
    }
    assert_eq!(origin.hits("/__echo"), 2);
}

#[test]
fn expect_100_continue_is_answered_by_weir_when_it_buffers() {
    let origin = Origin::start("o");
    let weir = start(&origin.addr().to_string(), None, "", "");
    let mut s = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    s.write_all(
        b"POST /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let resp = finish_upload(s, b"hello");
    assert_eq!(common::status_of(&resp), 200, "{resp}");
    let echo = echo_fields(&resp);
    assert_eq!(echo["body_bytes"], 5);
    // The origin got the body whole; nothing for it to continue.
    assert!(echo["headers"].get("expect").is_none(), "{echo}");
}

#[tokio::test]
async fn a_buffered_put_is_resent_whole_after_the_first_server_drops_it_mid_body() {
    let origin = Origin::start("o");
    // A server that reads the start of a request, then drops the connection.
    let dropper = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dropper_addr = dropper.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in dropper.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
        }
    });
    let weir = start(
        &dropper_addr.to_string(),
        Some(&origin.addr().to_string()),
        "",
        "",
    );
    // Larger than Pingora's 64 KiB retry buffer: only request buffering can resend it.
    let body = pattern(300 << 10);
    let r = common::client()
        .put(weir.url("/__echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_bytes"], body.len());
    assert_eq!(
        echo["body_fnv"],
        format!("{:016x}", weir_origin::fnv1a(&body))
    );
}

#[tokio::test]
async fn a_temp_dir_that_cannot_be_written_answers_500_and_weir_keeps_serving() {
    let origin = Origin::start("o");
    let weir = start(&origin.addr().to_string(), None, "", "");
    // The directory made way for a file: no temp file can be made there (even as root).
    let dir = temp_dir(&weir);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let r = common::client()
        .post(weir.url("/__echo"))
        .body(pattern(BIG))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(weir.wait_log("server.temp_dir: cannot create a temp file"));
    assert_eq!(origin.connections(), 0);
    // Bodies that fit in memory and requests without one are still served.
    let r = common::client()
        .post(weir.url("/__echo"))
        .body(pattern(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
