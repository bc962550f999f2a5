//! The recording origin of the edge suite: a raw HTTP/1.1 server on a free port that writes
//! down exactly what each proxy forwarded (request line, headers, de-framed body) and
//! answers by the path it was asked for.
//!
//! A raw server rather than `weir-origin`: it must record the request target byte for byte
//! (no URI parsing that would normalise it first) and accept whatever a proxy forwards.
//!
//! | target contains | answer |
//! | --- | --- |
//! | `__chunked` | 200, `Transfer-Encoding: chunked`, body `chunked body, two chunks\n` |
//! | `__bighdr` | 200 with a 100 KiB `X-Big` header |
//! | `/cache/` | 200, 10,000 bytes, `Cache-Control: max-age=600`, `Accept-Ranges: bytes` |
//! | anything else | 200, `ok\n` |

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub line: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// The body of a cached object (`/cache/…`).
pub const CACHE_OBJECT_LEN: usize = 10_000;

/// A running recording origin; stops accepting when dropped (its port is then refused).
pub struct RecordingOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingOrigin {
    /// Starts the origin on a free port.
    pub fn start() -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let record = record.clone();
                std::thread::spawn(move || serve(conn, &record));
            }
        });
        RecordingOrigin { addr, seen }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The requests received since the first `from`.
    pub fn since(&self, from: usize) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(from..).map(<[Seen]>::to_vec).unwrap_or_default()
    }
}

/// Serves one connection: requests in a row until the proxy closes or asks to.
fn serve(conn: TcpStream, record: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    loop {
        let Some(seen) = read_request(&mut input) else {
            return;
        };
        let close = seen
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"))
            || seen.line.ends_with("HTTP/1.0");
        let head = seen.line.starts_with("HEAD ");
        let target = seen.line.split(' ').nth(1).unwrap_or("").to_string();
        record.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
        if out.write_all(&answer(&target, head)).is_err() || close {
            return;
        }
    }
}

/// Reads one request; `None` at the end of the connection or on bytes that are not HTTP.
fn read_request(input: &mut BufReader<TcpStream>) -> Option<Seen> {
    let line = read_line(input)?;
    let mut headers = Vec::new();
    loop {
        let h = read_line(input)?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(input)?
    } else {
        let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
        let mut body = vec![0u8; len];
        input.read_exact(&mut body).ok()?;
        body
    };
    Some(Seen {
        line,
        headers,
        body,
    })
}

/// One line without its line ending, bytes outside printable ASCII escaped (`\\xNN`), so
/// what a proxy forwarded is shown exactly; `None` at the end of the connection.
fn read_line(input: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line).ok()? == 0 {
        return None;
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Some(line.escape_ascii().to_string())
}

fn read_chunked(input: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = read_line(input)?;
        let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                if read_line(input)?.is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        input.read_exact(&mut body[start..]).ok()?;
        body.truncate(start + size);
    }
}

/// The byte at `i` of the cached object's body.
pub fn object_byte(i: usize) -> u8 {
    b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]
}

/// The response for `target`.
fn answer(target: &str, head: bool) -> Vec<u8> {
    let (headers, body): (String, Vec<u8>) = if target.contains("__chunked") {
        let body = b"10\r\nchunked body, tw\r\n8\r\no chunks\r\n1\r\n\n\r\n0\r\n\r\n".to_vec();
        ("Transfer-Encoding: chunked\r\n".into(), body)
    } else if target.contains("__bighdr") {
        (
            format!("X-Big: {}\r\n", "b".repeat(100 << 10)),
            b"ok\n".to_vec(),
        )
    } else if target.contains("/cache/") {
        let body: Vec<u8> = (0..CACHE_OBJECT_LEN).map(object_byte).collect();
        (
            "Cache-Control: max-age=600\r\nAccept-Ranges: bytes\r\n".into(),
            body,
        )
    } else {
        (String::new(), b"ok\n".to_vec())
    };
    let chunked = headers.starts_with("Transfer-Encoding");
    let length = if chunked {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{headers}{length}\r\n")
        .into_bytes();
    if !head {
        out.extend_from_slice(&body);
    }
    out
}
