//! The headers weir adds to every upstream request (nginx `proxy_set_header` defaults):
//! `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`; the hop-by-hop headers it drops; and
//! the request target, which goes upstream as the client sent it, in origin-form.
//!
//! This runs once per proxied request, so it formats the client address on the stack and
//! looks headers up by pre-parsed names. The names it inserts stay `&'static str`: Pingora
//! keeps the case it is given on the wire (`X-Forwarded-For`), where a `HeaderName` would go
//! out lower-cased.

use crate::request_target::{self, TargetForm};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::ErrorType;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: http::HeaderName = http::HeaderName::from_static("proxy-connection");

/// Sets `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`: the client's list plus the
/// client), `X-Real-IP` and `X-Forwarded-Proto` on `request`.
pub(super) fn add_forwarding_headers(
    request: &mut RequestHeader,
    client_ip: Option<IpAddr>,
    tls: bool,
) -> Result<()> {
    if let Some(ip) = client_ip {
        let ip = IpText::new(ip);
        let prev = request
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        let xff = match prev {
            Some(prev) => {
                let mut list = Vec::with_capacity(prev.len() + 2 + ip.as_bytes().len());
                list.extend_from_slice(prev.as_bytes());
                list.extend_from_slice(b", ");
                list.extend_from_slice(ip.as_bytes());
                http::HeaderValue::try_from(list)
            }
            None => http::HeaderValue::from_bytes(ip.as_bytes()),
        };
        request.insert_header("X-Forwarded-For", valid(xff)?)?;
        request.insert_header(
            "X-Real-IP",
            valid(http::HeaderValue::from_bytes(ip.as_bytes()))?,
        )?;
    }
    let proto = if tls { "https" } else { "http" };
    request.insert_header("X-Forwarded-Proto", http::HeaderValue::from_static(proto))
}

/// Turns an absolute-form target (`http://host/a?b`) into the origin-form nginx's
/// `proxy_pass` sends (`/a?b`, path and query exactly as sent), with the target's host as
/// `Host` when the client sent none (HTTP/1.0). Any other target is left as it is.
pub(super) fn origin_form(request: &mut RequestHeader) -> Result<()> {
    let Ok((
        TargetForm::Absolute {
            authority,
            path_and_query,
        },
        _,
    )) = request_target::parse(&request.method, request.raw_path())
    else {
        return Ok(());
    };
    let mut target = Vec::with_capacity(path_and_query.len() + 1);
    if path_and_query.first() != Some(&b'/') {
        target.push(b'/');
    }
    target.extend_from_slice(path_and_query);
    let host = http::HeaderValue::from_bytes(authority);
    let host = host.or_err(
        ErrorType::InvalidHTTPHeader,
        "absolute-form authority as Host",
    )?;
    request.set_raw_path(&target)?;
    if request.headers.get(http::header::HOST).is_none() {
        request.insert_header(http::header::HOST, host)?;
    }
    Ok(())
}

/// Drops `Connection`, `Keep-Alive` and `Proxy-Connection`: they are the client's business,
/// not the upstream's, and a client's `Connection: close` must not cost the pooled upstream
/// connection.
pub(super) fn remove_hop_by_hop(request: &mut RequestHeader) {
    for name in [&http::header::CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION] {
        // Checking first skips the case-preserving map's work in the common case.
        if request.headers.contains_key(name) {
            request.remove_header(name);
        }
    }
}

/// An address is always a valid header value; the error is kept for form's sake.
fn valid(
    value: Result<http::HeaderValue, http::header::InvalidHeaderValue>,
) -> Result<http::HeaderValue> {
    value.or_err(
        ErrorType::InvalidHTTPHeader,
        "client address as a header value",
    )
}

/// An IP address as text, on the stack. The longest text is 45 bytes
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => text.push_v4(v4),
            // Rare enough to go through `Display`, which picks the compressed form.
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    /// `a.b.c.d` without `Display`'s padding machinery.
    fn push_v4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if octet >= 100 {
                self.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.push(b'0' + octet / 10 % 10);
            }
            self.push(b'0' + octet % 10);
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        let ips: [IpAddr; 8] = [
            "0.0.0.0".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            "10.20.30.40".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "192.0.2.109".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ];
        for ip in ips {
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
        let mapped: IpAddr = "::ffff:255.255.255.255".parse().unwrap();
        assert_eq!(
            IpText::new(mapped).as_bytes(),
            mapped.to_string().as_bytes()
        );
    }

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn appends_to_the_forwarded_list() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Forwarded-For", "203.0.113.7").unwrap();
        let ip = Some("127.0.0.1".parse().unwrap());
        add_forwarding_headers(&mut req, ip, true).unwrap();
        assert_eq!(
            header(&req, "x-forwarded-for"),
            Some("203.0.113.7, 127.0.0.1")
        );
        assert_eq!(header(&req, "x-real-ip"), Some("127.0.0.1"));
        assert_eq!(header(&req, "x-forwarded-proto"), Some("https"));

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Forwarded-For", "").unwrap();
        add_forwarding_headers(&mut req, ip, false).unwrap();
        assert_eq!(header(&req, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(header(&req, "x-forwarded-proto"), Some("http"));
    }

    #[test]
    fn keeps_the_case_on_the_wire() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        add_forwarding_headers(&mut req, Some("::1".parse().unwrap()), false).unwrap();
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("X-Forwarded-For: ::1\r\n"), "{wire}");
        assert!(wire.contains("X-Real-IP: ::1\r\n"), "{wire}");
        assert!(wire.contains("X-Forwarded-Proto: http\r\n"), "{wire}");
    }

    #[test]
    fn drops_hop_by_hop_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for name in ["Connection", "Keep-Alive", "Proxy-Connection", "Accept"] {
            req.insert_header(name, "x").unwrap();
        }
        remove_hop_by_hop(&mut req);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }
}
