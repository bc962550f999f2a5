//! Routing: the first route whose `match` fits the request wins.
//!
//! Host patterns are lower-cased at load time. Paths are compared in their normalised form
//! ([`NormalizedPath`], nginx's), never as sent: `/public/../private/x` is `/private/x`.

use crate::fixed_response::FixedResponse;
use crate::metrics::RouteMetrics;
use crate::upstream::Upstream;
use std::sync::Arc;
use weir_plugins::cache::CachePlugin;
use weir_plugins::{NormalizedPath, Plugin};

/// A `match.host` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `img.example.com`: this host only.
    Exact(String),
    /// `*.img.example.com`: any name ending in `.img.example.com` (not the bare suffix),
    /// stored with its leading dot.
    Suffix(String),
}

impl HostPattern {
    /// Parses a lower-cased pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        let (suffix, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!("`{s}` is not a host name or `*.suffix` pattern"));
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Does `host` (lower-case, no port) match?
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// Where a matched request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Proxied to this upstream.
    Upstream(Arc<Upstream>),
    /// Answered with a 302 to one of this upstream's servers (the "jump server").
    Redirect(Arc<Upstream>),
    /// Answered with a fixed status (`return`, nginx's `return`), no upstream.
    Return(Arc<FixedResponse>),
}

impl Target {
    /// The upstream of an `upstream` or `redirect` route.
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        match self {
            Target::Upstream(u) | Target::Redirect(u) => Some(u),
            Target::Return(_) => None,
        }
    }
}

/// One validated route.
pub struct Route {
    /// Its name (`routes[i].name`, or `route<i>`), used in logs.
    pub name: Arc<str>,
    /// Host patterns; empty matches any host.
    pub hosts: Vec<HostPattern>,
    /// Path prefix; `None` matches any path.
    pub path_prefix: Option<String>,
    /// Exact path (`match.path`); `None` matches any path.
    pub path: Option<String>,
    /// `match.scheme`: `Some(true)` TLS connections only, `Some(false)` plain ones only,
    /// `None` either.
    pub tls: Option<bool>,
    /// Where requests go.
    pub target: Target,
    /// The plugin chain, in YAML order.
    pub plugins: Vec<Arc<dyn Plugin>>,
    /// Request bodies are read whole before an upstream is chosen (`request_buffering`,
    /// default true, nginx `proxy_request_buffering on`); false streams them.
    pub request_buffering: bool,
    /// The chain's `cache` plugin, found once when the route is built.
    pub cache: Option<CachePlugin>,
    /// Its request counters and duration histogram.
    pub metrics: RouteMetrics,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &NormalizedPath, tls: bool) -> bool {
        if self.tls.is_some_and(|t| t != tls) {
            return false;
        }
        let host_ok =
            self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)));
        host_ok
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_bytes()))
            && self
                .path
                .as_ref()
                .is_none_or(|p| path.as_bytes() == p.as_bytes())
    }
}

/// The ordered routes.
#[derive(Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// A router over `routes`, tried in order.
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        Router { routes }
    }

    /// The first route matching `host` (without port), the normalised `path` and the
    /// connection's scheme (`tls`).
    pub fn find(
        &self,
        host: Option<&str>,
        path: &NormalizedPath,
        tls: bool,
    ) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(host, path, tls))
    }

    #[cfg(test)]
    /// Every route, in order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// The host part of a `Host` header value, port and trailing dot removed (case kept; routes
/// compare without case).
/// `None` when the value is not a valid host (the caller answers 400): a name of letters,
/// digits, `-`, `_` and single dots, an IPv4 address, or a bracketed IPv6 address
/// (`[../../etc]` is refused, as nginx refuses a `/` in a host).
pub fn normalize_host(raw: &[u8]) -> Option<&str> {
    if raw.first() == Some(&b'[') {
        // [v6]:port
        let s = std::str::from_utf8(raw).ok()?;
        let end = s.find(']')?;
        let after = &raw[end + 1..];
        if !(after.is_empty() || after.strip_prefix(b":").is_some_and(valid_port)) {
            return None;
        }
        s[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(&s[..=end]);
    }
    // Runs per request: one pass over the bytes, no string searcher.
    let host = match raw.iter().rposition(|b| *b == b':') {
        Some(colon) if valid_port(&raw[colon + 1..]) => &raw[..colon],
        Some(_) => return None,
        None => raw,
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let mut prev = 0u8;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host.iter().all(|&b| {
            let allowed = b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_')
                || (b == b'.' && prev != b'.');
            prev = b;
            allowed
        });
    if !ok {
        return None;
    }
    std::str::from_utf8(host).ok()
}

fn valid_port(p: &[u8]) -> bool {
    !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("Img.Example.com").unwrap();
        assert!(exact.matches("img.example.com"));
        assert!(exact.matches("IMG.example.COM"));
        assert!(!exact.matches("a.img.example.com"));
        let wild = HostPattern::parse("*.img.example.com").unwrap();
        assert!(wild.matches("a.img.example.com"));
        assert!(wild.matches("a.b.img.example.com"));
        assert!(!wild.matches("img.example.com"));
        assert!(!wild.matches("aimg.example.com"));
        for bad in ["", "*.", "a..b", "a b", "*.*.x", "a/b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(
            normalize_host(b"img.example.com:8080"),
            Some("img.example.com")
        );
        assert_eq!(normalize_host(b"img.example.com."), Some("img.example.com"));
        assert_eq!(normalize_host(b"127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(normalize_host(b"[::1]:80"), Some("[::1]"));
        for bad in [
            &b""[..],
            b"a b",
            b"a:xx",
            b"a/b",
            b"[::1",
            b"a..b",
            b"\xff",
            b"[../../etc]",
            b"[]",
            b"[::1]x",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }
}
