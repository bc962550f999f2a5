//! The admin API on `admin.listen` (never on the proxy listeners): health, Prometheus
//! metrics, status, 14-day traffic, upstream registration, purge, clean and reload; `GET /`
//! and its assets are the dashboard (`crate::dashboard` renders it; this module answers).
//!
//! Reads (`GET`) need no token; every other call needs `Authorization: Bearer <token>`,
//! compared in constant time, or it gets 401 and changes nothing. Bodies are JSON; errors
//! are `{"error": "…"}` with a 4xx status. The contract is `docs/admin-api.yaml` (OpenAPI).

use crate::config::Config;
use crate::reload::reload;
use crate::state::Shared;
use crate::upstream::{registration_spec, ServerState};
use http::{Method, Response, StatusCode};
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_plugins::units;
use weir_plugins::Registry;

mod connection;

/// Request bodies larger than this get 413.
const MAX_BODY: usize = 64 * 1024;

/// The admin application.
pub struct Admin {
    shared: Arc<Shared>,
    path: PathBuf,
    registry: Arc<Registry>,
}

impl Admin {
    /// The admin API over `shared`; `path` and `registry` are what `POST /reload` loads with.
    pub fn new(shared: Arc<Shared>, path: PathBuf, registry: Arc<Registry>) -> Admin {
        Admin {
            shared,
            path,
            registry,
        }
    }
}

type Answer = Response<Vec<u8>>;

fn answer(status: StatusCode, content_type: &str, body: Vec<u8>) -> Answer {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, len.into());
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// What the dashboard shows beyond the JSON bodies: every limit zone's name (a zone without
/// traffic has no counters yet) and the servers being probed back up.
fn dashboard_extras(config: &Config) -> crate::dashboard::Extras {
    let probing = config
        .upstreams
        .iter()
        .flat_map(|(name, u)| {
            u.servers()
                .into_iter()
                .filter(|s| s.peer.is_probing())
                .map(move |s| (name.clone(), s.peer.spec.addr.clone()))
        })
        .collect();
    crate::dashboard::Extras {
        limit_zones: config.limits.keys().cloned().collect(),
        probing,
    }
}

