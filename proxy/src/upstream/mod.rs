//! Upstreams at run time: ordered tiers of servers, the balancer that picks one, passive and
//! active health, and the retry rules (`next_upstream`) the proxy applies between attempts.
//!
//! - [`peer`]: one server (its entry, resolved addresses, active-check state).
//! - [`tier`]: one tier's servers with their round-robin and passive state.
//! - [`pool`]: the tiers of one upstream with nginx's round-robin and `max_fails` bookkeeping;
//!   registered servers join and leave here without a reload.
//! - [`health`]: the background upkeep: active checks, DNS refresh, registration expiry.

mod balance;
pub mod health;
pub mod peer;
pub mod pool;
pub mod tier;

pub use peer::{Peer, ServerSpec};
pub use pool::{Balance, Outcome, Pool, ServerState, Tried};
pub use tier::{Passive, Slot, TierPool};

use health::HealthCheck;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The conditions of `next_upstream`, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream(u16);

impl NextUpstream {
    /// A connection error, a reset, or an invalid response head.
    pub const ERROR: NextUpstream = NextUpstream(1);
    /// A connect or read timeout.
    pub const TIMEOUT: NextUpstream = NextUpstream(1 << 1);
    const STATUSES: [(u16, u16); 7] = [
        (500, 1 << 2),
        (502, 1 << 3),
        (503, 1 << 4),
        (504, 1 << 5),
        (404, 1 << 6),
        (429, 1 << 7),
        (403, 1 << 8),
    ];

    /// The names accepted in YAML, in the order of the docs.
    pub const NAMES: [&'static str; 10] = [
        "error", "timeout", "http_500", "http_502", "http_503", "http_504", "http_404", "http_429",
        "http_403", "off",
    ];

    /// The flag for a YAML name (`off` is the empty set).
    pub fn from_name(name: &str) -> Option<NextUpstream> {
        match name {
            "error" => Some(Self::ERROR),
            "timeout" => Some(Self::TIMEOUT),
            "off" => Some(NextUpstream(0)),
            _ => {
                let code: u16 = name.strip_prefix("http_")?.parse().ok()?;
                Self::STATUSES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|&(_, bit)| NextUpstream(bit))
            }
        }
    }

    /// Adds `other`.
    pub fn insert(&mut self, other: NextUpstream) {
        self.0 |= other.0;
    }

    /// Is `other` listed?
    pub fn contains(self, other: NextUpstream) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    /// Is `status` listed (`http_NNN`)?
    pub fn has_status(self, status: u16) -> bool {
        Self::STATUSES
            .iter()
            .any(|&(c, bit)| c == status && self.0 & bit != 0)
    }
}

/// Does an answer with `status` count toward `max_fails` when `http_<status>` is listed?
/// nginx: 5xx and 429 do, 403 and 404 are retried but never count.
pub fn status_counts_as_failure(status: u16) -> bool {
    !matches!(status, 403 | 404)
}

/// The validated `upstreams.NAME` entry with its live server pool.
#[derive(Debug)]
pub struct Upstream {
    /// Its name under `upstreams:`.
    pub name: String,
    /// How each tier spreads requests.
    pub balance: Balance,
    /// `max_fails` / `fail_timeout`.
    pub passive: Passive,
    /// Which failures move a request to the next server.
    pub next_upstream: NextUpstream,
    /// Attempts per request; 0 = as many as there are servers.
    pub next_upstream_tries: u32,
    /// Time from the first attempt after which no new attempt starts; `None` = no limit.
    pub next_upstream_timeout: Option<Duration>,
    /// TCP connect (and TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// Longest wait for each read from the upstream (nginx `proxy_read_timeout`).
    pub read_timeout: Duration,
    /// Idle pooled connections kept per server; 0 closes each connection after its response.
    pub keepalive: usize,
    /// The largest response header block accepted from a server (status line and header
    /// lines, in bytes); a larger one is answered 502 and never cached.
    pub max_response_header: usize,
    /// Active checks, when configured.
    pub health_check: Option<HealthCheck>,
    /// How often host names in `addr` are resolved again.
    pub dns_refresh: Duration,
    /// `tls_ca`: the only CAs trusted for TLS servers; `None` = the system roots.
    pub tls_ca: Option<Arc<[WrappedX509]>>,
    /// Pingora's connection-pool group for TLS connections: pooled connections are shared
    /// only between peers with the same key, and a connection verified against `tls_ca` must
    /// not serve an upstream that trusts other CAs. 0 for the system roots.
    pub tls_group: u64,
    pool: Mutex<Pool>,
    retired: AtomicBool,
}

