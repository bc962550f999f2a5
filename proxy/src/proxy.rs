//! The phase pipeline: weir's implementation of Pingora's `ProxyHttp`.
//!
//! Each request takes a snapshot of the running config when it starts, so a reload never
//! changes a request mid-flight. The phases: request limits → route match → the route's
//! plugins (access phase) → upstream select → upstream request (forwarding headers, plugin
//! edits) → response (plugin edits) → logging.

use crate::access_log::LogRecord;
use crate::cache::{self, CacheState};

mod failover;
mod fixed;
mod forwarded;
mod fresh_hit;
mod request_body;
use crate::config::{Config, ServerSettings};
use crate::framing;
use crate::metrics::{metrics, NO_ROUTE};
use crate::request_limits;
use crate::request_target::{self, TargetForm};
use crate::router::Route;
use crate::state::{InflightGuard, Shared};
use async_trait::async_trait;
use bytes::Bytes;
use failover::Attempts;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyWarnLogContext};
use pingora::{ErrorSource, ErrorType};
use request_body::{Buffered, BufferedBody};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_plugins::respond::{client_for_log, path_for_log, respond_text};
use weir_plugins::{Flow, RequestCtx};

/// nginx's `keepalive_timeout` default: idle client connections close after 75 s.
pub(crate) const CLIENT_KEEPALIVE_SECS: u64 = 75;

/// The proxy application Pingora runs.
pub struct Weir {
    shared: Arc<Shared>,
}

impl Weir {
    /// A proxy serving whatever config `shared` holds.
    pub fn new(shared: Arc<Shared>) -> Self {
        Weir { shared }
    }
}

/// Per-request state.
pub struct RequestState {
    config: Arc<Config>,
    route: Option<Arc<Route>>,
    plugins: Option<RequestCtx>,
    /// The attempts at the route's upstream servers (failover bookkeeping).
    attempts: Attempts,
    /// The cache zone serving this request, if any.
    cache: CacheState,
    /// The client: the peer, or the address a trusted proxy named (see [`client_ip`]).
    client_ip: Option<IpAddr>,
    /// The request body, when the route buffers it (read whole before an upstream is chosen).
    body: Option<Box<BufferedBody>>,
    request_body_bytes: u64,
    started: Instant,
    _inflight: InflightGuard,
}

impl RequestState {
    /// The route and its plugin context, when a route matched.
    fn chain(&mut self) -> Option<(&Route, &mut RequestCtx)> {
        Some((self.route.as_deref()?, self.plugins.as_mut()?))
    }
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client address: the peer, or, when the peer is in `server.trusted_proxies`, the
/// rightmost address of `server.real_ip_header` that is not itself trusted (nginx
/// `real_ip_recursive on`). When every address is trusted, the leftmost one.
fn client_ip(session: &Session, server: &ServerSettings) -> Option<IpAddr> {
    let peer = peer_ip(session)?;
    let trusted = |ip: IpAddr| server.trusted_proxies.iter().any(|c| c.contains(ip));
    if server.trusted_proxies.is_empty() || !trusted(peer) {
        return Some(peer);
    }
    let headers = session.req_header().headers.get_all(&server.real_ip_header);
    let mut client = peer;
    for value in headers.iter().rev() {
        let Ok(text) = value.to_str() else { break };
        for entry in text.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                return Some(client);
            };
            client = ip;
            if !trusted(ip) {
                return Some(ip);
            }
        }
    }
    Some(client)
}

/// Waits `delay` unless the client leaves first; `false` when it left.
async fn wait_for_client(session: &mut Session, delay: Duration) -> bool {
    if !session.as_downstream_mut().is_body_empty() {
        // A body is on its way: reading it here would consume it; just wait.
        tokio::time::sleep(delay).await;
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = session.as_downstream_mut().read_body_or_idle(true) => false,
    }
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

fn http_error(status: u16, why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(status), why)
}

const BODY_TOO_LARGE: &str = "request body larger than server.max_request_body";

/// `server.max_request_body: 0` means no limit, as nginx's `client_max_body_size 0`.
fn body_too_large(bytes: u64, config: &Config) -> bool {
    let max = config.server.max_request_body;
    max != 0 && bytes > max
}

