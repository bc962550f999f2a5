//! Request keys: what a limit counts by (`client_ip`, `host`, `uri`, `header:NAME`,
//! `cookie:NAME`, or a list of these). Parsed once at load time; extracted per request
//! into a reusable byte buffer without parsing strings again.

use crate::config::ConfigErrors;
use crate::RequestCtx;
use pingora::http::RequestHeader;
use serde::Deserialize;
use std::net::IpAddr;

/// One part of a request key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address (after the trusted-proxy rules), as 4 or 16 bytes like nginx's
    /// `$binary_remote_addr`.
    ClientIp,
    /// The Host header, lower-cased.
    Host,
    /// The normalised path (as routes see it, see [`crate::NormalizedPath`]), then `?` and
    /// the query as received when there is one: `/a/../b?x` and `/%62?x` are one key.
    Uri,
    /// A request header's value (all values joined by `,`).
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
}

/// A key as written in YAML: one part, or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// `key: client_ip`
    One(String),
    /// `key: [client_ip, host]`
    Many(Vec<String>),
}

/// A parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey(pub Vec<KeyPart>);

/// Parses `client_ip`, `host`, `uri`, `header:NAME`, `cookie:NAME`.
pub fn parse_key_part(s: &str) -> Result<KeyPart, String> {
    match s.split_once(':') {
        None => match s {
            "client_ip" => Ok(KeyPart::ClientIp),
            "host" => Ok(KeyPart::Host),
            "uri" => Ok(KeyPart::Uri),
            _ => Err(format!(
                "unknown key `{s}` (expected client_ip, host, uri, header:NAME or cookie:NAME)"
            )),
        },
        Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
            .map(KeyPart::Header)
            .map_err(|_| format!("`{name}` is not a valid header name")),
        Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
            Ok(KeyPart::Cookie(name.to_string()))
        }
        Some(("cookie", name)) => Err(format!("`{name}` is not a valid cookie name")),
        Some((kind, _)) => Err(format!(
            "unknown key kind `{kind}:` (expected header: or cookie:)"
        )),
    }
}

/// Parses a whole key spec found at `path`.
pub fn parse_key(spec: &KeySpec, path: &str) -> Result<RequestKey, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let parts: Vec<&String> = match spec {
        KeySpec::One(s) => vec![s],
        KeySpec::Many(v) => v.iter().collect(),
    };
    if parts.is_empty() {
        errors.push(path, "a key needs at least one part");
    }
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let at = match spec {
            KeySpec::One(_) => path.to_string(),
            KeySpec::Many(_) => format!("{path}[{i}]"),
        };
        match parse_key_part(p) {
            Ok(k) => out.push(k),
            Err(e) => errors.push(at, e),
        }
    }
    errors.into_result(RequestKey(out))
}

/// Separates the parts of a composite key so `a`+`bc` and `ab`+`c` differ.
const SEPARATOR: u8 = 0x1f;

impl RequestKey {
    /// Writes this request's key into `out` (cleared first). A missing header or cookie
    /// contributes an empty part, as an empty nginx variable does.
    pub fn extract(&self, req: &RequestHeader, ctx: &RequestCtx, out: &mut Vec<u8>) {
        out.clear();
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(SEPARATOR);
            }
            match part {
                KeyPart::ClientIp => match ctx.client_ip {
                    Some(IpAddr::V4(v4)) => out.extend_from_slice(&v4.octets()),
                    Some(IpAddr::V6(v6)) => out.extend_from_slice(&v6.octets()),
                    None => {}
                },
                KeyPart::Host => {
                    let host = req
                        .headers
                        .get(http::header::HOST)
                        .map(|h| h.as_bytes())
                        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
                        .unwrap_or_default();
                    out.extend(host.iter().map(u8::to_ascii_lowercase));
                }
                KeyPart::Uri => {
                    out.extend_from_slice(ctx.path.as_bytes());
                    if let Some(query) = query(req.raw_path()) {
                        out.push(b'?');
                        out.extend_from_slice(query);
                    }
                }
                KeyPart::Header(name) => {
                    for (j, v) in req.headers.get_all(name).iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                KeyPart::Cookie(name) => {
                    if let Some(v) = cookie(req, name) {
                        out.extend_from_slice(v);
                    }
                }
            }
        }
    }
}

/// The query of a raw request target (after the first `?`, before a `#`), as sent.
pub fn query(target: &[u8]) -> Option<&[u8]> {
    let start = target.iter().position(|&b| b == b'?')? + 1;
    let end = target[start..]
        .iter()
        .position(|&b| b == b'#')
        .map_or(target.len(), |e| start + e);
    Some(&target[start..end])
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let rest = pair.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(spec: &str) -> RequestKey {
        let spec: KeySpec = serde_yaml_ng::from_str(spec).unwrap();
        parse_key(&spec, "k").unwrap()
    }

    #[test]
    fn parses_parts() {
        assert_eq!(
            parse_key_part("header:X-Api-Key"),
            Ok(KeyPart::Header(http::HeaderName::from_static("x-api-key")))
        );
        assert_eq!(
            parse_key_part("cookie:sid"),
            Ok(KeyPart::Cookie("sid".into()))
        );
        assert!(parse_key_part("arg:x").is_err());
        assert!(parse_key_part("cookie:a=b").is_err());
    }

    #[test]
    fn extracts_composite_keys() {
        let mut req = RequestHeader::build("GET", b"/x/../%61?b=1", None).unwrap();
        req.insert_header("Host", "IMG.example.com").unwrap();
        req.insert_header("Cookie", "x=1; sid=abc; y=2").unwrap();
        let path = crate::NormalizedPath::parse(req.raw_path()).unwrap();
        let ctx = RequestCtx::new(
            Some("10.0.0.1".parse().unwrap()),
            Arc::from("r"),
            false,
            path,
        );
        let mut out = Vec::new();
        key("[client_ip, host, uri, 'cookie:sid', 'header:X-Missing']")
            .extract(&req, &ctx, &mut out);
        let mut want = vec![10, 0, 0, 1, SEPARATOR];
        want.extend_from_slice(b"img.example.com\x1f/a?b=1\x1fabc\x1f");
        assert_eq!(out, want);
        key("client_ip").extract(&req, &ctx, &mut out);
        assert_eq!(out, [10, 0, 0, 1]);
    }

    #[test]
    fn queries_are_taken_as_sent() {
        assert_eq!(query(b"/a?b=%2e#f"), Some(&b"b=%2e"[..]));
        assert_eq!(query(b"/a?"), Some(&b""[..]));
        assert_eq!(query(b"/a"), None);
    }

    #[test]
    fn cookie_names_match_exactly() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("Cookie", "xsid=1; sid=2").unwrap();
        assert_eq!(cookie(&req, "sid"), Some(&b"2"[..]));
        assert_eq!(cookie(&req, "id"), None);
    }
}