/// How long an idle pooled upstream connection is kept (nginx `keepalive_timeout` in an
/// `upstream` block): servers close idle connections too, and a connection closed by the
/// server while pooled costs a request a failed attempt.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Upstream {
    /// An upstream named `name` with `pool` and the other settings at their defaults; the
    /// config builder sets the rest.
    pub fn new(name: &str, pool: Pool) -> Upstream {
        Upstream {
            name: name.to_string(),
            balance: Balance::RoundRobin,
            passive: Passive {
                max_fails: 1,
                fail_timeout: 10,
            },
            next_upstream: {
                let mut n = NextUpstream::ERROR;
                n.insert(NextUpstream::TIMEOUT);
                n
            },
            next_upstream_tries: 0,
            next_upstream_timeout: None,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(60),
            keepalive: 64,
            max_response_header: 32 << 10,
            health_check: None,
            dns_refresh: Duration::from_secs(60),
            tls_ca: None,
            tls_group: 0,
            pool: Mutex::new(pool),
            retired: AtomicBool::new(false),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        peer::lock(&self.pool)
    }

    /// Picks the server for the next attempt of a request that already tried `tried`.
    /// `key` is what `balance: hash` hashes. `all_down`: the request found no usable server
    /// on its first pick, so down servers are tried in tier order. Returns the server and
    /// whether it was usable.
    pub fn select(
        &self,
        tried: &Tried,
        key: Option<&[u8]>,
        all_down: bool,
    ) -> Option<(Arc<Peer>, bool)> {
        self.pool().select(self.passive, tried, key, all_down)
    }

    /// Redirect mode's choice: a usable server picked like a proxied request's (without
    /// taking a down server's probe), else the last tier's first server.
    pub fn redirect_target(&self, key: Option<&[u8]>) -> Option<Arc<Peer>> {
        let mut pool = self.pool();
        pool.select_usable(self.passive, &Tried::default(), key, false)
            .or_else(|| pool.last_resort())
    }

    /// Is a server left for the next attempt (see [`Pool::has_untried`])?
    pub fn has_untried(&self, tried: &Tried, all_down: bool) -> bool {
        self.pool().has_untried(self.passive, tried, all_down)
    }

    /// Accounts one attempt on `peer` (passive health); logs when its state changes.
    pub fn report(&self, peer: &Peer, outcome: Outcome, why: &str) {
        let line = self.pool().report(peer.id, outcome, self.passive, why);
        if let Some(line) = line {
            match outcome {
                Outcome::Failure => log::warn!("upstream {}: {line}", self.name),
                Outcome::Success => log::info!("upstream {}: {line}", self.name),
            }
        }
    }

    /// Every server (configured and registered) with its state.
    pub fn servers(&self) -> Vec<ServerState> {
        self.pool().servers(self.passive)
    }

    /// Servers in all tiers now.
    pub fn server_count(&self) -> usize {
        self.pool().server_count()
    }

    /// Registers (or renews) `spec` in `tier` until `ttl` from now, reachable at `addrs`.
    /// `Ok(true)` when it is new. Used by the admin API's node registration.
    pub fn register(
        &self,
        tier: &str,
        spec: ServerSpec,
        addrs: Vec<SocketAddr>,
        ttl: Duration,
    ) -> Result<bool, String> {
        if addrs.is_empty() {
            return Err(format!("{} has no address", spec.addr));
        }
        let addr = spec.addr.clone();
        let expires = Instant::now()
            .checked_add(ttl)
            .ok_or_else(|| format!("ttl {}s is too long", ttl.as_secs()))?;
        let peer = Peer::new(tier, spec, addrs);
        peer.note_change(format!("registered for {}s", ttl.as_secs()));
        let new = self.pool().register(tier, peer, expires)?;
        if new {
            log::info!(
                "upstream {}: {addr} ({tier}) registered for {}s",
                self.name,
                ttl.as_secs()
            );
        }
        Ok(new)
    }

    /// Removes a registered server at once; `true` when it was registered.
    pub fn deregister(&self, addr: &str) -> bool {
        let removed = self.pool().deregister(addr);
        if removed {
            log::info!("upstream {}: {addr} deregistered", self.name);
        }
        removed
    }

    /// Drops registrations whose TTL ran out, logging each.
    pub fn expire_registrations(&self) {
        for peer in self.pool().expire(Instant::now()) {
            log::info!(
                "upstream {}: {} registration expired",
                self.name,
                peer.describe()
            );
        }
    }

    /// Takes over servers' state from the running upstream of the same name (reload).
    pub fn inherit(&self, old: &Upstream) {
        let old_pool = old.pool();
        self.pool().inherit(&old_pool);
    }

    /// Marks this upstream replaced by a reload: its background upkeep stops.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Was it replaced by a reload?
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Rebuilds hash rings after addresses changed (DNS refresh).
    fn addresses_changed(&self) {
        self.pool().rebuild_rings();
    }

    /// Every peer now (configured and registered), for the background checks.
    fn peers(&self) -> Vec<Arc<Peer>> {
        self.servers().into_iter().map(|s| s.peer).collect()
    }

    /// The Pingora peer for one attempt on `peer`: its current address, TLS verified against
    /// its name, the upstream's timeouts. `None` when it has no address.
    pub fn http_peer(&self, peer: &Peer) -> Option<HttpPeer> {
        let addr = peer.addr()?;
        let spec = &peer.spec;
        // A non-empty SNI is what makes Pingora verify the certificate.
        let sni = if spec.tls {
            spec.tls_name()
        } else {
            String::new()
        };
        let mut p = HttpPeer::new(addr, spec.tls, sni);
        p.options.connection_timeout = Some(self.connect_timeout);
        p.options.read_timeout = Some(self.read_timeout);
        p.options.write_timeout = Some(self.read_timeout);
        p.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        if spec.tls {
            p.options.ca = self.tls_ca.clone();
            p.group_key = self.tls_group;
            if spec.http2 {
                p.options.alpn = ALPN::H2H1;
            }
        }
        Some(p)
    }
}

