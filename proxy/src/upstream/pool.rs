//! The servers of one upstream and nginx's round-robin bookkeeping: which server a request
//! gets, and what a failure costs it.
//!
//! This is `ngx_http_upstream_round_robin.c` with tiers instead of one `backup` group:
//! - smooth weighted round robin over `effective_weight`, which drops by `weight / max_fails`
//!   on each failure and climbs back by one per pick (the slow ramp-up);
//! - `max_fails` failures (counted while `checked` is recent) mark a server down for
//!   `fail_timeout`; after that one request probes it, and a success clears the count;
//! - time in whole seconds, so `fail_timeout: 2s` lasts 2–3 s as in nginx;
//! - an upstream with a single server is never marked down.
//!
//! Everything sits behind one mutex per upstream (nginx's per-upstream lock): a pick and a
//! report are a few integer operations each.

use super::balance::{pick_hash, pick_random, pick_wrr};
use super::peer::Peer;
use super::tier::{Passive, Slot, TierPool};
use pingora_ketama::{Bucket, Continuum};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// How a tier spreads requests over its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// nginx's smooth weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Consistent hashing (ketama) of the request key, so each server holds its share.
    Hash,
}

/// What became of one attempt on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (a status that does not count as a failure).
    Success,
    /// An error, a timeout, or a status that counts (`http_5xx`/`http_429` when listed).
    Failure,
}

/// Seconds since the process started: nginx's `ngx_time()` granularity, monotonic.
pub fn now_secs() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// The servers a request has already tried (ids), inline for the usual few.
#[derive(Debug, Default)]
pub struct Tried {
    inline: [u64; 4],
    len: usize,
    more: Vec<u64>,
}

impl Tried {
    /// Remembers `id`.
    pub fn push(&mut self, id: u64) {
        if self.len < self.inline.len() {
            self.inline[self.len] = id;
            self.len += 1;
        } else {
            self.more.push(id);
        }
    }

    /// Was `id` tried?
    pub fn contains(&self, id: u64) -> bool {
        self.inline[..self.len].contains(&id) || self.more.contains(&id)
    }

    /// How many were tried.
    pub fn count(&self) -> usize {
        self.len + self.more.len()
    }
}

/// The state of one server for `/status` and tests.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// The server.
    pub peer: Arc<Peer>,
    /// Down by passive accounting now.
    pub passively_down: bool,
    /// For registered servers: when the registration ends.
    pub expires: Option<Instant>,
}

/// Every tier of one upstream.
#[derive(Debug)]
pub struct Pool {
    /// Tiers in order.
    pub tiers: Vec<TierPool>,
    balance: Balance,
}

/// Requests with nothing to hash (no key) on a `hash` upstream use this.
const NO_KEY: &[u8] = b"";

impl Pool {
    /// A pool of `tiers`, balanced by `balance`.
    pub fn new(tiers: Vec<TierPool>, balance: Balance) -> Pool {
        let mut pool = Pool { tiers, balance };
        pool.rebuild_rings();
        pool
    }

    /// Servers in all tiers (configured and registered).
    pub fn server_count(&self) -> usize {
        self.tiers.iter().map(|t| t.slots.len()).sum()
    }

    /// Rebuilds the hash rings after the membership or an address changed.
    pub fn rebuild_rings(&mut self) {
        if self.balance != Balance::Hash {
            return;
        }
        for tier in &mut self.tiers {
            let addrs: Vec<SocketAddr> = tier.slots.iter().filter_map(|s| s.peer.addr()).collect();
            let buckets: Vec<Bucket> = tier
                .slots
                .iter()
                .filter_map(|s| Some(Bucket::new(s.peer.addr()?, s.peer.spec.weight)))
                .collect();
            tier.ring = Some((Continuum::new(&buckets), addrs));
        }
    }

    /// Is `slot` a candidate for a request that tried `tried`?
    fn usable(slot: &Slot, passive: Passive, now: u64, at: Instant, single: bool) -> bool {
        slot.peer.is_up() && !slot.expired(at) && (single || !slot.passively_down(passive, now))
    }

