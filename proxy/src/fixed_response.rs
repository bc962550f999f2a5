//! The `return` route target (nginx's `return`): a fixed status answered without an
//! upstream, either a redirect whose `Location` is built from nginx variables or a status
//! with an optional body.
//!
//! The answer is the one nginx gives: a redirect or an error status without a body gets
//! nginx's small HTML page; a relative `Location` (`/new`) is made absolute from the
//! request's host and the listener's port, as nginx's `absolute_redirect on` (its default)
//! does; `444` closes the connection without an answer.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{ErrorType, OrErr, Result};
use weir_plugins::cache::key::KeyTemplate;
use weir_plugins::NormalizedPath;

/// The statuses a `return` redirects with; each needs a `location`.
pub const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// nginx's non-standard status that closes the connection without an answer (logged as
/// 444).
pub const CLOSE: u16 = 444;

/// What a `return` answers, validated at load time.
#[derive(Debug)]
pub struct FixedResponse {
    status: u16,
    /// The location and `$host`, for making a relative location absolute.
    location: Option<(KeyTemplate, KeyTemplate)>,
    body: Body,
    content_type: HeaderValue,
}

/// The body of a [`FixedResponse`].
#[derive(Debug)]
enum Body {
    /// nginx's page for the status (redirects, 4xx, 5xx) or nothing (2xx).
    Page,
    /// Text with variables, as written.
    Text(KeyTemplate),
    /// `body: ""`.
    Empty,
}

/// What the answer needs to know about the request.
pub struct RequestFacts<'a> {
    /// The request as received.
    pub req: &'a RequestHeader,
    /// The client connection is TLS (`$scheme`).
    pub tls: bool,
    /// The normalised path (`$uri`).
    pub path: &'a NormalizedPath,
    /// The local address of the client connection: its IP names the host of a relative
    /// location when the request has none, its port is added unless it is the scheme's
    /// default.
    pub local: Option<std::net::SocketAddr>,
}

impl FixedResponse {
    /// A redirect with `status` (one of [`REDIRECTS`]) to `location`, a template of nginx
    /// variables; the error is the template's.
    pub fn redirect(status: u16, location: &str) -> Result<FixedResponse, String> {
        Ok(FixedResponse {
            status,
            location: Some((KeyTemplate::parse(location)?, KeyTemplate::parse("$host")?)),
            body: Body::Page,
            content_type: HeaderValue::from_static("text/html"),
        })
    }