/// `IP:port`, or `name:port` resolved now. Returns the name (if any), the port and the
/// addresses, IPv4 first.
pub fn resolve(addr: &str) -> Result<(Option<String>, u16, Vec<SocketAddr>), String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok((None, a.port(), vec![a]));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("`{addr}` is not a host:port address"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("`{addr}` is not a host:port address"));
    };
    if !is_host_name(host) {
        return Err(format!("`{addr}` is not a host:port address"));
    }
    match (host, port).to_socket_addrs() {
        Ok(found) => {
            let found = health::prefer_ipv4(found.collect());
            if found.is_empty() {
                Err(format!("cannot resolve `{host}`: no addresses"))
            } else {
                Ok((Some(host.to_ascii_lowercase()), port, found))
            }
        }
        Err(e) => Err(format!("cannot resolve `{host}`: {e}")),
    }
}

/// A plausible DNS name: letters, digits, `-`, `_` and dots between non-empty labels.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The entry of a server registered at run time: `IP:port` or `name:port` (resolved now, so
/// call it off the request path), plain HTTP unless `tls`, weight 1.
pub fn registration_spec(addr: &str, tls: bool) -> Result<(ServerSpec, Vec<SocketAddr>), String> {
    let (host_name, port, addrs) = resolve(addr)?;
    Ok((
        ServerSpec {
            addr: addr.to_string(),
            host_name,
            port,
            weight: 1,
            tls,
            sni: None,
            host: None,
            http2: false,
        },
        addrs,
    ))
}

/// Sets `weir_upstream_server_up` from the current servers (called when `/metrics` is read).
pub fn refresh_server_states(upstreams: &BTreeMap<String, Arc<Upstream>>) {
    let gauge = &crate::metrics::metrics().server_up;
    gauge.reset();
    for (name, upstream) in upstreams {
        for s in upstream.servers() {
            let up = s.peer.is_up() && !s.passively_down;
            let g: Result<prometheus::IntGauge, _> =
                gauge.get_metric_with_label_values(&[name, &s.peer.tier, &s.peer.spec.addr]);
            if let Ok(g) = g {
                g.set(i64::from(up));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered-style entry for an `IP:port` (no DNS).
    fn spec(addr: &str, tls: bool) -> (ServerSpec, Vec<SocketAddr>) {
        registration_spec(addr, tls).unwrap()
    }

    #[test]
    fn redirect_mode_uses_registered_servers_until_they_expire() {
        let (origin, addrs) = spec("127.0.0.1:9100", false);
        let origin = Arc::new(Peer::new("origin", origin, addrs));
        let pool = Pool::new(
            vec![
                TierPool::new("edge".into(), vec![]),
                TierPool::new("origin".into(), vec![Slot::new(origin, None)]),
            ],
            Balance::RoundRobin,
        );
        let u = Upstream::new("images", pool);
        assert_eq!(u.redirect_target(None).unwrap().spec.addr, "127.0.0.1:9100");
        let (node, addrs) = spec("10.0.0.7:443", true);
        assert_eq!(
            u.register("edge", node.clone(), addrs.clone(), Duration::from_secs(60)),
            Ok(true)
        );
        let target = u.redirect_target(None).unwrap();
        assert_eq!(target.spec.authority(), "10.0.0.7");
        assert!(target.spec.tls);
        // A heartbeat renews; a deregistration removes at once.
        assert_eq!(
            u.register("edge", node, addrs, Duration::from_secs(60)),
            Ok(false)
        );
        assert!(u.deregister("10.0.0.7:443"));
        assert_eq!(u.redirect_target(None).unwrap().spec.addr, "127.0.0.1:9100");
        // A TTL that ran out: skipped at once, removed by the upkeep.
        let (short, addrs) = spec("10.0.0.8:80", false);
        u.register("edge", short, addrs, Duration::ZERO).unwrap();
        assert_eq!(u.redirect_target(None).unwrap().spec.addr, "127.0.0.1:9100");
        u.expire_registrations();
        assert_eq!(u.server_count(), 1);
    }

    #[test]
    fn next_upstream_names() {
        let mut n = NextUpstream::default();
        for name in ["error", "http_502", "http_404"] {
            n.insert(NextUpstream::from_name(name).unwrap());
        }
        assert!(n.contains(NextUpstream::ERROR));
        assert!(!n.contains(NextUpstream::TIMEOUT));
        assert!(n.has_status(502) && n.has_status(404) && !n.has_status(503));
        assert!(NextUpstream::from_name("http_418").is_none());
        assert_eq!(
            NextUpstream::from_name("off"),
            Some(NextUpstream::default())
        );
        assert!(status_counts_as_failure(502) && !status_counts_as_failure(404));
    }
}
