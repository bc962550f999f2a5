//! State shared by every request, the control threads and the admin API: the running config
//! (swapped whole on reload), the access log, the count of requests in flight (a graceful
//! stop exits when it reaches zero) and the daily traffic.

use crate::access_log::AccessLog;
use crate::config::Config;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the proxy and the control threads share.
pub struct Shared {
    /// The running config; each request takes a snapshot when it starts.
    pub config: ArcSwap<Config>,
    /// The open access log.
    pub access_log: ArcSwap<AccessLog>,
    /// Requests between their first phase and their last.
    pub inflight: Inflight,
    /// Daily traffic (kept in the state file).
    pub traffic: crate::traffic::Traffic,
    /// When the process started.
    pub started: std::time::Instant,
}

/// A counter of requests in flight.
#[derive(Default)]
pub struct Inflight(Arc<AtomicUsize>);

impl Inflight {
    /// Counts a request until the guard drops.
    pub fn enter(&self) -> InflightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.0.clone())
    }

    /// Requests in flight now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Decrements the in-flight count when the request's state is dropped.
pub struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
