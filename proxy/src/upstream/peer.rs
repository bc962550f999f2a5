//! One upstream server at run time: what the YAML said about it, where it resolves to now,
//! and what the active health checks last concluded.
//!
//! A `Peer` is shared (`Arc`) between the selector, the proxy's request state and the
//! background checker, and is carried over a reload when its entry is unchanged, so health
//! state survives `SIGHUP`.

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// A server entry as configured (or registered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The address as written: `IP:port` or `name:port`.
    pub addr: String,
    /// The host name when `addr` names one (re-resolved every `dns_refresh`).
    pub host_name: Option<String>,
    /// The port of `addr`.
    pub port: u16,
    /// Relative share of requests (nginx `weight`, default 1).
    pub weight: u32,
    /// Connect with TLS (verified).
    pub tls: bool,
    /// The TLS server name to send and verify; defaults to the host of `addr`.
    pub sni: Option<String>,
    /// The Host header sent upstream instead of the client's.
    pub host: Option<String>,
    /// Offer HTTP/2 by ALPN on TLS connections (falls back to HTTP/1.1).
    pub http2: bool,
}

impl ServerSpec {
    /// The TLS name: `sni`, else the host of `addr` (a name or an IP literal).
    pub fn tls_name(&self) -> String {
        if let Some(sni) = &self.sni {
            return sni.clone();
        }
        if let Some(name) = &self.host_name {
            return name.clone();
        }
        match self.addr.parse::<SocketAddr>() {
            Ok(a) => a.ip().to_string(),
            Err(_) => self.addr.clone(),
        }
    }

    /// `host[:port]` for a URL, without the scheme's default port (redirect mode).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            match self.addr.rsplit_once(':') {
                Some((host, _)) => host.to_string(),
                None => self.addr.clone(),
            }
        } else {
            self.addr.clone()
        }
    }
}

/// Why a server's state changed, and when.
#[derive(Debug, Clone)]
pub struct StateChange {
    /// When it happened.
    pub at: SystemTime,
    /// Why, in words ("3 failed checks (connection refused)").
    pub reason: String,
}

/// Active health-check bookkeeping (nginx Plus `passes`/`fails` counting).
#[derive(Debug, Default)]
struct CheckCounts {
    ok_in_a_row: u32,
    failed_in_a_row: u32,
    last_error: Option<String>,
}

/// A server at run time.
#[derive(Debug)]
pub struct Peer {
    /// A process-wide unique id (a request remembers which servers it tried by id).
    pub id: u64,
    /// The tier it belongs to.
    pub tier: String,
    /// Its entry.
    pub spec: ServerSpec,
    addrs: ArcSwap<Vec<SocketAddr>>,
    up: AtomicBool,
    counts: Mutex<CheckCounts>,
    last_change: Mutex<Option<StateChange>>,
    /// Its `weir_upstream_attempts_total` series, resolved on its first attempt.
    attempts: OnceLock<IntCounter>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Peer {
    /// A server of `tier` reachable at `addrs` (non-empty, preferred first); starts up.
    pub fn new(tier: &str, spec: ServerSpec, addrs: Vec<SocketAddr>) -> Peer {
        Peer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tier: tier.to_string(),
            spec,
            addrs: ArcSwap::from_pointee(addrs),
            up: AtomicBool::new(true),
            counts: Mutex::new(CheckCounts::default()),
            last_change: Mutex::new(Some(StateChange {
                at: SystemTime::now(),
                reason: "configured".into(),
            })),
            attempts: OnceLock::new(),
        }
    }

    /// Counts one attempt in `weir_upstream_attempts_total{upstream,server}`. A server
    /// belongs to one upstream (a reload carries it over only within the same name), so the
    /// series is looked up once rather than per request.
    pub fn count_attempt(&self, upstream: &str) {
        let counter = match self.attempts.get() {
            Some(c) => Some(c),
            None => crate::metrics::metrics()
                .attempts
                .get_metric_with_label_values(&[upstream, &self.spec.addr])
                .ok()
                .map(|c| self.attempts.get_or_init(|| c)),
        };
        if let Some(c) = counter {
            c.inc();
        }
    }

