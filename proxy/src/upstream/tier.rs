//! One tier of an upstream: its servers ([`Slot`]) with their round-robin weights and passive
//! failure counts, and for `hash` its ketama ring. The pool (`super::pool`) changes them; the
//! balancers (`super::balance`) read and pick among them.

use super::peer::Peer;
use pingora_ketama::Continuum;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Passive accounting settings (`max_fails`, `fail_timeout` in whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    /// Failures within `fail_timeout` that mark a server down; 0 disables accounting.
    pub max_fails: u32,
    /// Seconds.
    pub fail_timeout: u64,
}

/// One server's place in a tier with its round-robin and passive state.
#[derive(Debug)]
pub struct Slot {
    /// The server.
    pub peer: Arc<Peer>,
    pub(super) current: i64,
    pub(super) effective: i64,
    pub(super) fails: u32,
    pub(super) accessed: u64,
    pub(super) checked: u64,
    /// Registered servers leave at this instant; configured ones never.
    pub expires: Option<Instant>,
}

impl Slot {
    /// A configured (`expires: None`) or registered server.
    pub fn new(peer: Arc<Peer>, expires: Option<Instant>) -> Slot {
        Slot {
            effective: i64::from(peer.spec.weight),
            peer,
            current: 0,
            fails: 0,
            accessed: 0,
            checked: 0,
            expires,
        }
    }

    pub(super) fn weight(&self) -> i64 {
        i64::from(self.peer.spec.weight)
    }

    /// Down by passive accounting at `now`?
    pub(super) fn passively_down(&self, passive: Passive, now: u64) -> bool {
        passive.max_fails > 0
            && self.fails >= passive.max_fails
            && now.saturating_sub(self.checked) <= passive.fail_timeout
    }

    pub(super) fn expired(&self, at: Instant) -> bool {
        self.expires.is_some_and(|e| e <= at)
    }
}

/// A tier's servers and, for `hash`, its ring.
pub struct TierPool {
    /// The tier's name.
    pub name: String,
    /// Configured servers first, then registered ones.
    pub slots: Vec<Slot>,
    pub(super) ring: Option<(Continuum, Vec<SocketAddr>)>,
}

impl std::fmt::Debug for TierPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierPool")
            .field("name", &self.name)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl TierPool {
    /// A tier of `slots`.
    pub fn new(name: String, slots: Vec<Slot>) -> TierPool {
        TierPool {
            name,
            slots,
            ring: None,
        }
    }
}
