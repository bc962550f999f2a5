//! The built-in `limit_conn` plugin: at most `max` requests in flight per key (nginx
//! `limit_conn`, counting requests as nginx does for HTTP/2 streams).
//!
//! ```yaml
//! - limit_conn: { key: client_ip, max: 16 }            # status: 503 by default
//! ```
//!
//! A request whose key already has `max` requests in flight is answered `status` at once
//! (no queueing). A request let through holds a [`ConnGuard`] in its context; the context is
//! dropped when the request ends however it ends — a response sent, an upstream error, a
//! client gone mid-way — and the guard's `Drop` gives the slot back.
//!
//! The counts belong to the plugin instance, so they are **per route entry**: two routes
//! (or two `limit_conn` entries) with the same key count separately. A reload builds new
//! instances whose counts start at zero; requests still in flight on the old config release
//! into the old instance, which is freed with them. So right after a reload a key may
//! briefly have up to `max` requests in flight on each config.
//!
//! Memory is bounded by the requests in flight: a key's entry is removed when its count
//! returns to zero.

use crate::build::{BuildContext, BuildPlugin};
use crate::config::{answer_status, join, ConfigErrors};
use crate::key::{parse_key, KeySpec, RequestKey};
use crate::respond::{client_for_log, respond_text, suppressed_note, LogLimiter};
use crate::{Flow, Plugin, RequestCtx};
use async_trait::async_trait;
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// YAML config of the `limit_conn` plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConnConfig {
    /// What is counted: `client_ip`, `host`, `uri`, `header:NAME`, `cookie:NAME` or a list.
    pub key: KeySpec,
    /// Requests in flight allowed per key, at least 1.
    pub max: u32,
    /// Status of a refusal, 400–599 (default 503, like nginx).
    pub status: Option<u16>,
}

/// The `limit_conn` plugin.
#[derive(Debug)]
pub struct LimitConn {
    key: RequestKey,
    status: u16,
    counts: Arc<InFlight>,
    log: LogLimiter,
}

/// The in-flight count of every key that has requests in flight.
#[derive(Debug)]
pub struct InFlight {
    max: u32,
    counts: Mutex<HashMap<Vec<u8>, u32>>,
}

/// One request's place in an [`InFlight`] count; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnGuard {
    counts: Arc<InFlight>,
    key: Vec<u8>,
}

/// Every guard a request holds (one per `limit_conn` entry of its route), in the request
/// context's slot. A single slot of guards, because inserting a second guard into a slot
/// of its own type would drop, and so release, the first.
#[derive(Debug, Default)]
struct ConnGuards(Vec<ConnGuard>);

/// The body of a refusal.
const REFUSED: &str = "too many requests in flight\n";

impl InFlight {
    /// Counts of at most `max` requests per key.
    pub fn new(max: u32) -> Arc<InFlight> {
        Arc::new(InFlight {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, u32>> {
        // The map is consistent after every statement that changes it, so a lock poisoned
        // by a panic elsewhere is still safe to use.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for `key`, or `None` when it already has `max` requests in flight.
    pub fn acquire(self: &Arc<Self>, key: Vec<u8>) -> Option<ConnGuard> {
        let mut counts = self.lock();
        match counts.get_mut(&key) {
            Some(n) if *n >= self.max => return None,
            Some(n) => *n += 1,
            None => {
                counts.insert(key.clone(), 1);
            }
        }
        drop(counts);
        Some(ConnGuard {
            counts: Arc::clone(self),
            key,
        })
    }

    /// Requests in flight for `key`.
    pub fn in_flight(&self, key: &[u8]) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Keys with requests in flight.
    pub fn keys(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl BuildPlugin for LimitConn {
    const NAME: &'static str = "limit_conn";
    type Config = LimitConnConfig;

    fn build(config: LimitConnConfig, path: &str, _: &BuildContext) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let key = errors.take(parse_key(&config.key, &join(path, "key")));
        if config.max == 0 {
            errors.push(join(path, "max"), "must be at least 1");
        }
        let status = answer_status(config.status, 503, path, &mut errors);
        match key {
            Some(key) if errors.is_empty() => Ok(LimitConn {
                key,
                status,
                counts: InFlight::new(config.max),
                log: LogLimiter::default(),
            }),
            _ => Err(errors),
        }
    }
}

#[async_trait]
impl Plugin for LimitConn {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Flow> {
        let mut key = Vec::new();
        self.key.extract(session.req_header(), ctx, &mut key);
        let Some(guard) = self.counts.acquire(key) else {
            if let Some(held_back) = self.log.allow() {
                let client = client_for_log(ctx.client_ip);
                let note = suppressed_note(held_back);
                log::info!(
                    "limit_conn: refused {client} on route {} with {}: {} requests in flight for its key{note}",
                    ctx.route,
                    self.status,
                    self.counts.max
                );
            }
            // A rejection is the rare path; the route label is looked up here.
            if let Ok(vec) = crate::metrics::limit_conn_rejected_total() {
                if let Ok(c) = crate::metrics::labelled(vec, &[&ctx.route]) {
                    c.inc();
                }
            }
            respond_text(session, self.status, REFUSED, &[]).await?;
            return Ok(Flow::Responded);
        };
        match ctx.get_mut::<ConnGuards>() {
            Some(guards) => guards.0.push(guard),
            None => {
                ctx.insert(ConnGuards(vec![guard]));
            }
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_max_and_forgets_keys_at_zero() {
        let counts = InFlight::new(2);
        let a1 = counts.acquire(b"a".to_vec()).unwrap();
        let a2 = counts.acquire(b"a".to_vec()).unwrap();
        assert!(counts.acquire(b"a".to_vec()).is_none(), "a is at max");
        let b = counts.acquire(b"b".to_vec()).unwrap();
        assert_eq!((counts.in_flight(b"a"), counts.in_flight(b"b")), (2, 1));
        drop(a1);
        assert_eq!(counts.in_flight(b"a"), 1);
        let a3 = counts.acquire(b"a".to_vec()).unwrap();
        drop((a2, a3, b));
        assert_eq!(counts.keys(), 0, "no entry left once nothing is in flight");
        assert!(counts.acquire(b"a".to_vec()).is_some());
    }

    #[test]
    fn guards_in_a_request_context_release_when_it_drops() {
        let first = InFlight::new(1);
        let second = InFlight::new(1);
        let mut ctx = RequestCtx::new(None, Arc::from("r"), false, crate::NormalizedPath::root());
        ctx.insert(ConnGuards(vec![first.acquire(b"k".to_vec()).unwrap()]));
        if let Some(g) = ctx.get_mut::<ConnGuards>() {
            g.0.push(second.acquire(b"k".to_vec()).unwrap());
        }
        assert_eq!((first.in_flight(b"k"), second.in_flight(b"k")), (1, 1));
        drop(ctx);
        assert_eq!((first.keys(), second.keys()), (0, 0));
    }

    #[test]
    fn config_errors_are_collected() {
        let config: LimitConnConfig =
            serde_yaml_ng::from_str("{key: [client_ip, bogus], max: 0, status: 302}").unwrap();
        let e = LimitConn::build(config, "p.limit_conn", &BuildContext::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.limit_conn.key[1]: unknown key `bogus`"),
            "{e}"
        );
        assert!(
            e.contains("\np.limit_conn.max: must be at least 1\n"),
            "{e}"
        );
        assert!(e.ends_with("p.limit_conn.status: 302 is not a status from 400 to 599"));
    }
}