    /// Picks the server for the next attempt of a request that tried `tried`: from the first
    /// tier with a usable server not tried yet, by the balancer. With `all_down` (the request
    /// found no usable server at all on its first pick), the first untried server in tier
    /// order instead: weir tries down servers rather than failing without trying. Returns
    /// the server and whether it was usable.
    pub fn select(
        &mut self,
        passive: Passive,
        tried: &Tried,
        key: Option<&[u8]>,
        all_down: bool,
    ) -> Option<(Arc<Peer>, bool)> {
        if !all_down {
            if let Some(peer) = self.select_usable(passive, tried, key, true) {
                return Some((peer, true));
            }
            if tried.count() > 0 {
                return None;
            }
        }
        let at = Instant::now();
        self.tiers
            .iter()
            .flat_map(|t| t.slots.iter())
            .find(|s| !tried.contains(s.peer.id) && !s.expired(at))
            .map(|s| (s.peer.clone(), false))
    }

    /// A usable server not in `tried`, by the balancer. `probe`: a pick after `fail_timeout`
    /// is the one probe of a passively down server (nginx), so other requests skip it until
    /// it is answered; redirect mode, which never learns the answer, picks without probing.
    pub fn select_usable(
        &mut self,
        passive: Passive,
        tried: &Tried,
        key: Option<&[u8]>,
        probe: bool,
    ) -> Option<Arc<Peer>> {
        let now = now_secs();
        let at = Instant::now();
        let single = self.server_count() == 1;
        let balance = self.balance;
        for tier in &mut self.tiers {
            let ok =
                |s: &Slot| !tried.contains(s.peer.id) && Pool::usable(s, passive, now, at, single);
            let picked = match balance {
                Balance::RoundRobin => pick_wrr(&mut tier.slots, ok),
                Balance::Random => pick_random(&tier.slots, ok),
                Balance::Hash => pick_hash(tier, key.unwrap_or(NO_KEY), ok),
            };
            if let Some(i) = picked {
                let slot = &mut tier.slots[i];
                if probe && now.saturating_sub(slot.checked) > passive.fail_timeout {
                    slot.checked = now;
                }
                return Some(slot.peer.clone());
            }
        }
        None
    }

    /// Is a server not in `tried` left for the next attempt: a usable one, or with
    /// `all_down` any one?
    pub fn has_untried(&self, passive: Passive, tried: &Tried, all_down: bool) -> bool {
        let now = now_secs();
        let at = Instant::now();
        let single = self.server_count() == 1;
        self.tiers.iter().flat_map(|t| t.slots.iter()).any(|s| {
            !tried.contains(s.peer.id)
                && !s.expired(at)
                && (all_down || Pool::usable(s, passive, now, at, single))
        })
    }

    /// Accounts one attempt's outcome on server `id`. Returns a log line when the server
    /// changes state.
    pub fn report(
        &mut self,
        id: u64,
        outcome: Outcome,
        passive: Passive,
        why: &str,
    ) -> Option<String> {
        if self.server_count() == 1 || passive.max_fails == 0 {
            return None; // nginx: a single server is never marked down
        }
        let now = now_secs();
        let slot = self
            .tiers
            .iter_mut()
            .flat_map(|t| t.slots.iter_mut())
            .find(|s| s.peer.id == id)?;
        match outcome {
            Outcome::Success => {
                if slot.accessed < slot.checked {
                    let was_down = slot.fails >= passive.max_fails;
                    slot.fails = 0;
                    if was_down {
                        let reason = "a request succeeded after fail_timeout".to_string();
                        slot.peer.note_change(format!("up: {reason}"));
                        return Some(format!("{} up: {reason}", slot.peer.describe()));
                    }
                }
                None
            }
            Outcome::Failure => {
                // A failure more than fail_timeout after the last one, while down, is the
                // failed probe: the server stays out for another fail_timeout.
                let probe_failed = slot.fails >= passive.max_fails
                    && now.saturating_sub(slot.accessed) > passive.fail_timeout;
                slot.fails += 1;
                slot.accessed = now;
                slot.checked = now;
                slot.effective -= slot.weight() / i64::from(passive.max_fails);
                slot.effective = slot.effective.max(0);
                if probe_failed {
                    let reason = format!("the probe after fail_timeout failed ({why})");
                    slot.peer
                        .note_change(format!("down for {}s: {reason}", passive.fail_timeout));
                    return Some(format!(
                        "{} down for {}s: {reason}",
                        slot.peer.describe(),
                        passive.fail_timeout
                    ));
                }
                if slot.fails == passive.max_fails {
                    let reason = format!(
                        "{} failure(s) within {}s ({why})",
                        slot.fails, passive.fail_timeout
                    );
                    slot.peer
                        .note_change(format!("down for {}s: {reason}", passive.fail_timeout));
                    return Some(format!(
                        "{} down for {}s: {reason}",
                        slot.peer.describe(),
                        passive.fail_timeout
                    ));
                }
                None
            }
        }
    }

