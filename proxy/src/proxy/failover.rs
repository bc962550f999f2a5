//! Failover between attempts: one request's [`Attempts`] at its upstream's servers, which
//! failures move it to the next server (nginx's `proxy_next_upstream` rules), passive
//! accounting of each attempt, and redirect mode.
//!
//! The proxy calls [`Attempts`] from three phases — `upstream_peer` ([`Attempts::next_peer`]),
//! the error hooks ([`Attempts::connect_failed`], [`Attempts::after_error`]) and
//! `upstream_response_filter` ([`Attempts::on_response`]) — so the rules that tie the
//! bookkeeping together (a stale pooled connection is retried once, on the same server; a
//! status retry is decided once; nothing is retried after the response head went out) live
//! here only.

use super::http_error;
use crate::metrics::{metrics, reason_label};
use crate::router::Route;
use crate::upstream::health::error_reason;
use crate::upstream::{status_counts_as_failure, NextUpstream, Outcome, Peer, Tried, Upstream};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::ErrorSource;
use pingora::ErrorType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use weir_plugins::respond::{path_for_log, respond_text};

/// nginx's non-idempotent methods: not passed to another server once they were sent.
fn non_idempotent(method: &http::Method) -> bool {
    matches!(method.as_str(), "POST" | "LOCK" | "PATCH")
}

/// What `balance: hash` hashes: the cache key when the route caches (so each edge cache
/// holds its share of the objects), else the request URI.
fn hash_key<'a>(upstream: &Upstream, session: &'a Session) -> Option<&'a [u8]> {
    if upstream.balance != crate::upstream::Balance::Hash {
        return None;
    }
    Some(match session.cache.maybe_cache_key() {
        Some(key) => key.primary_key(),
        None => session.req_header().raw_path(),
    })
}

/// `weir_upstream_failures_total{upstream,server,reason}`.
fn count_failure(upstream: &Upstream, peer: &Peer, why: &str) {
    if let Ok(c) = metrics().failures.get_metric_with_label_values(&[
        &upstream.name,
        &peer.spec.addr,
        reason_label(why),
    ]) {
        c.inc();
    }
}

/// An error that nginx counts as `timeout` rather than `error` in `proxy_next_upstream`.
fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

/// Redirect mode: `302` to a usable server of `upstream` (picked like a proxied request's),
/// or to the last tier's first server when none is usable.
pub(super) async fn redirect(session: &mut Session, upstream: &Upstream) -> Result<()> {
    let key = hash_key(upstream, session);
    let Some(peer) = upstream.redirect_target(key) else {
        log::warn!("upstream {}: redirect with no server at all", upstream.name);
        return respond_text(session, 503, "503 no server to redirect to\n", &[]).await;
    };
    let scheme = if peer.spec.tls { "https" } else { "http" };
    let uri = String::from_utf8_lossy(session.req_header().raw_path()).into_owned();
    let location = format!("{scheme}://{}{uri}", peer.spec.authority());
    respond_text(
        session,
        302,
        "302 Found\n",
        &[("Location", location), ("Cache-Control", "no-store".into())],
    )
    .await
}

/// One request's attempts at the servers of its route's upstream.
#[derive(Default)]
pub(super) struct Attempts {
    /// The server of the current attempt.
    current: Option<Arc<Peer>>,
    /// The address of the current attempt's server, for the access log.
    addr: Option<SocketAddr>,
    /// Servers this request tried.
    tried: Tried,
    /// The first pick found no usable server: down servers are tried in tier order.
    all_down: bool,
    /// When the first attempt started (`next_upstream_timeout`).
    first: Option<Instant>,
    /// The next attempt goes to the same server: its pooled connection had gone stale.
    retry_same: bool,
    /// A stale pooled connection was retried once already.
    stale_retried: bool,
    /// The current attempt was ended by weir because its status is in `next_upstream`.
    status_retry: bool,
    /// The response head went to the client: nothing is retried any more.
    response_started: bool,
}

impl Attempts {
    /// The server of the current attempt, if one started.
    pub(super) fn server(&self) -> Option<&Peer> {
        self.current.as_deref()
    }

    /// The address of the last attempt's server, for the access log.
    pub(super) fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// `upstream_peer`: the server of the next attempt (the same one again after a stale
    /// pooled connection), counted in `tried` and in `weir_upstream_attempts_total`.
    pub(super) fn next_peer(
        &mut self,
        session: &Session,
        route: Option<&Route>,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = route else {
            return Err(http_error(500, "no route selected"));
        };
        let Some(upstream) = route.target.upstream() else {
            return Err(http_error(500, "the route has no upstream"));
        };
        let peer = match (self.retry_same, self.current.clone()) {
            (true, Some(peer)) => {
                self.retry_same = false;
                peer
            }
            _ => {
                let key = hash_key(upstream, session);
                let Some((peer, usable)) = upstream.select(&self.tried, key, self.all_down) else {
                    log::warn!(
                        "upstream {}: no server to try for {}",
                        upstream.name,
                        path_for_log(session.req_header())
                    );
                    return Err(http_error(502, "the upstream has no server"));
                };
                if self.tried.count() == 0 && !usable {
                    // Every server of every tier is down: try them all in tier order.
                    self.all_down = true;
                }
                self.tried.push(peer.id);
                peer
            }
        };
        self.first.get_or_insert_with(Instant::now);
        let Some(http_peer) = upstream.http_peer(&peer) else {
            return Err(http_error(502, "the server has no address"));
        };
        self.addr = peer.addr();
        peer.count_attempt(&upstream.name);
        self.current = Some(peer);
        Ok(Box::new(http_peer))
    }

