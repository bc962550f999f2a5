//! nginx's checks of a request before it is routed: URI length (414), the method (400 for
//! one nginx cannot parse, 405 for `TRACE` and `CONNECT`), the request target's form and path
//! (400, see [`crate::request_target`]), header line length, header count and the size of
//! the whole header block (400), and a valid, single Host (400). Header names with `_` are
//! dropped afterwards, as nginx's `underscores_in_headers off` ignores them.
//!
//! Pingora's own HTTP/1 parser allows ~1 MiB of headers; these bring the limits down to
//! nginx's defaults (`large_client_header_buffers 4 8k`) or the configured ones.

use crate::config::ServerSettings;
use crate::request_target::{self, TargetError, TargetForm};
use crate::router::normalize_host;
use pingora::http::RequestHeader;
use weir_plugins::NormalizedPath;

/// Why a request is refused before it reaches a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 414: the request target is longer than `server.max_uri`.
    UriTooLong,
    /// 400: the method is not uppercase letters, `_` and `-` (nginx's rule).
    BadMethod,
    /// 405: `TRACE` or `CONNECT`, which nginx never proxies.
    MethodNotAllowed,
    /// 400: the request target's form, bytes or path.
    Target(TargetError),
    /// 400: one header line is longer than `server.max_header_line`.
    HeaderLineTooLong,
    /// 400: more headers than `server.max_headers`.
    TooManyHeaders,
    /// 400: all header lines together are longer than `server.max_header_bytes`.
    HeadersTooLarge,
    /// 400: the Host header is missing (HTTP/1.1), repeated or not a host name.
    BadHost,
}

impl Refusal {
    /// The status nginx answers.
    pub fn status(self) -> u16 {
        match self {
            Refusal::UriTooLong => 414,
            Refusal::MethodNotAllowed => 405,
            _ => 400,
        }
    }

    /// Words for the log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UriTooLong => "request URI too long",
            Refusal::BadMethod => "invalid method",
            Refusal::MethodNotAllowed => "method not allowed",
            Refusal::Target(e) => e.reason(),
            Refusal::HeaderLineTooLong => "request header line too long",
            Refusal::TooManyHeaders => "too many request headers",
            Refusal::HeadersTooLarge => "request headers too large",
            Refusal::BadHost => "missing or invalid Host header",
        }
    }
}

/// What an accepted request is routed by.
#[derive(Debug)]
pub struct Admitted<'a> {
    /// The host to route by, without port: the absolute-form target's host, else the Host
    /// header (or HTTP/2 `:authority`); `None` for an HTTP/1.0 request without either.
    pub host: Option<&'a str>,
    /// The request target's form.
    pub form: TargetForm<'a>,
    /// The normalised path.
    pub path: NormalizedPath,
}

/// Checks `req` against the limits of `server`, in the order nginx checks them.
pub fn check<'a>(req: &'a RequestHeader, server: &ServerSettings) -> Result<Admitted<'a>, Refusal> {
    let raw = req.raw_path();
    if raw.len() > server.max_uri {
        return Err(Refusal::UriTooLong);
    }
    let method = req.method.as_str().as_bytes();
    if method.is_empty()
        || !method
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(Refusal::BadMethod);
    }
    let (form, path) = request_target::parse(&req.method, raw).map_err(Refusal::Target)?;
    if req.headers.len() > server.max_headers {
        return Err(Refusal::TooManyHeaders);
    }
    let mut total = 0;
    for (name, value) in req.headers.iter() {
        let line = name.as_str().len() + 2 + value.len();
        if line > server.max_header_line {
            return Err(Refusal::HeaderLineTooLong);
        }
        total += line + 2;
    }
    if total > server.max_header_bytes {
        return Err(Refusal::HeadersTooLarge);
    }
    let host = host(req, &form)?;
    if matches!(req.method, http::Method::TRACE | http::Method::CONNECT) {
        return Err(Refusal::MethodNotAllowed);
    }
    Ok(Admitted { host, form, path })
}