    /// Every server with its state.
    pub fn servers(&self, passive: Passive) -> Vec<ServerState> {
        let now = now_secs();
        let single = self.server_count() == 1;
        self.tiers
            .iter()
            .flat_map(|t| t.slots.iter())
            .map(|s| ServerState {
                peer: s.peer.clone(),
                passively_down: !single && s.passively_down(passive, now),
                expires: s.expires,
            })
            .collect()
    }

    /// The last tier's first server (redirect mode's answer when nothing is usable).
    pub fn last_resort(&self) -> Option<Arc<Peer>> {
        let at = Instant::now();
        self.tiers
            .iter()
            .rev()
            .find_map(|t| t.slots.iter().find(|s| !s.expired(at)))
            .map(|s| s.peer.clone())
    }

    /// Adds or renews a registered server in `tier`. `Ok(true)` when it is new.
    pub fn register(&mut self, tier: &str, peer: Peer, expires: Instant) -> Result<bool, String> {
        if !self.tiers.iter().any(|t| t.name == tier) {
            return Err(format!("no tier `{tier}`"));
        }
        let elsewhere = self
            .tiers
            .iter()
            .find(|t| t.name != tier && t.slots.iter().any(|s| s.peer.spec.addr == peer.spec.addr));
        if let Some(other) = elsewhere {
            return Err(format!(
                "{} is already a server of tier `{}`",
                peer.spec.addr, other.name
            ));
        }
        let Some(t) = self.tiers.iter_mut().find(|t| t.name == tier) else {
            return Err(format!("no tier `{tier}`"));
        };
        if let Some(slot) = t
            .slots
            .iter_mut()
            .find(|s| s.peer.spec.addr == peer.spec.addr)
        {
            return match slot.expires {
                None => Err(format!(
                    "{} is a configured server of tier `{tier}`",
                    peer.spec.addr
                )),
                Some(_) => {
                    slot.expires = Some(expires);
                    Ok(false)
                }
            };
        }
        t.slots.push(Slot::new(Arc::new(peer), Some(expires)));
        self.rebuild_rings();
        Ok(true)
    }

    /// Removes a registered server at once; `true` when it was there.
    pub fn deregister(&mut self, addr: &str) -> bool {
        let before = self.server_count();
        for t in &mut self.tiers {
            t.slots
                .retain(|s| s.expires.is_none() || s.peer.spec.addr != addr);
        }
        let removed = self.server_count() != before;
        if removed {
            self.rebuild_rings();
        }
        removed
    }

    /// Removes registrations whose TTL ran out by `at`; returns them.
    pub fn expire(&mut self, at: Instant) -> Vec<Arc<Peer>> {
        let mut gone = Vec::new();
        for t in &mut self.tiers {
            t.slots.retain(|s| {
                let keep = !s.expired(at);
                if !keep {
                    gone.push(s.peer.clone());
                }
                keep
            });
        }
        if !gone.is_empty() {
            self.rebuild_rings();
        }
        gone
    }