    /// `status` with `body` (a template of nginx variables; `None`: nginx's page for a 4xx or
    /// 5xx, nothing for a 2xx) sent as `content_type` (default `text/plain`); the error names
    /// the field at fault and why.
    pub fn status(
        status: u16,
        body: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<FixedResponse, (&'static str, String)> {
        let body = match body {
            None => Body::Page,
            Some("") => Body::Empty,
            Some(text) => Body::Text(KeyTemplate::parse(text).map_err(|e| ("body", e))?),
        };
        let content_type = match (&body, content_type) {
            (Body::Page, Some(_)) => {
                return Err(("content_type", "goes with `body`".into()));
            }
            (Body::Page, None) if status >= 400 => HeaderValue::from_static("text/html"),
            (_, None) => HeaderValue::from_static("text/plain"),
            (_, Some(ct)) => HeaderValue::from_str(ct)
                .map_err(|_| ("content_type", "not a valid header value".to_string()))?,
        };
        Ok(FixedResponse {
            status,
            location: None,
            body,
            content_type,
        })
    }

    /// `return: {status: 444}`: the connection is closed without an answer.
    pub fn closes(&self) -> bool {
        self.status == CLOSE
    }

    /// The answer to the request `facts` describe: its head and its body.
    pub fn render(&self, facts: &RequestFacts) -> Result<(ResponseHeader, Bytes)> {
        let body = match &self.body {
            Body::Page => Bytes::from(page(self.status)),
            Body::Text(t) => Bytes::from(t.render(facts.req, facts.tls, facts.path)),
            Body::Empty => Bytes::new(),
        };
        let mut resp = ResponseHeader::build(self.status, Some(4))?;
        if !body.is_empty() || self.status >= 300 {
            resp.insert_header(http::header::CONTENT_TYPE, self.content_type.clone())?;
        }
        // A 204 has no body and, as nginx sends it, no Content-Length (RFC 9110 §8.6).
        if self.status != 204 {
            resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        }
        if let Some((template, host)) = &self.location {
            let rendered = template.render(facts.req, facts.tls, facts.path);
            let mut location = Vec::with_capacity(rendered.len() + 32);
            if rendered.first() == Some(&b'/') {
                let host = host.render(facts.req, facts.tls, facts.path);
                absolute_prefix(facts, &host, &mut location);
            }
            escape_into(&rendered, &mut location);
            let value = HeaderValue::from_bytes(&location)
                .or_err(ErrorType::InternalError, "return location")?;
            resp.insert_header("Location", value)?;
        }
        Ok((resp, body))
    }
}

/// nginx's `ngx_http_header_filter` for a location starting with `/`: `scheme://host`, the
/// host being the request's (as `$host`) or the local IP, then `:port` unless the
/// listener's port is the scheme's default.
fn absolute_prefix(facts: &RequestFacts, host: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(if facts.tls { b"https://" } else { b"http://" });
    if !host.is_empty() {
        out.extend_from_slice(host);
    } else if let Some(local) = facts.local {
        let ip = match local.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        out.extend_from_slice(ip.as_bytes());
    }
    let default_port = if facts.tls { 443 } else { 80 };
    if let Some(port) = facts.local.map(|a| a.port()).filter(|p| *p != default_port) {
        out.extend_from_slice(format!(":{port}").as_bytes());
    }
}

/// Copies `bytes` into a header value, percent-encoding what a URL may not hold raw
/// (controls, space, non-ASCII): `$uri` is decoded, and nginx would send a decoded
/// `%0d%0a` as a line break.
fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b <= b' ' || b >= 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// nginx's page for `status` (`ngx_http_error_pages`, without the server signature); none
/// for a 2xx.
fn page(status: u16) -> String {
    if status < 300 {
        return String::new();
    }
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let title = format!("{status} {reason}");
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_for<'a>(
        req: &'a RequestHeader,
        path: &'a NormalizedPath,
        tls: bool,
        port: u16,
    ) -> RequestFacts<'a> {
        RequestFacts {
            req,
            tls,
            path,
            local: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }

