//! Message framing at the edge: how a request's body is framed, checked as nginx 1.22
//! checks it (`ngx_http_process_request_header`) before anything reads the body; the
//! `100 Continue` weir owes a client that expects one; the size of an upstream's response
//! header, which `upstreams.*.max_response_header` bounds.
//!
//! Pingora's HTTP/1 parser already refuses a request with both `Content-Length` and
//! `Transfer-Encoding`, a `Transfer-Encoding` on HTTP/1.0, and `Content-Length` values that
//! disagree or do not parse (400), and a final coding other than `chunked` (501), each with
//! the connection closed. What it accepts and nginx does not is refused here: a message that two parsers
//! could frame two ways must not reach an origin that trusts weir.

use crate::upstream::Upstream;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use weir_plugins::respond::path_for_log;

/// Why a request's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingRefusal {
    /// 400: more than one `Content-Length` line (nginx: "duplicate header line"), even
    /// with equal values.
    DuplicateContentLength,
    /// 400: a `Content-Length` that is not a plain decimal number, e.g. the list `3, 3`.
    BadContentLength,
    /// 400: more than one `Transfer-Encoding` line.
    DuplicateTransferEncoding,
    /// 501: a `Transfer-Encoding` other than exactly `chunked`, e.g. `gzip, chunked` or
    /// `chunked, chunked` (nginx: "unknown Transfer-Encoding").
    UnknownTransferEncoding,
}

impl FramingRefusal {
    /// The status nginx answers; the connection is closed after it.
    pub fn status(self) -> u16 {
        match self {
            FramingRefusal::UnknownTransferEncoding => 501,
            _ => 400,
        }
    }

    /// Words for the log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            FramingRefusal::DuplicateContentLength => "duplicate Content-Length header",
            FramingRefusal::BadContentLength => "invalid Content-Length header",
            FramingRefusal::DuplicateTransferEncoding => "duplicate Transfer-Encoding header",
            FramingRefusal::UnknownTransferEncoding => "unknown Transfer-Encoding",
        }
    }
}

/// Checks the framing headers of `req`.
pub fn check(req: &RequestHeader) -> Result<(), FramingRefusal> {
    let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(length) = lengths.next() {
        if lengths.next().is_some() {
            return Err(FramingRefusal::DuplicateContentLength);
        }
        let digits = length.as_bytes();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(FramingRefusal::BadContentLength);
        }
    }
    let mut codings = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if codings.next().is_some() {
            return Err(FramingRefusal::DuplicateTransferEncoding);
        }
        if !coding.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(FramingRefusal::UnknownTransferEncoding);
        }
    }
    Ok(())
}

/// The size of `resp`'s header block as HTTP/1.1 carries it: the status line, every header
/// line with its `: ` and CRLF, and the blank line. What `upstreams.*.max_response_header`
/// bounds, as nginx's `proxy_buffer_size` bounds the response header it reads.
pub fn response_head_bytes(resp: &ResponseHeader) -> usize {
    let reason = resp.status.canonical_reason().map_or(0, str::len);
    let status_line = "HTTP/1.1 200 ".len() + reason + 2;
    let lines: usize = resp
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    status_line + lines + 2
}

/// Refuses with 502 (and a log line) a response from `upstream` whose header block is
/// larger than its `max_response_header`.
pub fn check_response_head(
    resp: &ResponseHeader,
    upstream: &Upstream,
    session: &Session,
) -> pingora::Result<()> {
    let size = response_head_bytes(resp);
    if size <= upstream.max_response_header {
        return Ok(());
    }
    log::warn!(
        "upstream {}: response header of {size} bytes for {} is larger than \
         max_response_header ({} bytes): 502",
        upstream.name,
        path_for_log(session.req_header()),
        upstream.max_response_header
    );
    Err(pingora::Error::explain(
        pingora::ErrorType::HTTPStatus(502),
        "upstream response header too large",
    ))
}

/// Answers `Expect: 100-continue` with `100 Continue`, as nginx does when it starts to read
/// a request body: called once the request passed every check that could refuse it (a
/// refusal, e.g. 413 by the declared length, goes out without a 100). HTTP/1.0 has no 1xx.
/// The upstream never sees `Expect` (nginx does not forward it either).
pub async fn continue_if_expected(session: &mut Session) -> pingora::Result<()> {
    let req = session.req_header();
    let expects = matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_2)
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects && session.response_written().is_none() {
        session.write_continue_response().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), FramingRefusal>);

    #[test]
    fn nginx_framing_rules() {
        use FramingRefusal::*;
        let cases: &[Case] = &[
            (&[], Ok(())),
            (&[("Content-Length", "3")], Ok(())),
            (&[("Content-Length", "0")], Ok(())),
            (&[("Transfer-Encoding", "chunked")], Ok(())),
            (&[("Transfer-Encoding", "CHUNKED")], Ok(())),
            (
                &[("Content-Length", "3"), ("Content-Length", "3")],
                Err(DuplicateContentLength),
            ),
            (&[("Content-Length", "3, 3")], Err(BadContentLength)),
            (&[("Content-Length", "+3")], Err(BadContentLength)),
            (&[("Content-Length", "")], Err(BadContentLength)),
            (
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(DuplicateTransferEncoding),
            ),
            (
                &[("Transfer-Encoding", "chunked, chunked")],
                Err(UnknownTransferEncoding),
            ),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                Err(UnknownTransferEncoding),
            ),
            (
                &[("Transfer-Encoding", "chunked ;x")],
                Err(UnknownTransferEncoding),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(check(&request(headers)), *want, "{headers:?}");
        }
    }

    #[test]
    fn response_head_size() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        assert_eq!(response_head_bytes(&resp), b"HTTP/1.1 200 OK\r\n\r\n".len());
        resp.append_header("X-Big", "a".repeat(100)).unwrap();
        assert_eq!(
            response_head_bytes(&resp),
            b"HTTP/1.1 200 OK\r\n\r\n".len() + b"x-big: \r\n".len() + 100
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(FramingRefusal::UnknownTransferEncoding.status(), 501);
        assert_eq!(FramingRefusal::DuplicateContentLength.status(), 400);
    }
}