    /// Takes over the state of the running pool on a reload: a server that is still
    /// configured the same way keeps its health and passive counts, and registered servers
    /// stay in their tier (when the tier still exists).
    pub fn inherit(&mut self, old: &Pool) {
        let at = Instant::now();
        for tier in &mut self.tiers {
            let Some(old_tier) = old.tiers.iter().find(|t| t.name == tier.name) else {
                continue;
            };
            for slot in &mut tier.slots {
                // The same entry resolving to the same addresses keeps its state; the
                // running peer is never changed here (the reload may still be rejected).
                let Some(o) = old_tier.slots.iter().find(|o| {
                    o.expires.is_none()
                        && o.peer.spec == slot.peer.spec
                        && o.peer.addrs() == slot.peer.addrs()
                }) else {
                    continue;
                };
                slot.peer = o.peer.clone();
                slot.current = o.current;
                slot.effective = o.effective;
                slot.fails = o.fails;
                slot.accessed = o.accessed;
                slot.checked = o.checked;
            }
            for o in old_tier
                .slots
                .iter()
                .filter(|o| o.expires.is_some() && !o.expired(at))
            {
                if tier
                    .slots
                    .iter()
                    .all(|s| s.peer.spec.addr != o.peer.spec.addr)
                {
                    let mut slot = Slot::new(o.peer.clone(), o.expires);
                    slot.fails = o.fails;
                    slot.accessed = o.accessed;
                    slot.checked = o.checked;
                    tier.slots.push(slot);
                }
            }
        }
        self.rebuild_rings();
    }
}

#[cfg(test)]
mod tests {
    use super::super::peer::ServerSpec;
    use super::*;