    /// The address connections go to now.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addrs.load().first().copied()
    }

    /// Every address the entry resolved to, preferred first.
    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.load_full()
    }

    /// Replaces the resolved addresses (DNS refresh); `true` when they changed.
    pub fn set_addrs(&self, addrs: Vec<SocketAddr>) -> bool {
        if addrs.is_empty() || **self.addrs.load() == addrs {
            return false;
        }
        self.addrs.store(Arc::new(addrs));
        true
    }

    /// False while active health checks say the server is down.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The last state change (active or passive); at first, when it was configured or
    /// registered.
    pub fn last_change(&self) -> Option<StateChange> {
        lock(&self.last_change).clone()
    }

    /// True while active checks say down but the latest ones succeeded: the server comes
    /// back after `rise` of them in a row (the dashboard's "probing").
    pub fn is_probing(&self) -> bool {
        !self.is_up() && lock(&self.counts).ok_in_a_row > 0
    }

    /// Records a state change for `/status`.
    pub fn note_change(&self, reason: String) {
        *lock(&self.last_change) = Some(StateChange {
            at: SystemTime::now(),
            reason,
        });
    }

    /// Records one active check result. Returns `Some(up)` when the server changes state:
    /// down after `fall` failures in a row, up after `rise` successes in a row.
    pub fn record_check(&self, result: Result<(), String>, rise: u32, fall: u32) -> Option<bool> {
        let mut c = lock(&self.counts);
        let up = self.is_up();
        match result {
            Ok(()) => {
                c.ok_in_a_row += 1;
                c.failed_in_a_row = 0;
                if !up && c.ok_in_a_row >= rise {
                    self.up.store(true, Ordering::Release);
                    return Some(true);
                }
            }
            Err(e) => {
                c.failed_in_a_row += 1;
                c.ok_in_a_row = 0;
                c.last_error = Some(e);
                if up && c.failed_in_a_row >= fall {
                    self.up.store(false, Ordering::Release);
                    return Some(false);
                }
            }
        }
        None
    }

    /// The reason of the latest failed check, for the "down" log line.
    pub fn last_check_error(&self) -> String {
        lock(&self.counts)
            .last_error
            .clone()
            .unwrap_or_else(|| "unknown error".into())
    }

    /// `127.0.0.1:9001 (edge)`, as log lines name a server.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.spec.addr, self.tier)
    }
}

/// A poisoned lock only means another thread panicked while holding it; the values are
/// plain data and still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, tls: bool) -> ServerSpec {
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        ServerSpec {
            addr: addr.into(),
            host_name: None,
            port,
            weight: 1,
            tls,
            sni: None,
            host: None,
            http2: false,
        }
    }

    #[test]
    fn rise_and_fall() {
        let p = Peer::new("edge", spec("127.0.0.1:1", false), vec![]);
        assert_eq!(p.record_check(Err("refused".into()), 2, 3), None);
        assert_eq!(p.record_check(Err("refused".into()), 2, 3), None);
        assert_eq!(p.record_check(Err("refused".into()), 2, 3), Some(false));
        assert!(!p.is_up());
        assert!(!p.is_probing());
        assert_eq!(p.record_check(Ok(()), 2, 3), None);
        assert!(p.is_probing());
        assert_eq!(p.record_check(Err("x".into()), 2, 3), None);
        assert!(!p.is_probing());
        assert_eq!(p.record_check(Ok(()), 2, 3), None);
        assert_eq!(p.record_check(Ok(()), 2, 3), Some(true));
        assert!(p.is_up());
    }

    #[test]
    fn authority_drops_default_ports() {
        assert_eq!(
            spec("edge.example.com:443", true).authority(),
            "edge.example.com"
        );
        assert_eq!(spec("10.0.0.1:80", false).authority(), "10.0.0.1");
        assert_eq!(spec("10.0.0.1:8080", false).authority(), "10.0.0.1:8080");
        assert_eq!(spec("[::1]:443", true).authority(), "[::1]");
        assert_eq!(spec("[::1]:443", true).tls_name(), "::1");
    }
}