/// Logs why a request is refused (client, path, reason) and makes the error that answers it.
fn refuse(session: &Session, status: u16, why: &'static str) -> Box<Error> {
    let path = path_for_log(session.req_header());
    let client = client_for_log(peer_ip(session));
    log::info!("refused {client} {path} with {status}: {why}");
    http_error(status, why)
}

#[async_trait]
impl ProxyHttp for Weir {
    type CTX = RequestState;

    fn new_ctx(&self) -> RequestState {
        RequestState {
            config: self.shared.config.load_full(),
            route: None,
            plugins: None,
            attempts: Attempts::default(),
            cache: CacheState::default(),
            client_ip: None,
            body: None,
            request_body_bytes: 0,
            started: Instant::now(),
            _inflight: self.shared.inflight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestState) -> Result<bool> {
        ctx.started = Instant::now();
        // Requests a client sent before reading this answer are answered after it, in
        // order (RFC 9112 §9.3.2), instead of closing the connection on them.
        session.as_downstream_mut().set_pipelining_enabled(true);
        // Only a connection Pingora keeps (not HTTP/1.0 without keep-alive, `Connection:
        // close`, a framing error) gets weir's keep-alive timeout: re-enabling keep-alive
        // would read the bytes after a misframed body as the next request.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(CLIENT_KEEPALIVE_SECS));
        }
        session.set_read_timeout(Some(ctx.config.server.client_body_timeout));
        session.set_write_timeout(Some(ctx.config.server.send_timeout));
        ctx.client_ip = client_ip(session, &ctx.config.server);
        if let Err(refusal) = framing::check(session.req_header()) {
            return Err(refuse(session, refusal.status(), refusal.reason()));
        }
        // Routes and plugins see the normalised path; the target goes upstream as sent.
        let (route, path) = match request_limits::check(session.req_header(), &ctx.config.server) {
            Ok(ok) if ok.form == TargetForm::Asterisk => {
                return request_target::answer_asterisk(session)
                    .await
                    .map(|()| true);
            }
            Ok(ok) => {
                let route = ctx.config.router.find(ok.host, &ok.path, is_tls(session));
                (route.cloned(), ok.path)
            }
            Err(refusal) => return Err(refuse(session, refusal.status(), refusal.reason())),
        };
        request_limits::drop_underscore_headers(session.req_header_mut());
        let Some(route) = route else {
            respond_text(session, 404, "404 no route for this host and path\n", &[]).await?;
            return Ok(true);
        };

        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| body_too_large(n, &ctx.config)) {
            return Err(refuse(session, 413, BODY_TOO_LARGE));
        }