    fn peer(tier: &str, port: u16, weight: u32) -> Arc<Peer> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Arc::new(Peer::new(
            tier,
            ServerSpec {
                addr: addr.to_string(),
                host_name: None,
                port,
                weight,
                tls: false,
                sni: None,
                host: None,
                http2: false,
            },
            vec![addr],
        ))
    }

    fn pool(tiers: &[(&str, &[(u16, u32)])], balance: Balance) -> Pool {
        Pool::new(
            tiers
                .iter()
                .map(|(name, servers)| {
                    TierPool::new(
                        name.to_string(),
                        servers
                            .iter()
                            .map(|&(p, w)| Slot::new(peer(name, p, w), None))
                            .collect(),
                    )
                })
                .collect(),
            balance,
        )
    }

    const PASSIVE: Passive = Passive {
        max_fails: 1,
        fail_timeout: 10,
    };

    fn port(p: &Arc<Peer>) -> u16 {
        p.spec.port
    }

    #[test]
    fn smooth_wrr_matches_nginx() {
        let mut p = pool(&[("a", &[(1, 5), (2, 1), (3, 1)])], Balance::RoundRobin);
        let picks: String = (0..14)
            .map(|_| {
                ["A", "B", "C"][port(&p.select(PASSIVE, &Tried::default(), None, false).unwrap().0)
                    as usize
                    - 1]
            })
            .collect();
        assert_eq!(picks, "AABACAAAABACAA");
    }

    #[test]
    fn failure_marks_down_and_next_tier_serves() {
        let mut p = pool(
            &[("edge", &[(1, 1), (2, 1)]), ("origin", &[(3, 1)])],
            Balance::RoundRobin,
        );
        let a = p.select(PASSIVE, &Tried::default(), None, false).unwrap().0;
        assert_eq!(port(&a), 1);
        assert!(p
            .report(a.id, Outcome::Failure, PASSIVE, "refused")
            .unwrap()
            .contains("down for 10s"));
        // 1 is skipped while down; 2 serves; with 2 tried the origin tier is next.
        let b = p.select(PASSIVE, &Tried::default(), None, false).unwrap().0;
        assert_eq!(port(&b), 2);
        let mut tried = Tried::default();
        tried.push(b.id);
        assert_eq!(port(&p.select(PASSIVE, &tried, None, false).unwrap().0), 3);
        // The usable servers are used up; the down one is not tried by this request...
        let origin = p.tiers[1].slots[0].peer.id;
        tried.push(origin);
        assert!(p.select(PASSIVE, &tried, None, false).is_none());
        assert!(!p.has_untried(PASSIVE, &tried, false));
        // ...only by a request that found every server down.
        assert!(p.has_untried(PASSIVE, &tried, true));
        assert_eq!(port(&p.select(PASSIVE, &tried, None, true).unwrap().0), 1);
        tried.push(a.id);
        assert!(p.select(PASSIVE, &tried, None, true).is_none());
        assert!(!p.has_untried(PASSIVE, &tried, true));
    }

    #[test]
    fn single_server_is_never_marked_down() {
        let mut p = pool(&[("only", &[(1, 1)])], Balance::RoundRobin);
        let a = p.select(PASSIVE, &Tried::default(), None, false).unwrap().0;
        assert!(p
            .report(a.id, Outcome::Failure, PASSIVE, "refused")
            .is_none());
        assert!(!p.servers(PASSIVE)[0].passively_down);
    }

    #[test]
    fn failed_server_ramps_back_up() {
        // weights 2,2 with max_fails 2: one failure halves A's effective weight.
        let passive = Passive {
            max_fails: 2,
            fail_timeout: 10,
        };
        let mut p = pool(&[("a", &[(1, 2), (2, 2)])], Balance::RoundRobin);
        let a = p.select(passive, &Tried::default(), None, false).unwrap().0;
        p.report(a.id, Outcome::Failure, passive, "x");
        let picks: Vec<u16> = (0..6)
            .map(|_| port(&p.select(passive, &Tried::default(), None, false).unwrap().0))
            .collect();
        assert_eq!(picks.iter().filter(|&&x| x == 2).count(), 4, "{picks:?}");
    }

    #[test]
    fn hash_keeps_keys_and_skips_down_servers() {
        let mut p = pool(&[("edge", &[(1, 1), (2, 1), (3, 1)])], Balance::Hash);
        let first = p
            .select(PASSIVE, &Tried::default(), Some(b"/img/1.jpg"), false)
            .unwrap()
            .0;
        for _ in 0..5 {
            assert_eq!(
                p.select(PASSIVE, &Tried::default(), Some(b"/img/1.jpg"), false)
                    .unwrap()
                    .0
                    .id,
                first.id
            );
        }
        let spread: std::collections::BTreeSet<u16> = (0..100)
            .map(|i| {
                port(
                    &p.select(
                        PASSIVE,
                        &Tried::default(),
                        Some(format!("/img/{i}").as_bytes()),
                        false,
                    )
                    .unwrap()
                    .0,
                )
            })
            .collect();
        assert_eq!(spread.len(), 3);
        let mut tried = Tried::default();
        tried.push(first.id);
        let other = p
            .select(PASSIVE, &tried, Some(b"/img/1.jpg"), false)
            .unwrap()
            .0;
        assert_ne!(other.id, first.id);
    }

    #[test]
    fn registration_renews_expires_and_survives_inherit() {
        let mut p = pool(&[("edge", &[]), ("origin", &[(3, 1)])], Balance::RoundRobin);
        let later = Instant::now() + std::time::Duration::from_secs(60);
        let node = Arc::try_unwrap(peer("edge", 7, 1)).unwrap();
        assert_eq!(p.register("edge", node, later), Ok(true));
        assert_eq!(
            port(&p.select(PASSIVE, &Tried::default(), None, false).unwrap().0),
            7
        );
        let again = Arc::try_unwrap(peer("edge", 7, 1)).unwrap();
        assert_eq!(p.register("edge", again, later), Ok(false));
        let configured = Arc::try_unwrap(peer("origin", 3, 1)).unwrap();
        assert!(p.register("origin", configured, later).is_err());
        let nowhere = Arc::try_unwrap(peer("x", 8, 1)).unwrap();
        assert!(p.register("x", nowhere, later).is_err());

        let mut reloaded = pool(&[("edge", &[]), ("origin", &[(3, 1)])], Balance::RoundRobin);
        reloaded.inherit(&p);
        assert_eq!(reloaded.server_count(), 2);
        assert!(
            reloaded
                .expire(later + std::time::Duration::from_secs(1))
                .len()
                == 1
        );
        assert_eq!(
            port(
                &reloaded
                    .select(PASSIVE, &Tried::default(), None, false)
                    .unwrap()
                    .0
            ),
            3
        );
        assert!(
            !p.deregister("127.0.0.1:3"),
            "configured servers are not deregistered"
        );
        assert!(p.deregister("127.0.0.1:7"));
    }
}
