//! Upstreams at run time: ordered tiers of servers and the balancer that picks one.
//!
//! Today an upstream has one tier, balanced by nginx's smooth weighted round robin. The shape
//! is already tiers of servers so health, failover and registered servers fit without
//! changing the proxy core.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// One server of a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative share of requests (nginx `weight`, default 1).
    pub weight: u32,
}

/// A named group of servers; a later tier is used only when no earlier one can serve.
#[derive(Debug)]
pub struct Tier {
    /// The tier's name (`edge`, `origin`, `backup` …).
    pub name: String,
    /// Its servers, in config order.
    pub servers: Vec<UpstreamServer>,
    wrr: SmoothWrr,
}

impl Tier {
    /// A tier of `servers`.
    pub fn new(name: String, servers: Vec<UpstreamServer>) -> Self {
        let wrr = SmoothWrr::new(servers.iter().map(|s| s.weight).collect());
        Tier { name, servers, wrr }
    }
}

/// The validated `upstreams.NAME` entry.
#[derive(Debug)]
pub struct Upstream {
    /// Its name under `upstreams:`.
    pub name: String,
    /// Tiers in order.
    pub tiers: Vec<Tier>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for each read from the upstream (nginx `proxy_read_timeout`).
    pub read_timeout: Duration,
    /// Idle pooled connections kept per server; 0 closes each connection after its response.
    pub keepalive: usize,
}

impl Upstream {
    /// Picks the server for the next request: the first tier that has servers, by smooth
    /// weighted round robin. `None` when no tier has a server.
    pub fn pick(&self) -> Option<&UpstreamServer> {
        let tier = self.tiers.iter().find(|t| !t.servers.is_empty())?;
        Some(&tier.servers[tier.wrr.next()])
    }
}

/// nginx's smooth weighted round robin: each pick adds every weight to its server's
/// `current`, takes the highest, and subtracts the total from it. Weights 5,1,1 give
/// `A A B A C A A`.
#[derive(Debug)]
struct SmoothWrr {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

impl SmoothWrr {
    fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        SmoothWrr {
            total: weights.iter().sum(),
            current: Mutex::new(vec![0; weights.len()]),
            weights,
        }
    }

    /// The index of the next server. Lock-free for a single server.
    fn next(&self) -> usize {
        if self.weights.len() <= 1 {
            return 0;
        }
        // A poisoned lock only means another thread panicked mid-pick; the counters are
        // still usable integers.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut best = 0;
        for (i, c) in current.iter_mut().enumerate() {
            *c += self.weights[i];
        }
        for i in 1..current.len() {
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= self.total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_wrr_matches_nginx() {
        let w = SmoothWrr::new(vec![5, 1, 1]);
        let picks: String = (0..14).map(|_| ["A", "B", "C"][w.next()]).collect();
        assert_eq!(picks, "AABACAAAABACAA");
    }

    #[test]
    fn equal_weights_alternate() {
        let w = SmoothWrr::new(vec![1, 1]);
        let picks: Vec<_> = (0..4).map(|_| w.next()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }
}
