//! The background upkeep of upstreams, never on the request path: active health checks
//! (HTTP GET or TCP connect, `rise`/`fall`), DNS refresh of host names, and the expiry of
//! registered servers.
//!
//! One task per upstream runs on a small runtime of its own (one thread), so checks keep
//! their schedule however busy the proxy threads are. A reload retires the old upstream's
//! task and starts the new one; servers configured the same way keep their state.

use super::peer::Peer;
use super::Upstream;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::ErrorType;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// What an active check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path`; the status must be in `expect_status` (default any 2xx or 3xx).
    Http {
        /// Request path.
        path: String,
        /// Accepted statuses; empty = 200..=399.
        expect_status: Vec<u16>,
    },
    /// A TCP connect.
    Tcp,
}

/// `upstreams.NAME.health_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP or TCP.
    pub kind: CheckKind,
    /// Time between rounds.
    pub interval: Duration,
    /// Longest a check may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server back.
    pub rise: u32,
    /// Consecutive failures that take a server down.
    pub fall: u32,
}

/// The runtime the upkeep tasks run on, started on first use.
fn runtime() -> Option<&'static Handle> {
    static HANDLE: OnceLock<Option<Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| log::error!("cannot start the upstream checks runtime: {e}"))
                .ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("weir-upstreams".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| log::error!("cannot start the upstream checks thread: {e}"))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Starts the upkeep of `upstream` (checks, DNS refresh, registration expiry). It stops by
/// itself once the upstream is retired or dropped.
pub fn start(upstream: &Arc<Upstream>) {
    let Some(rt) = runtime() else { return };
    let weak = Arc::downgrade(upstream);
    rt.spawn(upkeep(weak));
}

/// Never sleeps longer than this, so retirement and expiry are noticed within a second.
const TICK: Duration = Duration::from_secs(1);

