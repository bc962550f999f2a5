//! Query-parameter parsing: turns `?size=1m&status=404&cc=max-age%3D60` into
//! a [`Params`] that drives what the origin answers. Kept apart from the
//! handler so the little language of the fixture is in one place and testable
//! without sockets.

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;

/// What one request asks the origin to do, read from its query string.
///
/// Unknown parameters are ignored (so cache-busting `?v=3` works); a known
/// parameter with a malformed value is an error (the handler answers 400).
#[derive(Debug, Default, Clone)]
pub struct Params {
    /// `size=N[k|m|g]`: body of N pattern bytes instead of the default text.
    pub size: Option<u64>,
    /// `chunked=1`: no Content-Length, the body goes out chunked.
    pub chunked: bool,
    /// `status=N`: response status.
    pub status: Option<StatusCode>,
    /// `delay=MS`: sleep before sending the response head.
    pub delay: Option<Duration>,
    /// `body_delay=MS`: sleep before each body chunk.
    pub body_delay: Option<Duration>,
    /// `reset_after=N`: announce the full length, send N body bytes (all of
    /// them if N >= length), then abort the connection with an RST.
    pub reset_after: Option<u64>,
    /// `ctype=V`: Content-Type, replacing the default.
    pub content_type: Option<HeaderValue>,
    /// `big_header=N[k|m]`: an `X-Big` response header whose value is N bytes (a response
    /// header block larger than a proxy accepts).
    pub big_header: Option<u64>,
    /// Headers copied verbatim into the response (`cc`, `set_cookie`, `vary`,
    /// `expires`, `x_accel_expires`, `etag`, `last_modified`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Params {
    /// Parses a raw (still percent-encoded) query string; `None` means no query.
    pub fn parse(query: Option<&str>) -> Result<Params, String> {
        let mut p = Params::default();
        for (key, value) in pairs(query.unwrap_or("")) {
            let text = || String::from_utf8_lossy(&value).into_owned();
            match key.as_slice() {
                b"size" => p.size = Some(parse_size(&text()).ok_or_else(|| bad("size", &text()))?),
                b"chunked" => p.chunked = matches!(value.as_slice(), b"1" | b"true" | b"yes"),
                b"status" => {
                    p.status = Some(parse_status(&text()).ok_or_else(|| bad("status", &text()))?)
                }
                b"delay" => p.delay = Some(parse_ms(&text()).ok_or_else(|| bad("delay", &text()))?),
                b"body_delay" => {
                    p.body_delay =
                        Some(parse_ms(&text()).ok_or_else(|| bad("body_delay", &text()))?)
                }
                b"reset_after" => {
                    p.reset_after =
                        Some(parse_size(&text()).ok_or_else(|| bad("reset_after", &text()))?)
                }
                b"ctype" => p.content_type = Some(header_value("ctype", &value)?),
                b"big_header" => {
                    p.big_header = Some(
                        parse_size(&text())
                            .filter(|n| *n <= 1 << 20)
                            .ok_or_else(|| bad("big_header", &text()))?,
                    )
                }
                other => {
                    if let Some(name) = header_param(other) {
                        p.headers
                            .push((name, header_value(&String::from_utf8_lossy(other), &value)?));
                    }
                }
            }
        }
        Ok(p)
    }
}

/// Maps a header-setting parameter name to the header it sets.
fn header_param(key: &[u8]) -> Option<HeaderName> {
    Some(match key {
        b"cc" => header::CACHE_CONTROL,
        b"set_cookie" => header::SET_COOKIE,
        b"vary" => header::VARY,
        b"expires" => header::EXPIRES,
        b"x_accel_expires" => HeaderName::from_static("x-accel-expires"),
        b"etag" => header::ETAG,
        b"last_modified" => header::LAST_MODIFIED,
        _ => return None,
    })
}

fn bad(name: &str, value: &str) -> String {
    format!("bad value for query parameter {name}: {value:?}")
}

fn header_value(name: &str, value: &[u8]) -> Result<HeaderValue, String> {
    HeaderValue::from_bytes(value).map_err(|_| bad(name, &String::from_utf8_lossy(value)))
}

/// Parses `N`, `Nk` (KiB), `Nm` (MiB) or `Ng` (GiB), case-insensitive.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()?.to_ascii_lowercase() {
        b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' => (&s[..s.len() - 1], 1 << 20),
        b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_ms(s: &str) -> Option<Duration> {
    s.trim().parse::<u64>().ok().map(Duration::from_millis)
}

fn parse_status(s: &str) -> Option<StatusCode> {
    let code = s.trim().parse::<u16>().ok()?;
    // 1xx would confuse the HTTP/1.1 framing of a final response.
    (200..=999)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())?
}

/// Iterates the `key=value` pairs of a query, both percent-decoded. The value
/// is everything after the first `=` (so `cc=max-age=60` works unencoded);
/// `+` is kept literally, not turned into a space.
pub fn pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("50k"), Some(50 * 1024));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("1024m"), Some(1 << 30));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("max-age%3D60"), b"max-age=60");
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
        assert_eq!(percent_decode("a+b"), b"a+b");
        assert_eq!(percent_decode("%"), b"%");
    }

    #[test]
    fn full_query() {
        let p = Params::parse(Some(
            "size=1m&chunked=1&status=404&delay=5&body_delay=7&reset_after=10&cc=max-age%3D60&vary=a&ctype=text/html&v=3",
        ))
        .unwrap();
        assert_eq!(p.size, Some(1 << 20));
        assert!(p.chunked);
        assert_eq!(p.status, Some(StatusCode::NOT_FOUND));
        assert_eq!(p.delay, Some(Duration::from_millis(5)));
        assert_eq!(p.body_delay, Some(Duration::from_millis(7)));
        assert_eq!(p.reset_after, Some(10));
        assert_eq!(p.content_type.unwrap(), "text/html");
        assert_eq!(p.headers.len(), 2);
        assert_eq!(
            p.headers[0],
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60")
            )
        );
        assert_eq!(p.headers[1].0, header::VARY);
    }

    #[test]
    fn errors() {
        assert!(Params::parse(Some("size=abc")).is_err());
        assert!(Params::parse(Some("status=100")).is_err());
        assert!(Params::parse(Some("delay=x")).is_err());
        assert!(Params::parse(Some("cc=a%0Ab")).is_err());
        assert!(Params::parse(Some("big_header=2m")).is_err());
        assert_eq!(
            Params::parse(Some("big_header=1k")).unwrap().big_header,
            Some(1024)
        );
        assert!(Params::parse(None).is_ok());
    }
}
