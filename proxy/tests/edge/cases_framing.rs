//! Cases: message framing (Content-Length and Transfer-Encoding combinations, chunk
//! syntax), pipelining, HTTP/1.0 and 1.1 keep-alive, `Expect: 100-continue`, and an
//! oversized upstream response header.

use super::client::{Case, Step};
use std::time::Duration;

/// `POST /f` with `headers` (each without CRLF) and then `body` as raw bytes.
fn post(name: &str, headers: &[&str], body: &[u8]) -> Case {
    let mut raw = String::from("POST /f HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    Case::raw(name, raw)
}

/// A chunked `POST /f` whose body is `chunks` (raw).
fn chunked(name: &str, chunks: &[u8]) -> Case {
    post(name, &["Transfer-Encoding: chunked"], chunks)
}

/// Content-Length and Transfer-Encoding combinations, chunk syntax.
pub fn framing() -> Vec<Case> {
    let smuggle = |name: &str, headers: &str| {
        Case::steps(
            name,
            vec![
                Step::Write(
                    format!("POST /a HTTP/1.1\r\nHost: edge.test\r\n{headers}\r\n0\r\n\r\n")
                        .into_bytes(),
                ),
                Step::Pause(Duration::from_millis(400)),
                Step::Write(b"GET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n".to_vec()),
            ],
        )
    };
    vec![
        smuggle(
            "CL+TE then a request 0.4 s later (the issue's smuggling)",
            "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
        ),
        smuggle(
            "TE+CL (other order) then a request",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        post("Content-Length 5", &["Content-Length: 5"], b"hello"),
        post("Content-Length 0", &["Content-Length: 0"], b""),
        post(
            "two different Content-Lengths",
            &["Content-Length: 5", "Content-Length: 6"],
            b"hello!",
        ),
        post(
            "two equal Content-Lengths",
            &["Content-Length: 5", "Content-Length: 5"],
            b"hello",
        ),
        post(
            "Content-Length list 5, 5",
            &["Content-Length: 5, 5"],
            b"hello",
        ),
        post("Content-Length +5", &["Content-Length: +5"], b"hello"),
        post("Content-Length -1", &["Content-Length: -1"], b""),
        post("Content-Length abc", &["Content-Length: abc"], b""),
        post(
            "Content-Length of 20 digits",
            &["Content-Length: 99999999999999999999"],
            b"",
        ),
        post(
            "Content-Length over max body (2 MiB)",
            &["Content-Length: 2097152"],
            b"",
        ),
        post("POST without a body length", &[], b""),
        chunked("chunked", b"5\r\nhello\r\n0\r\n\r\n"),
        post(
            "Transfer-Encoding Chunked (case)",
            &["Transfer-Encoding: Chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "Transfer-Encoding gzip",
            &["Transfer-Encoding: gzip"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "Transfer-Encoding chunked, chunked",
            &["Transfer-Encoding: chunked, chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "Transfer-Encoding gzip, chunked",
            &["Transfer-Encoding: gzip, chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "Content-Length with Transfer-Encoding gzip, chunked",
            &["Content-Length: 5", "Transfer-Encoding: gzip, chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "Transfer-Encoding identity",
            &["Transfer-Encoding: identity", "Content-Length: 5"],
            b"hello",
        ),
        post(
            "two Transfer-Encoding headers",
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        Case::raw(
            "Transfer-Encoding on HTTP/1.0",
            "POST /f HTTP/1.0\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        chunked("chunk extension", b"5;ext=1\r\nhello\r\n0\r\n\r\n"),
        chunked(
            "chunk extension with a quoted value",
            b"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n",
        ),
        chunked("bare LF in a chunk extension", b"5;ext\nhello\r\n0\r\n\r\n"),
        chunked("bare LF after the size", b"5\nhello\r\n0\r\n\r\n"),
        chunked("bare LF after the data", b"5\r\nhello\n0\r\n\r\n"),
        chunked("bad hex size", b"zz\r\nhello\r\n0\r\n\r\n"),
        chunked("size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
        chunked("negative size", b"-5\r\nhello\r\n0\r\n\r\n"),
        chunked(
            "size of 20 hex digits",
            b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        chunked(
            "size over max body (2 MiB)",
            b"200000\r\nhello\r\n0\r\n\r\n",
        ),
        chunked("data longer than its size", b"3\r\nhello\r\n0\r\n\r\n"),
        chunked("space before the size", b" 5\r\nhello\r\n0\r\n\r\n"),
        chunked(
            "trailer after the last chunk",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        post("GET-style body on GET", &["Content-Length: 5"], b"hello").renamed_get(),
    ]
}

impl Case {
    /// The same bytes with `POST` replaced by `GET` (a body on a GET).
    fn renamed_get(mut self) -> Case {
        for step in &mut self.steps {
            if let Step::Write(b) = step {
                if b.starts_with(b"POST ") {
                    b.splice(0..4, b"GET".iter().copied());
                }
            }
        }
        self
    }
}

/// Pipelining, keep-alive on 1.0 and 1.1, Expect, and the upstream header bound.
pub fn connections() -> Vec<Case> {
    let req = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: edge.test\r\n{extra}\r\n")
    };
    let expect = |name: &str, version: &str, len: usize, body: &[u8]| {
        Case::steps(
            name,
            vec![
                Step::Write(
                    format!(
                        "POST /e {version}\r\nHost: edge.test\r\nConnection: close\r\n\
                         Expect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
                    )
                    .into_bytes(),
                ),
                Step::Pause(Duration::from_millis(300)),
                Step::Write(body.to_vec()),
            ],
        )
    };
    vec![
        Case::raw(
            "three pipelined GETs",
            format!(
                "{}{}{}",
                req("/p1", ""),
                req("/p2", ""),
                req("/p3", "Connection: close\r\n")
            ),
        ),
        Case::raw(
            "pipelined POST with a body, then a GET",
            format!(
                "POST /p4 HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhello{}",
                req("/p5", "Connection: close\r\n")
            ),
        ),
        Case::raw(
            "pipelined GET, a bad request, a GET",
            format!(
                "{}GET /p7 HTTP/1.1\r\nHost: [../x]\r\n\r\n{}",
                req("/p6", ""),
                req("/p8", "Connection: close\r\n")
            ),
        ),
        Case::raw(
            "pipelined GET then CL+TE",
            format!(
                "{}POST /p10 HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
                req("/p9", ""),
                req("/p11", "Connection: close\r\n")
            ),
        ),
        Case::raw("HTTP/1.1 keep-alive by default", req("/k1", "")),
        Case::raw(
            "HTTP/1.1 Connection: close",
            req("/k2", "Connection: close\r\n"),
        ),
        Case::raw(
            "HTTP/1.0 closes",
            "GET /k3 HTTP/1.0\r\nHost: edge.test\r\n\r\n",
        ),
        Case::raw(
            "HTTP/1.0 with Connection: keep-alive",
            "GET /k4 HTTP/1.0\r\nHost: edge.test\r\nConnection: keep-alive\r\n\r\n",
        ),
        Case::raw(
            "HTTP/1.0, chunked upstream answer",
            "GET /__chunked HTTP/1.0\r\nHost: edge.test\r\n\r\n",
        ),
        Case::raw(
            "HTTP/1.0 keep-alive, chunked upstream answer",
            "GET /__chunked?ka HTTP/1.0\r\nHost: edge.test\r\nConnection: keep-alive\r\n\r\n",
        ),
        Case::raw(
            "HTTP/1.1, chunked upstream answer",
            req("/__chunked?11", "Connection: close\r\n"),
        ),
        Case::raw(
            "two HTTP/1.0 keep-alive requests",
            "GET /k5 HTTP/1.0\r\nHost: edge.test\r\nConnection: keep-alive\r\n\r\n\
             GET /k6 HTTP/1.0\r\nHost: edge.test\r\n\r\n",
        ),
        expect("Expect: 100-continue", "HTTP/1.1", 5, b"hello"),
        expect(
            "Expect: 100-continue, body over max",
            "HTTP/1.1",
            2 << 20,
            b"",
        ),
        expect("Expect: 100-continue on HTTP/1.0", "HTTP/1.0", 5, b"hello"),
        post(
            "Expect: something else",
            &["Expect: something-else", "Content-Length: 5"],
            b"hello",
        ),
        Case::raw(
            "upstream response header of 100 KiB",
            req("/__bighdr", "Connection: close\r\n"),
        ),
    ]
}