        // The route is recorded before any plugin runs, so the logging phase sees it even
        // when a plugin fails.
        ctx.plugins = Some(RequestCtx::new(
            ctx.client_ip,
            route.name.clone(),
            is_tls(session),
            path,
        ));
        ctx.route = Some(route);
        let mut delay = Duration::ZERO;
        if let Some((route, plugin_ctx)) = ctx.chain() {
            for plugin in &route.plugins {
                if plugin.request_filter(session, plugin_ctx).await? == Flow::Responded {
                    return Ok(true);
                }
            }
            delay = plugin_ctx.delay();
        }
        // The access phase asked the request to wait (limit_req): once, for the longest
        // delay, and never longer than the client stays.
        if !delay.is_zero() && !wait_for_client(session, delay).await {
            return Err(
                Error::explain(ErrorType::ConnectionClosed, "client left while delayed")
                    .into_down(),
            );
        }
        let mut buffering = false;
        if let Some((route, plugin_ctx)) = ctx.chain() {
            if fixed::answered(session, route, plugin_ctx).await? {
                return Ok(true);
            }
            buffering = route.request_buffering;
        }
        if fresh_hit::serve(self, session, ctx).await? {
            return Ok(true);
        }
        if buffering && !session.is_upgrade_req() && !session.as_downstream_mut().is_body_empty() {
            match request_body::read(session, &ctx.config.server).await? {
                Buffered::Body(body) => {
                    ctx.request_body_bytes = body.len();
                    ctx.body = Some(Box::new(body));
                }
                Buffered::TooLarge => return Err(refuse(session, 413, BODY_TOO_LARGE)),
            }
        }
        framing::continue_if_expected(session).await?;
        Ok(false)
    }

    fn request_body_replay(
        &self,
        _session: &mut Session,
        ctx: &mut RequestState,
    ) -> Result<Option<Bytes>> {
        ctx.body.as_mut().map_or(Ok(None), |b| b.next_piece())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestState,
    ) -> Result<()> {
        if let (Some(b), None) = (body, &ctx.body) {
            ctx.request_body_bytes += b.len() as u64;
            if body_too_large(ctx.request_body_bytes, &ctx.config) {
                return Err(refuse(session, 413, BODY_TOO_LARGE));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestState,
    ) -> Result<Box<HttpPeer>> {
        if let Some(body) = &mut ctx.body {
            body.rewind(); // each attempt sends the whole buffered body
        }
        ctx.attempts.next_peer(session, ctx.route.as_deref())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestState,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.attempts
            .connect_failed(session, ctx.route.as_deref(), e)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestState,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.attempts
            .after_error(session, ctx.route.as_deref(), e, client_reused)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestState,
    ) -> Result<()> {
        if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.target.upstream()) {
            // Before the cache sees the response: one refused is not stored.
            framing::check_response_head(response, upstream, session)?;
        }
        ctx.attempts
            .on_response(session, ctx.route.as_deref(), response)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestState,
    ) -> Result<()> {
        forwarded::add_forwarding_headers(request, ctx.client_ip, is_tls(session))?;
        forwarded::origin_form(request)?;
        if request.headers.get(http::header::HOST).is_none() {
            // HTTP/2 clients send :authority; an HTTP/1.1 upstream needs Host.
            if let Some(authority) = request.uri.authority() {
                let host = http::HeaderValue::from_str(authority.as_str());
                let host = host.or_err(ErrorType::InvalidHTTPHeader, "authority as Host")?;
                request.insert_header(http::header::HOST, host)?;
            }
        }
        // weir answered `Expect` itself (framing::continue_if_expected); an upstream 100
        // would be a second one.
        request.remove_header(&http::header::EXPECT);
        // Upgrades keep their hop-by-hop headers.
        if !session.is_upgrade_req() {
            forwarded::remove_hop_by_hop(request);
        }
        if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.target.upstream()) {
            if upstream.keepalive == 0 {
                request.insert_header(http::header::CONNECTION, "close")?;
            }
        }
        if let Some(host) = ctx.attempts.server().and_then(|p| p.spec.host.as_deref()) {
            request.insert_header(http::header::HOST, host)?;
        }
        if let Some(body) = &ctx.body {
            // As nginx sends a buffered body: its length known, nothing left to wait for.
            request.remove_header(&http::header::TRANSFER_ENCODING);
            request.remove_header(&http::header::EXPECT);
            request.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        }
        if let Some((route, plugin_ctx)) = ctx.chain() {
            for plugin in &route.plugins {
                plugin.upstream_request_filter(session, request, plugin_ctx)?;
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestState,
    ) -> Result<()> {
        if response.status.is_informational() {
            return Ok(()); // plugins edit the final response, not `100 Continue`
        }
        cache::add_status_header(session, &ctx.cache, response)?;
        if let Some((route, plugin_ctx)) = ctx.chain() {
            for plugin in &route.plugins {
                plugin.response_filter(session, response, plugin_ctx)?;
            }
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestState) -> Result<()> {
        let cache_plugin = ctx.route.as_ref().and_then(|r| r.cache.as_ref());
        cache::enable(session, cache_plugin, &mut ctx.cache);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestState) -> Result<CacheKey> {
        cache::key(session, &ctx.cache, is_tls(session), ctx.plugins.as_ref())
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestState,
    ) -> Result<RespCacheable> {
        Ok(cache::decide(session, resp, &ctx.cache))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestState,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache::variance(meta, req)
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestState,
        error: Option<&Error>,
    ) -> bool {
        cache::serve_stale(session, &ctx.cache, error)
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        _meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestState,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache::hit(&ctx.cache))
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestState,
        _error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        // weir logs each failed attempt itself, naming the upstream, server and tier.
        matches!(context, ProxyWarnLogContext::UpstreamRetry)
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestState, error: &Error) -> bool {
        // Refusals of bad client input are logged by weir at info with the reason. A client
        // that goes away mid-request is routine (nginx's 499), not an error worth a line per
        // request under load.
        let client_left = error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_left {
            log::debug!("client went away: {error}");
        }
        let client_slow = error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout
            );
        if client_slow {
            // nginx logs "client timed out" at info.
            log::info!("client timed out: {error}");
        }
        client_left
            || client_slow
            || matches!(error.etype(), ErrorType::HTTPStatus(code) if *code < 500)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestState,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            // `return: {status: 444}`: nothing is sent.
            _ if fixed::is_close(e) => 0,
            (ErrorType::HTTPStatus(code), _) => *code,
            // nginx answers 504 when the upstream times out, 502 for every other upstream failure.
            (
                ErrorType::ConnectTimedout
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
                | ErrorType::TLSHandshakeTimedout,
                ErrorSource::Upstream,
            ) => 504,
            (_, ErrorSource::Upstream) => 502,
            // A client that left or timed out gets no answer; nginx closes too (408 in its
            // log for a client_header/client_body timeout).
            (
                ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::ConnectionClosed
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout,
                ErrorSource::Downstream,
            ) => 0,
            (_, ErrorSource::Downstream) => 400,
            _ => 500,
        };
        if code > 0 {
            let body = http::StatusCode::from_u16(code)
                .ok()
                .map(|s| format!("{} {}\n", code, s.canonical_reason().unwrap_or("")))
                .unwrap_or_default();
            if let Err(err) = session
                .respond_error_with_body(code, Bytes::from(body))
                .await
            {
                log::debug!("could not send the {code} error page: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestState) {
        if let Some((route, plugin_ctx)) = ctx.chain() {
            for plugin in &route.plugins {
                plugin.logging(session, error, plugin_ctx).await;
            }
        }
        let timed_out = error.is_some_and(|e| {
            e.esource() == &ErrorSource::Downstream && e.etype() == &ErrorType::ReadTimedout
        });
        let status = match session.response_written() {
            Some(r) => r.status.as_u16(),
            None if timed_out => 408, // as nginx logs a client_body_timeout
            None if error.is_some_and(fixed::is_close) => 444,
            None => 0,
        };
        let route = ctx.route.as_ref().map_or("-", |r| &r.name);
        let sent = session.body_bytes_sent() as u64;
        let from_upstream = session.upstream_body_bytes_received() as u64;
        let m = metrics();
        let route_metrics = ctx.route.as_ref().map_or(&NO_ROUTE, |r| &r.metrics);
        route_metrics.count(route, status);
        route_metrics.observe_duration(route, ctx.started.elapsed().as_secs_f64());
        m.bytes_sent.inc_by(sent);
        m.bytes_received.inc_by(ctx.request_body_bytes);
        let cache_status = cache::status(session, &ctx.cache);
        let cache_hit = cache_status.is_some_and(|s| s.is_hit());
        self.shared.traffic.record(sent, from_upstream, cache_hit);

        let log = self.shared.access_log.load();
        if log.is_off() {
            return;
        }
        let req = session.req_header();
        let header = |name: http::header::HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        };
        let uri = String::from_utf8_lossy(req.raw_path());
        let version = match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        };
        log.write(&LogRecord {
            client: ctx.client_ip.or_else(|| peer_ip(session)),
            method: req.method.as_str(),
            uri: &uri,
            version,
            status,
            body_bytes: session.body_bytes_sent(),
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
            host: header(http::header::HOST),
            route,
            upstream: ctx.attempts.addr(),
            duration: ctx.started.elapsed(),
            error: error.map(|e| e.to_string()),
            cache: cache_status.map(|s| s.as_str()),
        });
    }
}
