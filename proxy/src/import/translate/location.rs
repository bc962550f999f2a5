//! One location that proxies → one route's body: its upstream and its plugins in nginx's
//! phase order (limit_req, limit_conn, access, cache, headers), plus the server-wide
//! settings its directives carry (body size, header buffers, access log, real IP).

use super::cache::{self, CacheZones};
use super::limits::{self, Zones};
use super::upstreams::{self, Upstreams};
use super::values::{size, size_bytes};
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// Everything declared in `http` that locations refer to.
#[derive(Default)]
pub struct Declared {
    /// limit zones.
    pub zones: Zones,
    /// Cache zones.
    pub caches: CacheZones,
    /// Upstream blocks and the weir upstreams made.
    pub upstreams: Upstreams,
}

/// Where a route sends its requests.
#[derive(Clone)]
pub enum Target {
    /// `upstream: NAME`.
    Upstream(String),
    /// `return: {…}` (nginx's `return`).
    Return(Node),
}

/// A route's body: where it goes and its plugins.
pub struct Body {
    /// The weir upstream, or the fixed answer.
    pub target: Target,
    /// Plugins with their comments.
    pub plugins: Vec<(Node, Vec<String>)>,
    /// `proxy_request_buffering off`: `request_buffering: false`, with its line.
    pub streaming: Option<String>,
}

/// The body of a location (at `scope`, path `prefix`) that proxies with `pass`; `None` when
/// its target was not translated.
pub fn body(
    tx: &mut Tx,
    decl: &mut Declared,
    scope: &Scope,
    pass: &Directive,
    prefix: &str,
    named: &BTreeMap<String, (Scope, &Directive)>,
) -> Result<Option<Body>, SyntaxError> {
    let Some(upstream) =
        upstreams::for_location(tx, &mut decl.upstreams, scope, pass, prefix, named)?
    else {
        return Ok(None);
    };
    let mut plugins = Vec::new();
    limits::limit_req(tx, &decl.zones, scope, &mut plugins)?;
    limits::limit_conn(tx, &mut decl.zones, scope, &mut plugins)?;
    limits::access(tx, scope, &mut plugins)?;
    cache::location(tx, &mut decl.caches, scope, &mut plugins)?;
    headers(tx, scope, &mut plugins, true)?;
    server_wide(tx, scope)?;
    let mut streaming = None;
    if let Some(d) = scope.one("proxy_request_buffering") {
        tx.take(d);
        if !Tx::flag(d)? {
            streaming = Some(d.source());
        }
    }
    Ok(Some(Body {
        target: Target::Upstream(upstream),
        plugins,
        streaming,
    }))
}

/// The body of a location (or server) at `scope` that answers with `return` `r`; `exact`:
/// the path of an exact location. `None` when the `return` was not translated.
pub fn answer_body(
    tx: &mut Tx,
    scope: &Scope,
    r: &Directive,
    exact: Option<&str>,
) -> Result<Option<Body>, SyntaxError> {
    let Some(answer) = super::answer::translate(tx, scope, r, exact)? else {
        return Ok(None);
    };
    // nginx's `return` runs in the rewrite phase: before limit_req, limit_conn and
    // allow/deny, and instead of proxying (every `proxy_*` of its level is moot).
    let before = |n: &str| matches!(n, "limit_req" | "limit_conn" | "allow" | "deny");
    for d in scope.here_all(before) {
        tx.take(d);
        tx.report.ignored(
            d,
            "nginx's `return` answers before limit_req, limit_conn and allow/deny run",
        );
    }
    for d in scope.here_all(|n| n.starts_with("proxy_")) {
        tx.take_all(d);
        tx.report
            .ignored(d, "nginx's `return` answers instead of proxying");
    }
    let mut plugins = Vec::new();
    headers(tx, scope, &mut plugins, false)?;
    server_wide(tx, scope)?;
    Ok(Some(Body {
        target: Target::Return(answer),
        plugins,
        streaming: None,
    }))
}

