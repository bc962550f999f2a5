//! The raw client of the edge suite: sends a case's bytes over one TCP connection (with
//! pauses where a case needs them), reads whatever comes back, splits it into responses, and
//! describes the outcome as text that can be compared between nginx and weir.

use super::origin::{RecordingOrigin, Seen};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One step of a case on its connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes (a write error is not a failure: the server may have closed).
    Write(Vec<u8>),
    /// Wait this long before the next step.
    Pause(Duration),
}

/// One crafted exchange, sent as is to both servers.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name; DELIBERATE and KNOWN_GAPS refer to it.
    pub name: String,
    /// What is written to the connection.
    pub steps: Vec<Step>,
    /// The request is a HEAD: responses carry no body.
    pub head: bool,
}

impl Case {
    /// A case that writes `raw` at once.
    pub fn raw(name: impl Into<String>, raw: impl Into<Vec<u8>>) -> Case {
        Case {
            name: name.into(),
            steps: vec![Step::Write(raw.into())],
            head: false,
        }
    }

    /// `GET {target} HTTP/1.1` with `Host: edge.test` and `Connection: close`.
    pub fn get(name: impl Into<String>, target: &str) -> Case {
        Case::raw(
            name,
            format!("GET {target} HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"),
        )
    }

    /// `GET {target}` with `headers` (each `Name: value`, without CRLF) after the Host line
    /// and `Connection: close`.
    pub fn with_headers(name: impl Into<String>, target: &str, headers: &[&str]) -> Case {
        let mut raw = format!("GET {target} HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        Case::raw(name, raw)
    }

    /// A case of several steps.
    pub fn steps(name: impl Into<String>, steps: Vec<Step>) -> Case {
        Case {
            name: name.into(),
            steps,
            head: false,
        }
    }
}

/// How the connection ended after the last response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed it (EOF or reset).
    Closed,
    /// Still open and idle after every response was complete.
    Open,
    /// Nothing complete came back in time.
    Timeout,
}

/// One response as the client read it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status, 0 for bytes that are not an HTTP/1.x status line.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-framed.
    pub body: Vec<u8>,
    /// The body was chunked.
    pub chunked: bool,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What one server did with one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The responses, in order.
    pub responses: Vec<Response>,
    /// How the connection ended.
    pub end: End,
    /// What the origin received meanwhile.
    pub origin: Vec<Seen>,
}

/// How long a connection must stay idle after complete responses to count as kept open.
const IDLE: Duration = Duration::from_millis(800);
/// How long to wait for a response at all.
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs `case` against the server on `port` whose origin is `origin`.
pub fn run(case: &Case, port: u16, origin: &RecordingOrigin) -> Outcome {
    let before = origin.count();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = s.set_nodelay(true);
    for step in &case.steps {
        match step {
            Step::Write(bytes) => {
                let _ = s.write_all(bytes);
            }
            Step::Pause(d) => std::thread::sleep(*d),
        }
    }
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    let end = loop {
        let (responses, complete) = split(&raw, case.head, false);
        let idle_ok = complete && !responses.is_empty();
        let wait = if idle_ok {
            IDLE
        } else {
            PATIENCE.saturating_sub(start.elapsed())
        };
        if wait.is_zero() {
            break End::Timeout;
        }
        let _ = s.set_read_timeout(Some(wait));
        match s.read(&mut buf) {
            Ok(0) => break End::Closed,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break End::Closed,
            Err(_) if idle_ok => break End::Open,
            Err(_) => break End::Timeout,
        }
    };
    let (responses, _) = split(&raw, case.head, end == End::Closed);
    // Anything the proxies forwarded reached the origin before they answered; a refused
    // request may still be on its way when the client gave up, so wait a moment for it.
    std::thread::sleep(Duration::from_millis(20));
    Outcome {
        responses,
        end,
        origin: origin.since(before),
    }
}

/// Splits `raw` into responses; the flag says whether it ends exactly after the last one.
/// `eof`: the connection is closed, so a body without framing ends here.
pub fn split(raw: &[u8], head: bool, eof: bool) -> (Vec<Response>, bool) {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        if !rest.starts_with(b"HTTP/") {
            // Not a status line (an HTTP/0.9 answer, or garbage).
            if !eof {
                return (out, false);
            }
            out.push(Response {
                status: 0,
                headers: Vec::new(),
                body: rest.to_vec(),
                chunked: false,
            });
            return (out, true);
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            return (out, false);
        };
        let text = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let after = &rest[head_end + 4..];
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let no_body = (100..200).contains(&status) || status == 204 || status == 304 || head;
        let (body, used) = if no_body {
            (Vec::new(), 0)
        } else if chunked {
            match dechunk(after) {
                Some(x) => x,
                None => return (out, false),
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if after.len() < len {
                return (out, false);
            }
            (after[..len].to_vec(), len)
        } else if eof {
            (after.to_vec(), after.len())
        } else {
            return (out, false);
        };
        out.push(Response {
            status,
            headers,
            body,
            chunked,
        });
        rest = &after[used..];
    }
    (out, true)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// De-chunks the start of `b`: the body and the bytes used, `None` while incomplete.
fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&b[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&b[at..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let end = at + find(&b[at..], b"\r\n")?;
            return Some((body, end + 2));
        }
        body.extend_from_slice(b.get(at..at + size)?);
        at += size + 2;
        if at > b.len() {
            return None;
        }
    }
}
