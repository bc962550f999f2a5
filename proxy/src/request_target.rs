//! The request target's form (RFC 9112 §3.2), judged as nginx's request-line parser judges
//! it: origin-form (`/path?query`), absolute-form (`http://host:port/path?query`, routed by
//! its host) or `*` for `OPTIONS`. Anything else (`../etc/passwd`, `@evil.test/x`, `h/rel`,
//! `?q`, an authority-form `CONNECT` target) is refused with 400, and so is a target holding
//! a NUL, a space, a control byte or DEL.
//!
//! The path is normalised here, once per request ([`NormalizedPath`]).

use pingora::proxy::Session;
use weir_plugins::path::PathError;
use weir_plugins::respond::respond_text;
use weir_plugins::NormalizedPath;

/// The methods named in the answer to `OPTIONS *`.
const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// The form of an accepted request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm<'a> {
    /// `/path?query`.
    Origin,
    /// `scheme://host[:port]/path?query`; `authority` is `host[:port]` as sent, and
    /// `path_and_query` what follows it (possibly empty or starting with `?`).
    Absolute {
        /// `host[:port]`.
        authority: &'a [u8],
        /// The path and query as sent.
        path_and_query: &'a [u8],
    },
    /// `*` (`OPTIONS *`).
    Asterisk,
}

/// Why a request target is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form, absolute-form or `OPTIONS *`.
    Form,
    /// A NUL, space, control byte or DEL.
    Byte,
    /// The path cannot be normalised.
    Path(PathError),
}

impl TargetError {
    /// Words for the log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            TargetError::Form => "request target is not origin-form, absolute-form or OPTIONS *",
            TargetError::Byte => "request target holds a byte that is not allowed",
            TargetError::Path(e) => e.reason(),
        }
    }
}

/// Judges `target` (the raw request target of a `method` request) and normalises its path.
pub fn parse<'a>(
    method: &http::Method,
    target: &'a [u8],
) -> Result<(TargetForm<'a>, NormalizedPath), TargetError> {
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(TargetError::Byte);
    }
    match target.first() {
        Some(b'/') => {
            let path = NormalizedPath::parse(target).map_err(TargetError::Path)?;
            Ok((TargetForm::Origin, path))
        }
        Some(b'*') if target.len() == 1 && method == http::Method::OPTIONS => {
            Ok((TargetForm::Asterisk, NormalizedPath::root()))
        }
        Some(b) if b.is_ascii_alphabetic() => {
            let (authority, path_and_query) = absolute(target).ok_or(TargetError::Form)?;
            let path = NormalizedPath::parse(path_and_query).map_err(TargetError::Path)?;
            let form = TargetForm::Absolute {
                authority,
                path_and_query,
            };
            Ok((form, path))
        }
        _ => Err(TargetError::Form),
    }
}

/// Answers `OPTIONS *`: it asks about the server itself, not a resource, so weir answers it
/// (`200` with `Allow`) rather than an upstream.
pub async fn answer_asterisk(session: &mut Session) -> pingora::Result<()> {
    respond_text(session, 200, "", &[("Allow", ALLOW.into())]).await
}

/// Splits an absolute-form target into its authority and the rest, as nginx's
/// `ngx_http_parse_request_line` reads it: a scheme of letters, digits, `+`, `-`, `.`; `://`;
/// a host of letters, digits, `.` and `-` or an `[IP-literal]`; an optional port of digits;
/// then nothing, `/…` or `?…`. User info (`user@host`) is refused, as nginx refuses it.
fn absolute(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = target.iter().position(|&b| b == b':')?;
    let scheme = &target[..colon];
    let scheme_ok = scheme
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = target[colon..].strip_prefix(b"://").filter(|_| scheme_ok)?;
    let host_end = if rest.first() == Some(&b'[') {
        let close = rest.iter().position(|&b| b == b']')?;
        let literal_ok = rest[1..close]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b":-._~!$&'()*+,;=".contains(&b));
        literal_ok.then_some(close + 1)?
    } else {
        rest.iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
            .unwrap_or(rest.len())
    };
    if host_end == 0 {
        return None;
    }
    let mut end = host_end;
    if rest.get(end) == Some(&b':') {
        end += 1;
        while rest.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    match rest.get(end) {
        None | Some(b'/' | b'?') => Some((&rest[..end], &rest[end..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn form(method: Method, target: &str) -> Result<(TargetForm<'_>, String), TargetError> {
        parse(&method, target.as_bytes())
            .map(|(f, p)| (f, String::from_utf8_lossy(p.as_bytes()).into_owned()))
    }

    #[test]
    fn origin_form() {
        assert_eq!(
            form(Method::GET, "/a/../b?x"),
            Ok((TargetForm::Origin, "/b".into()))
        );
        assert_eq!(
            form(Method::GET, "/../x"),
            Err(TargetError::Path(PathError::AboveRoot))
        );
    }

    #[test]
    fn absolute_form_is_routed_by_its_host() {
        let (f, path) = form(Method::GET, "http://Img.Test:8080/a/%2e%2e/b?q").unwrap();
        assert_eq!(
            f,
            TargetForm::Absolute {
                authority: b"Img.Test:8080",
                path_and_query: b"/a/%2e%2e/b?q"
            }
        );
        assert_eq!(path, "/b");
        let (f, path) = form(Method::GET, "https://[::1]?q").unwrap();
        assert!(matches!(
            f,
            TargetForm::Absolute {
                authority: b"[::1]",
                ..
            }
        ));
        assert_eq!(path, "/");
        assert_eq!(form(Method::GET, "http://h").unwrap().1, "/");
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in [
            "../etc/passwd",
            "..",
            "@evil.test/x",
            "h/rel",
            "?q",
            "*",
            "http:/x",
            "http://user@host/",
            "http://[::1/",
            "http:///x",
            "http://h:80x/",
            "host:443",
            "",
        ] {
            assert_eq!(form(Method::GET, bad), Err(TargetError::Form), "{bad}");
        }
        assert_eq!(
            form(Method::OPTIONS, "*"),
            Ok((TargetForm::Asterisk, "/".into()))
        );
        assert_eq!(
            form(Method::GET, "http://h/../x"),
            Err(TargetError::Path(PathError::AboveRoot))
        );
    }

    #[test]
    fn control_bytes_and_spaces_are_refused() {
        for bad in ["/a b", "/a\0b", "/a\tb", "/a\x7f", "/a\r"] {
            assert_eq!(form(Method::GET, bad), Err(TargetError::Byte), "{bad:?}");
        }
    }
}