async fn upkeep(upstream: Weak<Upstream>) {
    let connector = Connector::new(None);
    let start = Instant::now();
    let mut next_check = start;
    let mut next_dns = start;
    loop {
        let Some(u) = upstream.upgrade() else { return };
        if u.is_retired() {
            return;
        }
        let now = Instant::now();
        if let Some(hc) = &u.health_check {
            if now >= next_check {
                next_check = now + hc.interval;
                check_all(&u, hc, &connector).await;
            }
        }
        if now >= next_dns {
            next_dns = now + u.dns_refresh;
            // The first round is the load's own resolution; only later ones ask again.
            if now > start {
                refresh_dns(&u).await;
            }
        }
        u.expire_registrations();
        let mut wake = Instant::now() + TICK;
        if u.health_check.is_some() {
            wake = wake.min(next_check);
        }
        wake = wake.min(next_dns);
        drop(u);
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// One round: every server checked concurrently, each bounded by `timeout`.
async fn check_all(u: &Upstream, hc: &HealthCheck, connector: &Connector) {
    let peers = u.peers();
    let checks = peers.iter().map(|peer| async move {
        let result = match tokio::time::timeout(hc.timeout, check(u, peer, hc, connector)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", hc.timeout)),
        };
        (peer, result)
    });
    for (peer, result) in futures_util::future::join_all(checks).await {
        match peer.record_check(result, hc.rise, hc.fall) {
            Some(false) => {
                let why = format!("{} failed checks ({})", hc.fall, peer.last_check_error());
                log::warn!("upstream {}: {} down: {why}", u.name, peer.describe());
                peer.note_change(format!("down: {why}"));
            }
            Some(true) => {
                let why = format!("after {} good checks", hc.rise);
                log::info!("upstream {}: {} up {why}", u.name, peer.describe());
                peer.note_change(format!("up {why}"));
            }
            None => {}
        }
    }
}

/// One check of one server.
async fn check(
    u: &Upstream,
    peer: &Peer,
    hc: &HealthCheck,
    connector: &Connector,
) -> Result<(), String> {
    let addr = peer.addr().ok_or("no address")?;
    match &hc.kind {
        CheckKind::Tcp => tokio::net::TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| io_reason(&e)),
        CheckKind::Http {
            path,
            expect_status,
        } => {
            let mut p = u.http_peer(peer).ok_or("no address")?;
            p.options.connection_timeout = Some(hc.timeout);
            p.options.read_timeout = Some(hc.timeout);
            p.options.write_timeout = Some(hc.timeout);
            let (mut session, _) = connector
                .get_http_session(&p)
                .await
                .map_err(|e| error_reason(&e))?;
            let mut req = RequestHeader::build("GET", path.as_bytes(), Some(3))
                .map_err(|e| error_reason(&e))?;
            let host = peer
                .spec
                .host
                .clone()
                .unwrap_or_else(|| host_of(peer, addr));
            req.insert_header("Host", host)
                .map_err(|e| error_reason(&e))?;
            req.insert_header("User-Agent", "weir-health-check")
                .map_err(|e| error_reason(&e))?;
            req.insert_header("Connection", "close")
                .map_err(|e| error_reason(&e))?;
            session
                .write_request_header(Box::new(req))
                .await
                .map_err(|e| error_reason(&e))?;
            session
                .finish_request_body()
                .await
                .map_err(|e| error_reason(&e))?;
            session
                .read_response_header()
                .await
                .map_err(|e| error_reason(&e))?;
            let status = session
                .response_header()
                .map(|r| r.status.as_u16())
                .ok_or("no response")?;
            let ok = if expect_status.is_empty() {
                (200..400).contains(&status)
            } else {
                expect_status.contains(&status)
            };
            if ok {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    }
}

/// The Host header of a check: the name in `addr`, else the address.
fn host_of(peer: &Peer, addr: SocketAddr) -> String {
    match &peer.spec.host_name {
        Some(name) => format!("{name}:{}", peer.spec.port),
        None => addr.to_string(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// A short reason for a log line from a Pingora error.
pub fn error_reason(e: &pingora::Error) -> String {
    match e.etype() {
        ErrorType::ConnectRefused => "connection refused".into(),
        ErrorType::ConnectTimedout => "connect timed out".into(),
        ErrorType::ReadTimedout => "read timed out".into(),
        ErrorType::WriteTimedout => "write timed out".into(),
        ErrorType::ConnectionClosed => "connection closed".into(),
        ErrorType::HTTPStatus(s) => format!("status {s}"),
        // Pingora puts the TLS library's reason (bad certificate, wrong name) in the context;
        // the root cause is only a wrapper with the local address.
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
            match &e.context {
                Some(context) => format!("TLS: {}", context.as_str()),
                None => format!("TLS: {}", e.root_cause()),
            }
        }
        other => match e.root_cause().to_string() {
            cause if cause.is_empty() => other.as_str().to_string(),
            cause => format!("{}: {cause}", other.as_str()),
        },
    }
}

/// Resolves every host name of `u` again; a server keeps its addresses when the lookup fails.
async fn refresh_dns(u: &Upstream) {
    let mut changed = false;
    for peer in u.peers() {
        let Some(name) = &peer.spec.host_name else {
            continue;
        };
        match tokio::net::lookup_host((name.as_str(), peer.spec.port)).await {
            Ok(addrs) => {
                let addrs = prefer_ipv4(addrs.collect());
                if addrs.is_empty() {
                    log::warn!(
                        "upstream {}: {name} resolved to nothing; keeping its addresses",
                        u.name
                    );
                } else if peer.set_addrs(addrs.clone()) {
                    log::info!("upstream {}: {name} now resolves to {addrs:?}", u.name);
                    changed = true;
                }
            }
            Err(e) => log::warn!(
                "upstream {}: cannot resolve {name} ({e}); keeping {:?}",
                u.name,
                peer.addrs()
            ),
        }
    }
    if changed {
        u.addresses_changed();
    }
}

/// IPv4 addresses first (stable order otherwise): a name is one server, and connections go to
/// its first address; `localhost` must not land on `::1` when the server listens on IPv4.
pub fn prefer_ipv4(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::super::{Balance, Pool, ServerSpec, Slot, TierPool};
    use super::*;

    #[tokio::test]
    async fn dns_refresh_replaces_the_addresses_of_a_name() {
        let spec = ServerSpec {
            addr: "localhost:8081".into(),
            host_name: Some("localhost".into()),
            port: 8081,
            weight: 1,
            tls: false,
            sni: None,
            host: None,
            http2: false,
        };
        // As if the name had pointed elsewhere at load.
        let stale: SocketAddr = "192.0.2.1:8081".parse().unwrap();
        let peer = Arc::new(Peer::new("edge", spec, vec![stale]));
        let pool = Pool::new(
            vec![TierPool::new(
                "edge".into(),
                vec![Slot::new(peer.clone(), None)],
            )],
            Balance::Hash,
        );
        let u = Upstream::new("images", pool);
        refresh_dns(&u).await;
        assert_eq!(peer.addr(), Some("127.0.0.1:8081".parse().unwrap()));
    }

    #[test]
    fn ipv4_first() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(prefer_ipv4(vec![v6, v4, v6]), vec![v4, v6]);
    }
}
