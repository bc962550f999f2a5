//! A raw HTTP/1 client connection for framing tests: sends bytes as given and reads the
//! answers one response at a time, framed the way a client must frame them (1xx heads,
//! Content-Length, chunked, or until the server closes), so a test sees exactly how many
//! responses came back, in which order, and whether the connection was closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a read waits before the test decides nothing more is coming.
const READ_WAIT: Duration = Duration::from_secs(5);

/// One response as it came over the wire.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line's version, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header lines, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body was delimited by the server closing the connection.
    pub close_delimited: bool,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Whether the last request was HEAD (its response has no body).
    pub head: bool,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(READ_WAIT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
            head: false,
        }
    }

    /// Writes `bytes` as one write; a connection the server already closed is not an error
    /// here (the test asks [`Conn::closed`]).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads more bytes; false at end of stream, on a reset or when nothing came in time.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => false,
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    /// Bytes up to and including the next CRLF (or bare LF), without the line end.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// The next response (a `1xx` head counts as one), or `None` when the connection
    /// closed or stayed silent first.
    pub fn response(&mut self) -> Option<Response> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next()?.to_string();
        let status: u16 = parts.next()?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut resp = Response {
            status,
            version,
            headers,
            body: Vec::new(),
            close_delimited: false,
        };
        if (100..200).contains(&status) || status == 204 || status == 304 || self.head {
            return Some(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let size_line = self.line()?;
                let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                resp.body.extend(self.take(size)?);
                self.take(2)?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().ok()?;
            resp.body = self.take(len)?;
        } else {
            while self.fill() {}
            if !self.eof {
                return None; // neither framed nor closed
            }
            resp.body = std::mem::take(&mut self.buf);
            resp.close_delimited = true;
        }
        Some(resp)
    }

    /// True when the server closed the connection (nothing more to read and end of
    /// stream), waiting for it up to the read timeout; false when bytes or silence came.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        !self.fill() && self.eof
    }

    /// Sets how long reads wait (short for "nothing more comes" checks).
    pub fn read_wait(&mut self, wait: Duration) {
        self.stream.set_read_timeout(Some(wait)).unwrap();
    }
}
