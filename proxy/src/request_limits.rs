//! nginx's request limits, checked before routing: URI length (414), header line length and
//! header count (400), a valid Host (400) and paths that climb above `/` (400).
//!
//! Pingora's own HTTP/1 parser allows ~1 MiB of headers; these bring the limits down to
//! nginx's defaults (`large_client_header_buffers 4 8k`) or the configured ones.

use crate::config::ServerSettings;
use crate::router::normalize_host;
use pingora::http::RequestHeader;

/// Why a request is refused before it reaches a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 414: the request target is longer than `server.max_uri`.
    UriTooLong,
    /// 400: one header line is longer than `server.max_header_line`.
    HeaderLineTooLong,
    /// 400: more headers than `server.max_headers`.
    TooManyHeaders,
    /// 400: the Host header is missing (HTTP/1.1) or not a host name.
    BadHost,
    /// 400: the path climbs above `/` (`/../x`).
    PathAboveRoot,
}

impl Refusal {
    /// The status nginx answers.
    pub fn status(self) -> u16 {
        match self {
            Refusal::UriTooLong => 414,
            _ => 400,
        }
    }

    /// Words for the log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UriTooLong => "request URI too long",
            Refusal::HeaderLineTooLong => "request header line too long",
            Refusal::TooManyHeaders => "too many request headers",
            Refusal::BadHost => "missing or invalid Host header",
            Refusal::PathAboveRoot => "path climbs above /",
        }
    }
}

/// Checks `req` against the limits of `server`. Returns the host to route by (without
/// port) when the request is acceptable.
pub fn check<'a>(
    req: &'a RequestHeader,
    server: &ServerSettings,
) -> Result<Option<&'a str>, Refusal> {
    let raw = req.raw_path();
    if raw.len() > server.max_uri {
        return Err(Refusal::UriTooLong);
    }
    if req.headers.len() > server.max_headers {
        return Err(Refusal::TooManyHeaders);
    }
    for (name, value) in req.headers.iter() {
        if name.as_str().len() + 2 + value.len() > server.max_header_line {
            return Err(Refusal::HeaderLineTooLong);
        }
    }
    let path = raw.split(|b| *b == b'?').next().unwrap_or(raw);
    if climbs_above_root(path) {
        return Err(Refusal::PathAboveRoot);
    }
    host(req)
}

/// The routing host: the Host header, else the URI authority (HTTP/2 `:authority`, absolute
/// request targets). HTTP/1.1 requires one; HTTP/1.0 may omit it.
fn host(req: &RequestHeader) -> Result<Option<&str>, Refusal> {
    let raw = match req.headers.get(http::header::HOST) {
        Some(h) => Some(h.as_bytes()),
        None => req.uri.authority().map(|a| a.as_str().as_bytes()),
    };
    match raw {
        Some(raw) => normalize_host(raw).map(Some).ok_or(Refusal::BadHost),
        None if req.version == http::Version::HTTP_10 => Ok(None),
        None => Err(Refusal::BadHost),
    }
}

/// True when the dot segments of `path` would leave the root, as nginx's URI parser judges
/// (`%2e` counts as a dot).
fn climbs_above_root(path: &[u8]) -> bool {
    let mut depth: i64 = 0;
    for segment in path.split(|b| *b == b'/').skip(1) {
        match dot_segment(segment) {
            Some(1) => {}
            Some(2) => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ if segment.is_empty() => {}
            _ => depth += 1,
        }
    }
    false
}

/// `Some(1)` for `.`, `Some(2)` for `..` (with `%2e` for a dot), else `None`.
fn dot_segment(seg: &[u8]) -> Option<usize> {
    let mut dots = 0;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg.len() >= i + 3
            && seg[i] == b'%'
            && seg[i + 1] == b'2'
            && seg[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return None;
        }
        dots += 1;
    }
    (1..=2).contains(&dots).then_some(dots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments() {
        assert!(climbs_above_root(b"/../x"));
        assert!(climbs_above_root(b"/a/../../x"));
        assert!(climbs_above_root(b"/%2e%2E/x"));
        assert!(climbs_above_root(b"/./.."));
        assert!(!climbs_above_root(b"/a/../b"));
        assert!(!climbs_above_root(b"/a/b/.."));
        assert!(!climbs_above_root(b"/...x/..."));
        assert!(!climbs_above_root(b"//a/.."));
        assert!(!climbs_above_root(b"/"));
    }

    #[test]
    fn host_rules() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(host(&r), Err(Refusal::BadHost));
        r.set_version(http::Version::HTTP_10);
        assert_eq!(host(&r), Ok(None));
        r.insert_header("Host", "Img.Example.com:8080").unwrap();
        assert_eq!(host(&r), Ok(Some("Img.Example.com")));
        r.insert_header("Host", "bad host").unwrap();
        assert_eq!(host(&r), Err(Refusal::BadHost));
    }
}