    fn answer(
        r: &FixedResponse,
        uri: &str,
        host: Option<&str>,
        tls: bool,
        port: u16,
    ) -> (u16, String, String, String) {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(h) = host {
            req.insert_header("Host", h).unwrap();
        }
        let path = NormalizedPath::parse(req.raw_path()).unwrap();
        let (head, body) = r.render(&facts_for(&req, &path, tls, port)).unwrap();
        let get = |n: &str| {
            head.headers
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        (
            head.status.as_u16(),
            get("location"),
            get("content-type"),
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[test]
    fn redirects_render_each_variable() {
        let r = FixedResponse::redirect(301, "https://$host$request_uri").unwrap();
        let (status, location, ct, body) =
            answer(&r, "/a/../b?x=1", Some("IMG.Example.com:8080"), false, 8080);
        assert_eq!(status, 301);
        assert_eq!(location, "https://img.example.com/a/../b?x=1");
        assert_eq!(ct, "text/html");
        assert!(
            body.contains("<title>301 Moved Permanently</title>"),
            "{body}"
        );

        let r = FixedResponse::redirect(302, "$scheme://h$uri$is_args$args").unwrap();
        assert_eq!(
            answer(&r, "/a/../b?x=1", Some("h"), true, 443).1,
            "https://h/b?x=1"
        );
        assert_eq!(answer(&r, "/a/../b", Some("h"), false, 80).1, "http://h/b");
        assert_eq!(answer(&r, "/a/../b?", Some("h"), false, 80).1, "http://h/b");
    }

    #[test]
    fn relative_locations_become_absolute_as_nginx_makes_them() {
        let r = FixedResponse::redirect(308, "/new$uri").unwrap();
        assert_eq!(
            answer(&r, "/x", Some("a.test:1234"), false, 8080).1,
            "http://a.test:8080/new/x"
        );
        assert_eq!(
            answer(&r, "/x", Some("a.test"), false, 80).1,
            "http://a.test/new/x"
        );
        assert_eq!(
            answer(&r, "/x", Some("a.test"), true, 443).1,
            "https://a.test/new/x"
        );
        assert_eq!(
            answer(&r, "/x", Some("a.test"), true, 80).1,
            "https://a.test:80/new/x"
        );
        // HTTP/1.0 without Host: the local address.
        assert_eq!(
            answer(&r, "/x", None, false, 8080).1,
            "http://127.0.0.1:8080/new/x"
        );
        let r = FixedResponse::redirect(302, "other$uri").unwrap();
        assert_eq!(answer(&r, "/x", Some("a"), false, 8080).1, "other/x");
    }

    #[test]
    fn decoded_bytes_are_escaped_in_the_location() {
        let r = FixedResponse::redirect(301, "https://h$uri").unwrap();
        assert_eq!(
            answer(&r, "/a%0d%0aSet-Cookie:%20x/%C3%A9", Some("h"), false, 80).1,
            "https://h/a%0D%0ASet-Cookie:%20x/%C3%A9"
        );
    }

    #[test]
    fn statuses_with_and_without_a_body() {
        let r = FixedResponse::status(403, None, None).unwrap();
        let (status, location, ct, body) = answer(&r, "/", Some("h"), false, 80);
        assert_eq!(
            (status, location.as_str(), ct.as_str()),
            (403, "", "text/html")
        );
        assert!(body.contains("<h1>403 Forbidden</h1>"), "{body}");

        let r = FixedResponse::status(200, Some("ok $host$uri\n"), None).unwrap();
        assert_eq!(
            answer(&r, "/p", Some("H"), false, 80),
            (200, "".into(), "text/plain".into(), "ok h/p\n".into())
        );

        let r = FixedResponse::status(200, Some("{}"), Some("application/json")).unwrap();
        assert_eq!(answer(&r, "/", Some("h"), false, 80).2, "application/json");

        let r = FixedResponse::status(204, None, None).unwrap();
        assert_eq!(
            answer(&r, "/", Some("h"), false, 80),
            (204, "".into(), "".into(), "".into())
        );
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let path = NormalizedPath::parse(b"/").unwrap();
        let (head, _) = r.render(&facts_for(&req, &path, false, 80)).unwrap();
        assert!(
            head.headers.get("content-length").is_none(),
            "a 204 has no length"
        );
        let r = FixedResponse::status(200, None, None).unwrap();
        let (head, _) = r.render(&facts_for(&req, &path, false, 80)).unwrap();
        assert_eq!(head.headers.get("content-length").unwrap(), "0");
        let r = FixedResponse::status(200, None, None).unwrap();
        assert_eq!(answer(&r, "/", Some("h"), false, 80).3, "");
    }

    #[test]
    fn load_time_errors() {
        assert!(FixedResponse::redirect(301, "https://$hostname/")
            .unwrap_err()
            .contains("$hostname"));
        assert!(FixedResponse::redirect(301, "").is_err());
        assert_eq!(
            FixedResponse::status(200, Some("$nope"), None)
                .unwrap_err()
                .0,
            "body"
        );
        assert_eq!(
            FixedResponse::status(403, None, Some("text/plain"))
                .unwrap_err()
                .0,
            "content_type"
        );
        assert_eq!(
            FixedResponse::status(200, Some("x"), Some("a\nb"))
                .unwrap_err()
                .0,
            "content_type"
        );
    }
}