    /// `fail_to_connect`: nothing was sent, so any method may go to the next server.
    pub(super) fn connect_failed(
        &self,
        session: &Session,
        route: Option<&Route>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retry = self.failed(session, route, &e, false);
        e.set_retry(retry);
        e
    }

    /// `error_while_proxy`: accounts an attempt that failed after connecting and decides
    /// whether the request moves on (nginx: never for POST/LOCK/PATCH once sent, nor once the
    /// response head reached the client, nor past the 64 KiB body replay buffer).
    pub(super) fn after_error(
        &mut self,
        session: &Session,
        route: Option<&Route>,
        mut e: Box<Error>,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut self.status_retry) {
            return e; // weir ended the attempt on its status; the decision is made
        }
        if e.esource() != &ErrorSource::Upstream {
            // The client went away or sent a bad body (413): not the server's failure, and
            // nothing to retry.
            e.set_retry(false);
            return e;
        }
        let replayable = !self.response_started
            && !non_idempotent(&session.req_header().method)
            && !session.as_ref().retry_buffer_truncated();
        // A pooled connection the server had closed: try the same server once more on a new
        // connection, as Pingora does; it is not the server's failure.
        if client_reused
            && replayable
            && !self.stale_retried
            && matches!(e.retry, pingora::RetryType::ReusedOnly)
        {
            self.stale_retried = true;
            self.retry_same = true;
            e.set_retry(true);
            return e;
        }
        let retry = self.failed(session, route, &e, !replayable);
        e.set_retry(retry);
        e
    }

    /// `upstream_response_filter`: a status listed in `next_upstream` ends the attempt (its
    /// connection is closed, its body unread) and moves the request on while servers, tries
    /// and time are left; otherwise the response goes to the client and counts as a success.
    pub(super) fn on_response(
        &mut self,
        session: &Session,
        route: Option<&Route>,
        response: &ResponseHeader,
    ) -> Result<()> {
        let status = response.status.as_u16();
        if response.status.is_informational() {
            return Ok(());
        }
        let (Some(upstream), Some(peer)) = (route.and_then(|r| r.target.upstream()), &self.current)
        else {
            return Ok(());
        };
        if upstream.next_upstream.has_status(status) {
            let why = format!("status {status}");
            if status_counts_as_failure(status) {
                count_failure(upstream, peer, &why);
                upstream.report(peer, Outcome::Failure, &why);
            } else {
                upstream.report(peer, Outcome::Success, &why);
            }
            let replayable = !non_idempotent(&session.req_header().method)
                && !session.as_ref().retry_buffer_truncated();
            if replayable && self.may_try_again(upstream) {
                log::info!(
                    "upstream {}: {} answered {status} to {}; trying the next server",
                    upstream.name,
                    peer.describe(),
                    path_for_log(session.req_header())
                );
                self.status_retry = true;
                let mut e = Error::explain(ErrorType::HTTPStatus(status), "next_upstream");
                e.set_retry(true);
                return Err(e.into_up());
            }
        } else {
            upstream.report(peer, Outcome::Success, "");
        }
        self.response_started = true;
        Ok(())
    }

    /// Accounts a failed attempt (errors and timeouts always count toward `max_fails`) and
    /// decides whether the request moves to the next server.
    fn failed(
        &self,
        session: &Session,
        route: Option<&Route>,
        e: &Error,
        sent_and_final: bool,
    ) -> bool {
        let (Some(upstream), Some(peer)) = (route.and_then(|r| r.target.upstream()), &self.current)
        else {
            return false;
        };
        let why = error_reason(e);
        count_failure(upstream, peer, &why);
        upstream.report(peer, Outcome::Failure, &why);
        let kind = if is_timeout(e) {
            NextUpstream::TIMEOUT
        } else {
            NextUpstream::ERROR
        };
        let retry = !sent_and_final
            && !self.response_started
            && upstream.next_upstream.contains(kind)
            && self.may_try_again(upstream);
        log::warn!(
            "upstream {}: {} failed for {}: {why}{}",
            upstream.name,
            peer.describe(),
            path_for_log(session.req_header()),
            if retry {
                "; trying the next server"
            } else {
                ""
            }
        );
        retry
    }

    /// May the request start another attempt: tries, `next_upstream_timeout` and servers left?
    fn may_try_again(&self, upstream: &Upstream) -> bool {
        let tries = self.tried.count();
        if upstream.next_upstream_tries > 0 && tries >= upstream.next_upstream_tries as usize {
            return false;
        }
        if let (Some(limit), Some(first)) = (upstream.next_upstream_timeout, self.first) {
            if first.elapsed() >= limit {
                return false;
            }
        }
        upstream.has_untried(&self.tried, self.all_down)
    }
}
