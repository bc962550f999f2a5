//! The request handler: hit counting, the special `/__echo`, `/__hits` and
//! `/__health` endpoints, and the query-driven default response. Request
//! bodies are always drained chunk by chunk (counted, hashed for `/__echo`),
//! never buffered, so uploads of any size work.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};

use crate::body::{fnv1a_update, OriginBody, FNV1A_INIT};
use crate::params::{pairs, Params};

/// Shared state of one origin: its name and the hit counters.
#[derive(Debug)]
pub struct State {
    name: String,
    x_origin: HeaderValue,
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    connections: AtomicU64,
    health_status: AtomicU16,
    fixed_status: AtomicU16,
    fixed_delay_ms: AtomicU64,
}

impl State {
    /// New state for an origin called `name` (sent as `X-Origin`; a name that
    /// is not a valid header value is sent as `invalid-name`).
    pub fn new(name: &str) -> State {
        State {
            name: name.to_owned(),
            x_origin: HeaderValue::from_str(name)
                .unwrap_or(HeaderValue::from_static("invalid-name")),
            hits: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            health_status: AtomicU16::new(200),
            fixed_status: AtomicU16::new(0),
            fixed_delay_ms: AtomicU64::new(0),
        }
    }

    /// The origin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests seen for exactly `path` (no query), all methods.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections accepted so far (shows whether a proxy reuses connections).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Makes `/__health` answer `status` from now on (200 at start), so tests can fail
    /// and heal an origin's health checks without stopping it.
    pub fn set_health_status(&self, status: u16) {
        self.health_status.store(status, Ordering::Relaxed);
    }

    /// Makes every ordinary response answer `status` unless the query sets `status=`
    /// (0, the start value, means 200): one origin of a tier can fail while the others with
    /// the same request succeed.
    pub fn set_fixed_status(&self, status: u16) {
        self.fixed_status.store(status, Ordering::Relaxed);
    }

    /// Makes every ordinary response wait `ms` before its head, on top of `delay=` (0, the
    /// start value, means none): a slow origin without changing the URL (a cache key).
    pub fn set_fixed_delay(&self, ms: u64) {
        self.fixed_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Counts one accepted connection.
    pub(crate) fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests seen in total (not counting `/__hits`).
    pub fn total_hits(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn count(&self, path: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut map = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(path) {
            Some(n) => *n += 1,
            None => {
                map.insert(path.to_owned(), 1);
            }
        }
    }
}

/// Answers one request. `reset` is the connection's abort flag: a body that
/// raises it makes the connection end with an RST.
pub async fn handle(
    state: Arc<State>,
    reset: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path();
    let mut resp = if path == "/__hits" {
        drain(&mut body, false).await;
        hits(&state, parts.uri.query())
    } else {
        state.count(path);
        match path {
            "/__echo" => echo(&state, &parts, &mut body).await,
            "/__health" => {
                drain(&mut body, false).await;
                let status = StatusCode::from_u16(state.health_status.load(Ordering::Relaxed))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                text(
                    status,
                    format!(
                        "{}\n",
                        if status.is_success() {
                            "ok"
                        } else {
                            "unhealthy"
                        }
                    ),
                )
            }
            _ => respond(&state, &parts, &mut body, reset).await,
        }
    };
    resp.headers_mut()
        .insert("x-origin", state.x_origin.clone());
    Ok(resp)
}

/// Reads the request body to its end without keeping it; returns its length
/// and (if `hash`) its FNV-1a 64. A broken body just ends the count.
async fn drain(body: &mut Incoming, hash: bool) -> (u64, u64) {
    let (mut len, mut fnv) = (0u64, FNV1A_INIT);
    while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            if hash {
                fnv = fnv1a_update(fnv, data);
            }
        }
    }
    (len, fnv)
}

/// The query-driven response of every ordinary path.
async fn respond(
    state: &State,
    parts: &http::request::Parts,
    body: &mut Incoming,
    reset: Arc<AtomicBool>,
) -> Response<OriginBody> {
    drain(body, false).await;
    let p = match Params::parse(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e + "\n"),
    };
    if let Some(d) = p.delay {
        tokio::time::sleep(d).await;
    }
    let fixed_delay = state.fixed_delay_ms.load(Ordering::Relaxed);
    if fixed_delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(fixed_delay)).await;
    }
    let fixed = StatusCode::from_u16(state.fixed_status.load(Ordering::Relaxed)).ok();
    let mut status = p.status.or(fixed).unwrap_or(StatusCode::OK);
    if status == StatusCode::OK && not_modified(parts, &p) {
        status = StatusCode::NOT_MODIFIED;
    }
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let (mut out, default_type) = if bodiless {
        (OriginBody::empty(), None)
    } else if let Some(n) = p.size {
        (OriginBody::pattern(n), Some("application/octet-stream"))
    } else {
        (
            OriginBody::fixed(format!("{} {}\n", state.name, parts.uri.path())),
            Some("text/plain"),
        )
    };
    if let Some(n) = p.reset_after {
        out = out.with_reset(n, reset);
    }
    if let Some(d) = p.body_delay {
        out = out.with_chunk_delay(d);
    }
    let chunked = p.chunked && !bodiless;
    if chunked {
        out = out.with_unknown_length();
    }
    let len = out.len();
    let mut resp = Response::new(out);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(ct) = p
        .content_type
        .or(default_type.map(HeaderValue::from_static))
    {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if !bodiless && !chunked {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    for (name, value) in p.headers {
        h.append(name, value);
    }
    if let Some(n) = p.big_header {
        let big = HeaderValue::from_bytes(&vec![b'a'; n as usize]);
        if let Ok(big) = big {
            h.insert("x-big", big);
        }
    }
    resp
}

/// A conditional GET that the response's `etag=` / `last_modified=` validators satisfy:
/// `If-None-Match` listing the ETag (or `*`), else `If-Modified-Since` not before
/// Last-Modified.
fn not_modified(parts: &http::request::Parts, p: &Params) -> bool {
    let validator = |name: &HeaderName| {
        p.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    };
    if let Some(inm) = parts.headers.get(header::IF_NONE_MATCH) {
        let Some(etag) = validator(&header::ETAG) else {
            return false;
        };
        return inm
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    }
    let since = parts
        .headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified =
        validator(&header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((since, modified), (Some(s), Some(m)) if m <= s)
}

/// `/__echo`: describes the request as JSON, with its body's length and hash.
async fn echo(
    state: &State,
    parts: &http::request::Parts,
    body: &mut Incoming,
) -> Response<OriginBody> {
    let (body_bytes, fnv) = drain(body, true).await;
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let v = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        if let serde_json::Value::Array(a) = headers
            .entry(name.as_str())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            a.push(v);
        }
    }
    let json = serde_json::json!({
        "name": state.name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": body_bytes,
        "body_fnv": format!("{fnv:016x}"),
    });
    let mut resp = text(StatusCode::OK, json.to_string() + "\n");
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `/__hits?path=/x`: the hit count of `/x` as a bare decimal number.
fn hits(state: &State, query: Option<&str>) -> Response<OriginBody> {
    match pairs(query.unwrap_or("")).find(|(k, _)| k == b"path") {
        Some((_, path)) => text(
            StatusCode::OK,
            state.hits(&String::from_utf8_lossy(&path)).to_string(),
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            "missing query parameter path\n".to_owned(),
        ),
    }
}

/// A small text/plain response with Content-Length.
fn text(status: StatusCode, body: String) -> Response<OriginBody> {
    let body = OriginBody::fixed(body);
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}
