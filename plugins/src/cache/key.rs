//! The cache key template (nginx `proxy_cache_key`): text with `$scheme`, `$host`,
//! `$request_uri`, `$uri`, `$args`, `$is_args`, `$http_NAME` and `$cookie_NAME`, parsed once
//! at load and rendered per request without parsing. A route's `return` target renders its
//! `location` and `body` with the same template.

use crate::key::{cookie, query};
use crate::NormalizedPath;
use pingora::http::RequestHeader;

/// One piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Scheme,
    Host,
    RequestUri,
    Uri,
    Args,
    IsArgs,
    Header(http::HeaderName),
    Cookie(String),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate(Vec<Piece>);

/// nginx's default would be `$scheme$proxy_host$request_uri`; weir keys on the client's host
/// so one upstream can serve several sites.
pub const DEFAULT_KEY: &str = "$scheme$host$request_uri";

impl KeyTemplate {
    /// Parses `template`; an unknown variable is an error naming it.
    pub fn parse(template: &str) -> Result<KeyTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_string()));
            }
            let after = &rest[at + 1..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            let piece = match name {
                "scheme" => Piece::Scheme,
                "host" => Piece::Host,
                "request_uri" => Piece::RequestUri,
                "uri" => Piece::Uri,
                "args" => Piece::Args,
                "is_args" => Piece::IsArgs,
                _ => match (name.strip_prefix("http_"), name.strip_prefix("cookie_")) {
                    (Some(h), _) if !h.is_empty() => {
                        let header = h.replace('_', "-").to_ascii_lowercase();
                        Piece::Header(
                            http::HeaderName::from_bytes(header.as_bytes())
                                .map_err(|_| format!("`${name}`: not a header name"))?,
                        )
                    }
                    (_, Some(c)) if !c.is_empty() => Piece::Cookie(c.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown variable `${name}` (expected $scheme, $host, $request_uri, $uri, $args, $is_args, $http_NAME or $cookie_NAME)"
                        ))
                    }
                },
            };
            pieces.push(piece);
            rest = &after[len..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if pieces.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(KeyTemplate(pieces))
    }

    /// The key of `req` (`tls`: the client connection's scheme; `path`: its normalised path,
    /// nginx's `$uri`), as bytes.
    pub fn render(&self, req: &RequestHeader, tls: bool, path: &NormalizedPath) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Scheme => out.extend_from_slice(if tls { b"https" } else { b"http" }),
                Piece::Host => {
                    // nginx $host: the Host header without its port, lower-cased.
                    let host = req
                        .headers
                        .get(http::header::HOST)
                        .map(|h| h.as_bytes())
                        .or_else(|| req.uri.authority().map(|a| a.host().as_bytes()))
                        .unwrap_or_default();
                    // nginx's $host also drops a trailing dot (`img.test.` is `img.test`).
                    let host = strip_port(host);
                    let host = host.strip_suffix(b".").unwrap_or(host);
                    out.extend(host.iter().map(u8::to_ascii_lowercase));
                }
                Piece::RequestUri => out.extend_from_slice(req.raw_path()),
                Piece::Uri => out.extend_from_slice(path.as_bytes()),
                Piece::Args => out.extend_from_slice(query(req.raw_path()).unwrap_or_default()),
                Piece::IsArgs => {
                    // nginx: `?` when the request has a non-empty query, else nothing.
                    if query(req.raw_path()).is_some_and(|q| !q.is_empty()) {
                        out.push(b'?');
                    }
                }
                Piece::Header(name) => {
                    for (j, v) in req.headers.get_all(name).iter().enumerate() {
                        if j > 0 {
                            out.extend_from_slice(b", ");
                        }
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                Piece::Cookie(name) => {
                    if let Some(v) = cookie(req, name) {
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out
    }
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        // [v6]:port
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), v.to_string()).unwrap();
        }
        r
    }

    #[test]
    fn uri_is_the_normalised_path_and_request_uri_is_raw() {
        let t = KeyTemplate::parse("$uri|$request_uri|$args|$uri$is_args$args").unwrap();
        let r = req("/a/../%62//c?x=%2e", &[("Host", "h")]);
        let path = NormalizedPath::parse(r.raw_path()).unwrap();
        assert_eq!(
            String::from_utf8(t.render(&r, false, &path)).unwrap(),
            "/b/c|/a/../%62//c?x=%2e|x=%2e|/b/c?x=%2e"
        );
        for (bare, expected) in [("/b/c", "/b/c|/b/c||/b/c"), ("/b/c?", "/b/c|/b/c?||/b/c")] {
            let r = req(bare, &[("Host", "h")]);
            let path = NormalizedPath::parse(r.raw_path()).unwrap();
            assert_eq!(
                String::from_utf8(t.render(&r, false, &path)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn renders_nginx_variables() {
        let t = KeyTemplate::parse(
            "$scheme://$host$request_uri|$uri|$args|$http_x_variant|$cookie_lang",
        )
        .unwrap();
        let r = req(
            "/img/a.jpg?w=1",
            &[
                ("Host", "IMG.example.com:8080"),
                ("X-Variant", "b"),
                ("Cookie", "a=1; lang=de"),
            ],
        );
        assert_eq!(
            String::from_utf8(t.render(&r, true, &NormalizedPath::parse(r.raw_path()).unwrap()))
                .unwrap(),
            "https://img.example.com/img/a.jpg?w=1|/img/a.jpg|w=1|b|de"
        );
    }

    #[test]
    fn rejects_unknown_variables() {
        assert!(KeyTemplate::parse("$scheme$proxy_host")
            .unwrap_err()
            .contains("$proxy_host"));
        assert!(KeyTemplate::parse("").is_err());
    }
}