/// `proxy_set_header` (other than Host), `add_header`, `proxy_hide_header` → `headers`
/// (`add_header` without `always` → a second `headers` with `always: false`); on a route
/// that does not proxy, `add_header` only.
fn headers(
    tx: &mut Tx,
    scope: &Scope,
    plugins: &mut Vec<(Node, Vec<String>)>,
    proxied: bool,
) -> Result<(), SyntaxError> {
    let mut request_set = Node::map();
    let mut request_remove = Vec::new();
    let mut response_add = Node::map();
    let mut response_remove = Vec::new();
    let mut comments = Vec::new();
    let mut limited_add = Node::map();
    let mut limited_comments = Vec::new();
    let proxy_headers = if proxied {
        scope.group(&["proxy_set_header"])
    } else {
        Vec::new()
    };
    for d in proxy_headers {
        let name = Tx::arg(d, 0)?;
        let value = Tx::arg(d, 1)?;
        let lower = name.to_ascii_lowercase();
        let weir_default = matches!(
            (lower.as_str(), value),
            ("host", _)
                | ("x-forwarded-for", "$proxy_add_x_forwarded_for")
                | ("x-real-ip", "$remote_addr")
                | ("x-forwarded-proto", "$scheme")
                | ("connection", "")
        );
        if weir_default {
            // Host is the upstream's business (upstreams.rs); the others weir always sends.
            if lower != "host" {
                tx.take(d);
                tx.report.ignored(d, "weir sends this by itself");
            }
            continue;
        }
        tx.take(d);
        if value.is_empty() {
            request_remove.push(name.to_string());
            comments.push(d.source());
        } else if value.contains('$') {
            tx.report
                .left(d, "a header value with variables has no weir equivalent");
        } else {
            request_set.set(name, Node::str(value));
            comments.push(d.source());
        }
    }
    for d in scope.group(&["add_header"]) {
        let name = Tx::arg(d, 0)?;
        let value = Tx::arg(d, 1)?;
        if value == "$upstream_cache_status" {
            // The cache's status_header (cache.rs).
            continue;
        }
        tx.take(d);
        if value.contains('$') {
            tx.report
                .left(d, "a header value with variables has no weir equivalent");
            continue;
        }
        if d.args.get(2).map(String::as_str) == Some("always") {
            response_add.set(name, Node::str(value));
            comments.push(d.source());
        } else {
            limited_add.set(name, Node::str(value));
            limited_comments.push(d.source());
        }
    }
    let hidden = if proxied {
        scope.group(&["proxy_hide_header"])
    } else {
        Vec::new()
    };
    for d in hidden {
        tx.take(d);
        response_remove.push(Tx::arg(d, 0)?.to_string());
        comments.push(d.source());
    }
    let mut request = Node::map();
    if !matches!(&request_set, Node::Map(e) if e.is_empty()) {
        request.set("set", request_set);
    }
    if !request_remove.is_empty() {
        request.set("remove", Node::strs(request_remove));
    }
    let mut response = Node::map();
    if !matches!(&response_add, Node::Map(e) if e.is_empty()) {
        response.set("add", response_add);
    }
    if !response_remove.is_empty() {
        response.set("remove", Node::strs(response_remove));
    }
    let mut p = Node::map();
    if !matches!(&request, Node::Map(e) if e.is_empty()) {
        p.set("request", request);
    }
    if !matches!(&response, Node::Map(e) if e.is_empty()) {
        p.set("response", response);
    }
    if !matches!(&p, Node::Map(e) if e.is_empty()) {
        let mut plugin = Node::map();
        plugin.set("headers", p);
        plugins.push((plugin, comments));
    }
    if !matches!(&limited_add, Node::Map(e) if e.is_empty()) {
        // nginx adds these to 200, 201, 204, 206, 301, 302, 303, 304, 307, 308 only.
        let mut response = Node::map();
        response.set("add", limited_add);
        let mut p = Node::map();
        p.set("response", response).set("always", Node::bool(false));
        let mut plugin = Node::map();
        plugin.set("headers", p);
        plugins.push((plugin, limited_comments));
    }
    Ok(())
}

/// The directives weir keeps once for the whole server.
fn server_wide(tx: &mut Tx, scope: &Scope) -> Result<(), SyntaxError> {
    if let Some(d) = scope.one("client_max_body_size") {
        let bytes = tx.size_arg(d, 0)?;
        tx.global("max_request_body", Node::str(size(bytes)), d);
    }
    if let Some(d) = scope.one("large_client_header_buffers") {
        let n = Tx::arg(d, 0)?;
        let count: u64 = n
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| Tx::invalid(d, format!("invalid value \"{n}\"")))?;
        let a = Tx::arg(d, 1)?;
        let bytes =
            size_bytes(a).ok_or_else(|| Tx::invalid(d, format!("invalid value \"{a}\"")))?;
        tx.global("max_header_line", Node::str(size(bytes)), d);
        tx.global("max_uri", Node::str(size(bytes)), d);
        // nginx holds a request's header lines in at most `count` buffers of `bytes`; weir
        // bounds them all together (its range ends at 1 MiB).
        let total = count.saturating_mul(bytes).min(1 << 20);
        tx.global("max_header_bytes", Node::str(size(total)), d);
    }
    for (name, key) in [
        ("client_header_timeout", "client_header_timeout"),
        ("client_body_timeout", "client_body_timeout"),
        ("send_timeout", "send_timeout"),
    ] {
        if let Some(d) = scope.one(name) {
            let ms = tx.time_arg(d, 0)?;
            tx.global(key, Node::str(super::values::duration(ms)), d);
        }
    }
    if let Some(d) = scope.one("client_body_temp_path") {
        let path = tx.path(Tx::arg(d, 0)?);
        tx.global("temp_dir", Node::str(path), d);
    }
    let logs = scope.group(&["access_log"]);
    if let Some(first) = logs.first() {
        let path = Tx::arg(first, 0)?;
        let mut log = Node::map();
        match path {
            "off" => {
                log.set("path", Node::str("off"));
            }
            p => {
                let format = first.args.get(1).map(String::as_str).unwrap_or("combined");
                if format != "combined" {
                    tx.take(first);
                    tx.report.left(
                        first,
                        format!("log format `{format}`: weir writes `combined` or `json`"),
                    );
                    return Ok(());
                }
                let target = if p == "/dev/stdout" {
                    "stdout".to_string()
                } else {
                    tx.path(p)
                };
                log.set("path", Node::str(target))
                    .set("format", Node::str("combined"));
                for extra in first.args.iter().skip(2) {
                    tx.report
                        .note(first, format!("`{extra}`: weir writes each line at once"));
                }
            }
        }
        tx.global("access_log", log, first);
        for more in &logs[1..] {
            tx.take(more);
            tx.report.left(more, "weir writes one access log");
        }
    }
    limits::real_ip(tx, scope)?;
    Ok(())
}