/// Removes request headers whose name holds `_`: nginx (`underscores_in_headers off`) ignores
/// them, so neither weir's plugins nor the upstream see them. Returns how many were dropped.
pub fn drop_underscore_headers(req: &mut RequestHeader) -> usize {
    let names: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in &names {
        req.remove_header(name);
    }
    names.len()
}

/// The routing host: the absolute-form target's host, else the Host header, else the URI
/// authority (HTTP/2 `:authority`). HTTP/1.1 requires a Host header; HTTP/1.0 may omit it.
/// A Host header is validated even when the target names the host, and may appear once.
fn host<'a>(req: &'a RequestHeader, form: &TargetForm<'a>) -> Result<Option<&'a str>, Refusal> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let header = hosts.next().map(|h| h.as_bytes());
    if hosts.next().is_some() {
        return Err(Refusal::BadHost);
    }
    let header = match header {
        Some(h) => Some(normalize_host(h).ok_or(Refusal::BadHost)?),
        None => None,
    };
    if let TargetForm::Absolute { authority, .. } = form {
        return normalize_host(authority).map(Some).ok_or(Refusal::BadHost);
    }
    if header.is_some() {
        return Ok(header);
    }
    match req.uri.authority() {
        Some(a) => normalize_host(a.as_str().as_bytes())
            .map(Some)
            .ok_or(Refusal::BadHost),
        None if req.version == http::Version::HTTP_10 => Ok(None),
        None => Err(Refusal::BadHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), v.to_string()).unwrap();
        }
        r
    }

    fn settings() -> ServerSettings {
        let yaml = serde_yaml_ng::from_str("listen: ['127.0.0.1:1']").unwrap();
        crate::config::server::build(&yaml, "server").unwrap()
    }

    fn refusal(r: &RequestHeader) -> Option<Refusal> {
        check(r, &settings()).err()
    }

    #[test]
    fn host_rules() {
        let mut r = req("GET", b"/", &[]);
        assert_eq!(host(&r, &TargetForm::Origin), Err(Refusal::BadHost));
        r.set_version(http::Version::HTTP_10);
        assert_eq!(host(&r, &TargetForm::Origin), Ok(None));
        r.insert_header("Host", "Img.Example.com:8080").unwrap();
        assert_eq!(host(&r, &TargetForm::Origin), Ok(Some("Img.Example.com")));
        for bad in ["bad host", "[../../etc]", "a..b", "a/b", ""] {
            r.insert_header("Host", bad).unwrap();
            assert_eq!(
                host(&r, &TargetForm::Origin),
                Err(Refusal::BadHost),
                "{bad}"
            );
        }
        let twice = req("GET", b"/", &[("Host", "a"), ("Host", "a")]);
        assert_eq!(refusal(&twice), Some(Refusal::BadHost));
    }

    #[test]
    fn absolute_form_routes_by_its_host() {
        let r = req("GET", b"http://img.test:81/a", &[("Host", "img.test:81")]);
        let ok = check(&r, &settings()).unwrap();
        assert_eq!(ok.host, Some("img.test"));
        assert_eq!(ok.path.as_bytes(), b"/a");
    }

    #[test]
    fn methods_as_nginx() {
        let h = [("Host", "x")];
        assert_eq!(refusal(&req("get", b"/", &h)), Some(Refusal::BadMethod));
        assert_eq!(refusal(&req("G.T", b"/", &h)), Some(Refusal::BadMethod));
        assert_eq!(
            refusal(&req("TRACE", b"/", &h)),
            Some(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            refusal(&req("CONNECT", b"/", &h)),
            Some(Refusal::MethodNotAllowed)
        );
        assert_eq!(refusal(&req("FOO_BAR-X", b"/", &h)), None);
        // nginx judges the request line before the headers, the method's permission last.
        assert_eq!(refusal(&req("TRACE", b"/", &[])), Some(Refusal::BadHost));
    }

    #[test]
    fn header_block_size() {
        let server = ServerSettings {
            max_header_bytes: 1000,
            ..settings()
        };
        let v = "v".repeat(100);
        let mut r = req("GET", b"/", &[("Host", "x")]);
        // "Host: x\r\n" is 9 bytes; each "X-N: v…\r\n" 108.
        for i in 0..9 {
            r.append_header(format!("X-{i}"), v.as_str()).unwrap();
        }
        assert!(check(&r, &server).is_ok());
        r.append_header("X-9", v.as_str()).unwrap();
        assert_eq!(check(&r, &server).err(), Some(Refusal::HeadersTooLarge));
    }

    #[test]
    fn underscore_headers_are_dropped() {
        let mut r = req(
            "GET",
            b"/",
            &[("Host", "x"), ("X_Forwarded_For", "1.2.3.4"), ("X-Ok", "1")],
        );
        assert_eq!(drop_underscore_headers(&mut r), 1);
        assert!(r.headers.get("x_forwarded_for").is_none());
        assert!(r.headers.get("x-ok").is_some());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Targets of every form and none: pieces of paths, schemes, hosts and bad bytes.
        fn target() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                4 => prop::sample::select(vec![
                    "/", "/", ".", "..", "a", "%2e", "%2f", "%", "%00", "?", "#", "*", "@",
                    "http://", "h", ":80", "[::1]", " ", "\t", "\x7f", "\u{e9}",
                ])
                .prop_map(|s| s.as_bytes().to_vec()),
                1 => any::<u8>().prop_map(|b| vec![b]),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
        }

        fn method() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec!["GET", "OPTIONS", "TRACE", "CONNECT", "get", "PURGE_X"])
                    .prop_map(String::from),
                "[A-Za-z_.-]{1,8}",
            ]
        }

        proptest! {
            #[test]
            fn fuzz_request_checks_never_panic_and_admit_only_sane_requests(
                method in method(),
                target in target(),
                host in "[a-z.\\[\\]:/0-9]{0,12}",
                extra in prop::collection::vec(("[A-Za-z_-]{1,6}", "[ -~]{0,40}"), 0..8),
            ) {
                let Ok(mut r) = RequestHeader::build(method.as_str(), &target, None) else {
                    return Ok(());
                };
                if !host.is_empty() {
                    r.append_header("Host", host.as_str()).unwrap();
                }
                for (k, v) in &extra {
                    r.append_header(k.clone(), v.as_str()).unwrap();
                }
                let server = settings();
                let Ok(ok) = check(&r, &server) else { return Ok(()) };
                let raw = r.raw_path();
                prop_assert!(ok.path.as_bytes().starts_with(b"/"));
                prop_assert!(!raw.iter().any(|&b| b <= b' ' || b == 0x7f));
                prop_assert!(r.method != http::Method::TRACE && r.method != http::Method::CONNECT);
                prop_assert!(r.method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-'));
                match ok.form {
                    TargetForm::Origin => {
                        prop_assert_eq!(Ok(ok.path), NormalizedPath::parse(raw));
                    }
                    TargetForm::Asterisk => prop_assert_eq!(raw, b"*"),
                    TargetForm::Absolute { .. } => prop_assert!(ok.host.is_some()),
                }
                if let Some(h) = ok.host {
                    prop_assert!(normalize_host(h.as_bytes()).is_some());
                }
                let total: usize = r.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
                prop_assert!(total <= server.max_header_bytes);
            }

            #[test]
            fn fuzz_absolute_form_routes_like_origin_form(path in "(/[a-z.%2ef]{0,6}){1,6}") {
                let origin = req("GET", path.as_bytes(), &[("Host", "h")]);
                let absolute = format!("http://h{path}");
                let absolute = req("GET", absolute.as_bytes(), &[("Host", "h")]);
                let server = settings();
                let (a, b) = (check(&origin, &server), check(&absolute, &server));
                prop_assert_eq!(a.as_ref().map(|a| &a.path), b.as_ref().map(|b| &b.path));
                prop_assert_eq!(a.map(|a| a.host), b.map(|b| b.host));
            }
        }
    }
}