/// A dashboard page or asset, with the dashboard's security headers.
fn dashboard_answer(content_type: &str, body: Vec<u8>) -> Answer {
    let mut r = answer(StatusCode::OK, content_type, body);
    for (name, value) in crate::dashboard::HEADERS {
        r.headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    r
}

fn json_answer(status: StatusCode, value: &Value) -> Answer {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    answer(status, "application/json", body)
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    json_answer(status, &json!({ "error": message.into() }))
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Does the request carry `Authorization: Bearer <token>`?
fn authorized(req: &pingora::http::RequestHeader, token: &str) -> bool {
    let Some(value) = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// The `SERVER` object of the contract.
fn server_json(s: &ServerState) -> Value {
    let change = s.peer.last_change();
    let down = !s.peer.is_up() || s.passively_down;
    json!({
        "addr": s.peer.spec.addr,
        "tier": s.peer.tier,
        "state": if down { "down" } else { "up" },
        "registered": s.expires.is_some(),
        "expires_in_s": s.expires.map(|e| e.saturating_duration_since(Instant::now()).as_secs()),
        "last_change": change.as_ref().map(|c| crate::access_log::rfc3339(c.at)),
        "reason": change.map(|c| c.reason),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    tier: String,
    addr: String,
    ttl: String,
    #[serde(default)]
    tls: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    zone: String,
    key: Option<String>,
    url: Option<String>,
}

/// A refusal: its status and message (small, unlike a whole response).
struct Fail(StatusCode, String);

impl From<Fail> for Answer {
    fn from(f: Fail) -> Answer {
        error(f.0, f.1)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn parse_duration(text: &str, what: &str) -> Result<Duration, Fail> {
    units::parse_duration(text).map_err(|_| {
        Fail(
            StatusCode::BAD_REQUEST,
            format!("{what}: `{text}`: expected a duration like 30s, 20m, 1d"),
        )
    })
}

impl Admin {
    async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Fail> {
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            // Refused by its declared length, before a byte of it is read.
            return Err(Fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over 64 KiB".into(),
            ));
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(Fail(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body over 64 KiB".into(),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(Fail(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    ))
                }
            }
        }
    }

    async fn route(&self, session: &mut ServerSession) -> Answer {
        let config = self.shared.config.load_full();
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let query = req.uri.query().unwrap_or("").to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let read = method == Method::GET || method == Method::HEAD;
        if !read {
            let token = config.admin.as_ref().map_or("", |a| a.token.as_str());
            if token.is_empty() || !authorized(req, token) {
                return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            }
        }
        let body = match Self::read_body(session).await {
            Ok(b) => b,
            Err(f) => return f.into(),
        };
        match (method.as_str(), segments.as_slice()) {
            ("GET" | "HEAD", [""]) => {
                let html = crate::dashboard::page(
                    &self.status_value(&config),
                    &self.traffic_value(),
                    &weir_plugins::metrics::registry().gather(),
                    &dashboard_extras(&config),
                );
                dashboard_answer(crate::dashboard::PAGE_TYPE, html.into_bytes())
            }
            ("GET" | "HEAD", [segment]) if crate::dashboard::asset(segment).is_some() => {
                match crate::dashboard::asset(segment) {
                    Some((content_type, body)) => dashboard_answer(content_type, body.to_vec()),
                    None => error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
                }
            }
            ("GET" | "HEAD", ["healthz"]) => answer(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            ("GET" | "HEAD", ["metrics"]) => self.metrics(&config),
            ("GET" | "HEAD", ["status"]) => {
                json_answer(StatusCode::OK, &self.status_value(&config))
            }
            ("GET" | "HEAD", ["traffic"]) => json_answer(StatusCode::OK, &self.traffic_value()),
            ("GET" | "HEAD", ["upstreams", name]) => match config.upstreams.get(*name) {
                Some(u) => json_answer(
                    StatusCode::OK,
                    &Value::Array(u.servers().iter().map(server_json).collect()),
                ),
                None => error(StatusCode::NOT_FOUND, format!("no upstream `{name}`")),
            },
            ("POST", ["upstreams", name, "servers"]) => self.register(&config, name, &body).await,
            ("DELETE", ["upstreams", name, "servers", addr]) => {
                let addr = String::from_utf8_lossy(&percent_decode(addr)).into_owned();
                match config.upstreams.get(*name) {
                    None => error(StatusCode::NOT_FOUND, format!("no upstream `{name}`")),
                    Some(u) if u.deregister(&addr) => {
                        answer(StatusCode::NO_CONTENT, "text/plain", Vec::new())
                    }
                    Some(_) => error(StatusCode::NOT_FOUND, format!("`{addr}` is not registered")),
                }
            }
            ("POST", ["purge"]) => self.purge(&config, &body).await,
            ("POST", ["caches", zone, "clean"]) => self.clean(&config, zone, &query),
            ("POST", ["reload"]) => self.reload().await,
            (_, segments) => match allowed(segments) {
                Some(allow) => {
                    let mut r = error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        format!("{method} is not allowed on {path}"),
                    );
                    r.headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                    r
                }
                None => error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
            },
        }
    }

    fn metrics(&self, config: &Config) -> Answer {
        crate::upstream::refresh_server_states(&config.upstreams);
        let families = weir_plugins::metrics::registry().gather();
        let mut out = Vec::new();
        match prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &families, &mut out) {
            Ok(()) => answer(StatusCode::OK, "text/plain; version=0.0.4", out),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}"),
            ),
        }
    }

    /// The body of `GET /traffic` (also what the dashboard's chart shows).
    fn traffic_value(&self) -> Value {
        json!({ "days": self.shared.traffic.days() })
    }

    /// The body of `GET /status` (also what the dashboard's first view shows).
    fn status_value(&self, config: &Config) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let t = &self.shared.traffic.since_start;
        let caches: serde_json::Map<String, Value> = config
            .caches
            .iter()
            .map(|(name, zone)| {
                let z = zone.totals();
                let limits = zone.storage.settings();
                let served = z.hits + z.misses;
                let ratio = if served == 0 {
                    0.0
                } else {
                    z.hits as f64 / served as f64
                };
                (
                    name.clone(),
                    json!({
                        "objects": z.objects,
                        "bytes": z.bytes,
                        "hit_ratio": ratio,
                        "origin_bytes_saved": z.origin_bytes_saved,
                        "memory_bytes": z.memory_bytes,
                        "max_size": limits.max_size,
                        "memory_max": limits.memory,
                    }),
                )
            })
            .collect();
        // Zones shared through Redis, and whether each decides locally now.
        let limits: serde_json::Map<String, Value> = config
            .limits
            .iter()
            .filter_map(|(name, zone)| {
                zone.store_url().map(|url| {
                    (
                        name.clone(),
                        json!({ "store": url, "fallback": zone.on_local_fallback() }),
                    )
                })
            })
            .collect();
        let upstreams: serde_json::Map<String, Value> = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    Value::Array(u.servers().iter().map(server_json).collect()),
                )
            })
            .collect();
        json!({
                "version": crate::VERSION,
                "uptime_s": self.shared.started.elapsed().as_secs(),
                "requests": t.requests.load(Relaxed),
                "bytes_to_clients": t.bytes_to_clients.load(Relaxed),
                "bytes_from_upstreams": t.bytes_from_upstreams.load(Relaxed),
                "caches": caches,
                "upstreams": upstreams,
                "limits": limits,
        })
    }

    async fn register(&self, config: &Config, name: &str, body: &[u8]) -> Answer {
        let Some(upstream) = config.upstreams.get(name).cloned() else {
            return error(StatusCode::NOT_FOUND, format!("no upstream `{name}`"));
        };
        let r: Registration = match parse_json(body) {
            Ok(r) => r,
            Err(f) => return f.into(),
        };
        let ttl = match parse_duration(&r.ttl, "ttl") {
            Ok(t) if t > MAX_TTL => return error(StatusCode::BAD_REQUEST, "ttl: at most 365d"),
            Ok(t) if !t.is_zero() => t,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "ttl: must be longer than 0s"),
            Err(f) => return f.into(),
        };
        // A name is resolved now, off the proxy's threads.
        let (addr, tls) = (r.addr.clone(), r.tls);
        let spec = tokio::task::spawn_blocking(move || registration_spec(&addr, tls)).await;
        let (spec, addrs) = match spec {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("addr: {e}")),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("resolver failed: {e}"),
                )
            }
        };
        if let Err(e) = upstream.register(&r.tier, spec, addrs, ttl) {
            return error(StatusCode::BAD_REQUEST, e);
        }
        match upstream
            .servers()
            .iter()
            .find(|s| s.peer.spec.addr == r.addr && s.expires.is_some())
        {
            Some(s) => json_answer(StatusCode::OK, &server_json(s)),
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "registered server vanished",
            ),
        }
    }

    async fn purge(&self, config: &Config, body: &[u8]) -> Answer {
        let p: Purge = match parse_json(body) {
            Ok(p) => p,
            Err(f) => return f.into(),
        };
        let Some(zone) = config.caches.get(&p.zone) else {
            return error(StatusCode::NOT_FOUND, format!("no cache zone `{}`", p.zone));
        };
        let purged = match (&p.key, &p.url) {
            (Some(key), None) => zone.purge_key(key).await,
            (None, Some(url)) => match zone.purge_url(url).await {
                Ok(found) => found,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("url: {e}")),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "give exactly one of `key` and `url`",
                )
            }
        };
        if purged {
            json_answer(StatusCode::OK, &json!({ "purged": 1 }))
        } else {
            error(StatusCode::NOT_FOUND, "not in the cache")
        }
    }

    fn clean(&self, config: &Config, zone: &str, query: &str) -> Answer {
        let Some(zone) = config.caches.get(zone) else {
            return error(StatusCode::NOT_FOUND, format!("no cache zone `{zone}`"));
        };
        let older_than = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("older_than="))
            .map(|v| parse_duration(v, "older_than"));
        let older_than = match older_than {
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "older_than: required, e.g. ?older_than=1d",
                )
            }
            Some(Err(f)) => return f.into(),
            Some(Ok(d)) => d,
        };
        let before = zone.totals().objects;
        let freed = zone.clean(older_than);
        let removed = before.saturating_sub(zone.totals().objects);
        json_answer(
            StatusCode::OK,
            &json!({ "removed": removed, "bytes_freed": freed }),
        )
    }

    async fn reload(&self) -> Answer {
        let (path, registry, shared) = (
            self.path.clone(),
            self.registry.clone(),
            self.shared.clone(),
        );
        let done = tokio::task::spawn_blocking(move || reload(&path, &registry, &shared)).await;
        match done {
            Ok(Ok(())) => json_answer(StatusCode::OK, &json!({ "ok": true })),
            Ok(Err(errors)) => json_answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>() }),
            ),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed: {e}"),
            ),
        }
    }
}

/// The methods an endpoint answers (the `Allow` of a 405), `None` for no endpoint.
fn allowed(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["healthz" | "metrics" | "status" | "traffic"] | ["upstreams", _] => Some("GET, HEAD"),
        [page] if page.is_empty() || crate::dashboard::asset(page).is_some() => Some("GET, HEAD"),
        ["purge" | "reload"] | ["upstreams", _, "servers"] | ["caches", _, "clean"] => Some("POST"),
        ["upstreams", _, "servers", _] => Some("DELETE"),
        _ => None,
    }
}

/// Registrations last at most this long (a node heartbeat renews them long before).
const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

/// `%3A` → `:` in a path segment (an address in `DELETE …/servers/{addr}`).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Admin {
    /// The answer to the request `session` has read (connection.rs writes it).
    async fn respond(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut r = self.route(session).await;
        if session.req_header().method == Method::HEAD {
            r.body_mut().clear();
        }
        r
    }
}

#[cfg(test)]
#[path = "admin_json_fuzz.rs"]
mod json_fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert_eq!(percent_decode("10.0.0.5%3A8080"), b"10.0.0.5:8080");
        assert_eq!(percent_decode("a%2"), b"a%2");
    }
}
