//! A `limits:` zone: the buckets of every key, shared by every route and thread that names
//! the zone, bounded by `capacity` keys (least recently used evicted), and kept across
//! reloads while its definition does not change. A zone with a Redis `store` decides in
//! Redis (shared by a fleet, see [`crate::limit_store`]) and on its local buckets only while
//! Redis is slow or unreachable.

use crate::config::{from_value, join, ConfigErrors, Zones};
use crate::key::{parse_key, KeySpec, RequestKey};
use crate::leaky_bucket::{decide, BucketLimits, BucketState, Verdict};
use crate::limit_store::{RedisStore, StoreSpec, DEFAULT_TIMEOUT, MAX_RATE};
use crate::metrics;
use crate::units::{ConfigDuration, Rate};
use lru::LruCache;
use prometheus::IntCounter;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Locks are per shard so threads rarely wait on each other.
const SHARDS: usize = 16;

/// What a zone counts: `weir_limit_req_total{zone,result}` in the metrics registry,
/// resolved when the zone is built so a request only increments.
#[derive(Debug, Clone)]
pub struct ZoneCounters {
    /// Requests passed at once.
    pub passed: IntCounter,
    /// Requests passed after a delay.
    pub delayed: IntCounter,
    /// Requests rejected.
    pub rejected: IntCounter,
    /// Requests a `dry_run` limit would have rejected.
    pub dry_run_rejected: IntCounter,
}

impl ZoneCounters {
    fn new(zone: &str) -> Result<Self, String> {
        let vec = metrics::limit_req_total()?;
        let c = |result: &str| metrics::labelled(vec, &[zone, result]);
        Ok(ZoneCounters {
            passed: c("passed")?,
            delayed: c("delayed")?,
            rejected: c("rejected")?,
            dry_run_rejected: c("dry_run_rejected")?,
        })
    }
}

/// The definition of a zone; a reload keeps the zone (and its state) when this is equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    /// What requests are counted by.
    pub key: RequestKey,
    /// Milli-requests per second.
    pub rate: u64,
    /// Most keys kept.
    pub capacity: usize,
}

/// One zone.
pub struct LimitZone {
    /// Its name under `limits:`.
    pub name: String,
    /// Its definition.
    pub spec: ZoneSpec,
    /// Its counters.
    pub counters: ZoneCounters,
    shards: Vec<Mutex<LruCache<Box<[u8]>, BucketState>>>,
    epoch: Instant,
    store_spec: Option<StoreSpec>,
    store: Option<RedisStore>,
}

/// What a passed request charged, to take back when a later `limit_req` of the same request
/// rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The bucket before the request (`None`: the key was new).
    pub prev: Option<BucketState>,
    /// The bucket the request left.
    pub state: BucketState,
    /// Charged in Redis (else in the local buckets).
    pub shared: bool,
}

impl std::fmt::Debug for LimitZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitZone")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("store", &self.store)
            .finish()
    }
}

impl LimitZone {
    /// A new, empty zone kept in this process; fails only when its metrics cannot be
    /// registered.
    pub fn new(name: &str, spec: ZoneSpec) -> Result<Self, String> {
        LimitZone::with_store(name, spec, None)
    }

    /// A new zone, shared through Redis when `store` is given (it starts connecting in the
    /// background; this never blocks). Fails when its metrics cannot be registered or the
    /// store's thread cannot start.
    pub fn with_store(
        name: &str,
        spec: ZoneSpec,
        store: Option<StoreSpec>,
    ) -> Result<Self, String> {
        let per_shard = spec.capacity.div_ceil(SHARDS).max(1);
        let cap = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        let counters = ZoneCounters::new(name)?;
        let redis = match &store {
            Some(s) => Some(RedisStore::start(name, s)?),
            None => None,
        };
        Ok(LimitZone {
            name: name.to_string(),
            counters,
            spec,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(cap)))
                .collect(),
            epoch: Instant::now(),
            store_spec: store,
            store: redis,
        })
    }

    /// The Redis store this zone was built with (a reload keeps the zone when this and the
    /// [`ZoneSpec`] are unchanged).
    pub fn store_spec(&self) -> Option<&StoreSpec> {
        self.store_spec.as_ref()
    }

    /// The Redis URL (without credentials) when the zone is shared through Redis.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_ref().map(RedisStore::url_for_log)
    }

    /// True while a zone with a Redis store decides on its local state (Redis slow,
    /// unreachable, or not connected yet); always false for a local zone. For `/status`.
    pub fn on_local_fallback(&self) -> bool {
        self.store
            .as_ref()
            .is_some_and(RedisStore::on_local_fallback)
    }

    /// Decides a request for `key` now and, when it passes, charges the bucket: in Redis
    /// when the zone has a store that answers within `store_timeout`, else locally.
    pub async fn decide(&self, key: &[u8], limits: BucketLimits) -> (Verdict, Option<Charge>) {
        if let Some(store) = &self.store {
            if let Some((verdict, prev)) = store.check(key, limits).await {
                let charge = match verdict {
                    Verdict::Pass { state, .. } => Some(Charge {
                        prev,
                        state,
                        shared: true,
                    }),
                    Verdict::Reject { .. } => None,
                };
                return (verdict, charge);
            }
        }
        let (verdict, prev) = self.check(key, self.now_ms(), limits);
        let charge = match verdict {
            Verdict::Pass { state, .. } => Some(Charge {
                prev,
                state,
                shared: false,
            }),
            Verdict::Reject { .. } => None,
        };
        (verdict, charge)
    }

    /// Takes back what [`LimitZone::decide`] charged, where it was charged (see
    /// [`LimitZone::restore`]; a Redis charge is taken back in the background, never
    /// holding up the rejected request).
    pub fn take_back(&self, key: &[u8], charge: Charge) {
        if charge.shared {
            if let Some(store) = &self.store {
                store.take_back(key, charge.prev, charge.state, self.spec.rate);
            }
        } else {
            self.restore(key, charge.prev, charge.state);
        }
    }

    /// Milliseconds on this zone's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn shard(&self, key: &[u8]) -> &Mutex<LruCache<Box<[u8]>, BucketState>> {
        // FNV-1a: cheap and good enough to spread keys over 16 locks.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Decides a request for `key` at `now` and, when it passes, charges the bucket.
    /// Returns the verdict and the state before charging (to restore it when a later
    /// limit of the same request rejects).
    pub fn check(
        &self,
        key: &[u8],
        now: u64,
        limits: BucketLimits,
    ) -> (Verdict, Option<BucketState>) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let prev = shard.get(key).copied();
        let verdict = decide(prev, now, limits);
        if let Verdict::Pass { state, .. } = verdict {
            match shard.get_mut(key) {
                Some(s) => *s = state,
                None => {
                    shard.put(key.into(), state);
                }
            }
        }
        (verdict, prev)
    }

    /// Takes back the charge of a request that a later limit of the same request rejected
    /// (nginx does not charge the zones checked before the one that rejects). When nothing
    /// else charged the bucket since, it is put back exactly as it was (`prev`); otherwise
    /// only this request's 1000 is removed, so concurrent requests keep their charges.
    pub fn restore(&self, key: &[u8], prev: Option<BucketState>, charged: BucketState) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        match (shard.get_mut(key), prev) {
            (Some(current), Some(prev)) if *current == charged => *current = prev,
            (Some(current), None) if *current == charged => {
                shard.pop(key);
            }
            (Some(current), _) => current.excess = current.excess.saturating_sub(1000),
            (None, _) => {}
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one outcome.
    pub fn count(&self, counter: &IntCounter) {
        counter.inc();
    }
}

// === the `limits:` section ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitZoneWire {
    key: KeySpec,
    rate: Rate,
    capacity: Option<u64>,
    store: Option<String>,
    store_timeout: Option<ConfigDuration>,
}

/// Zones kept when nothing is given: nginx's `10m` zone holds about 160,000 states.
const DEFAULT_CAPACITY: u64 = 100_000;

/// Builds the `limits:` zones. A zone whose definition (store included) is unchanged from
/// `previous` (the running config on a reload) is kept with its state and its Redis
/// connection, as nginx keeps its shared memory zones across reloads. A zone with a `store`
/// starts connecting in the background: building never waits for Redis.
pub fn build_section(
    map: &Mapping,
    path: &str,
    previous: &BTreeMap<String, Arc<LimitZone>>,
    errors: &mut ConfigErrors,
) -> Zones<LimitZone> {
    let mut zones = Zones::default();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            errors.push(path, "zone names must be strings");
            continue;
        };
        let zone_path = join(path, name);
        zones.declare(name, None);
        let Some((spec, store)) = errors.take(limit_zone_spec(v, &zone_path)) else {
            continue;
        };
        let zone = match previous.get(name) {
            Some(old) if old.spec == spec && old.store_spec() == store.as_ref() => old.clone(),
            _ => match LimitZone::with_store(name, spec, store) {
                Ok(zone) => Arc::new(zone),
                Err(e) => {
                    errors.push(&zone_path, format!("cannot build the zone: {e}"));
                    continue;
                }
            },
        };
        zones.declare(name, Some(zone));
    }
    zones
}

/// Validates `limits.NAME` into a zone definition and its Redis store, if any.
fn limit_zone_spec(
    value: &Value,
    path: &str,
) -> Result<(ZoneSpec, Option<StoreSpec>), ConfigErrors> {
    let wire: LimitZoneWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let key = errors.take(parse_key(&wire.key, &join(path, "key")));
    let capacity = wire.capacity.unwrap_or(DEFAULT_CAPACITY);
    if capacity == 0 || capacity > 100_000_000 {
        errors.push(join(path, "capacity"), "must be from 1 to 100000000");
    }
    let timeout = wire.store_timeout.map(|d| d.0);
    let store = match &wire.store {
        Some(url) => {
            if wire.rate.milli_per_sec > MAX_RATE {
                errors.push(
                    join(path, "rate"),
                    "too high for a Redis store (Lua computes in doubles)",
                );
            }
            // A bad timeout is reported and the URL still checked (the zone is not built).
            let timeout = StoreSpec::timeout_of(timeout).unwrap_or_else(|e| {
                errors.push(join(path, "store_timeout"), e);
                DEFAULT_TIMEOUT
            });
            StoreSpec::parse(url, timeout)
                .map_err(|e| errors.push(join(path, "store"), e))
                .ok()
        }
        None => {
            if timeout.is_some() {
                errors.push(join(path, "store_timeout"), "only applies with `store`");
            }
            None
        }
    };
    match key {
        Some(key) if errors.is_empty() => Ok((
            ZoneSpec {
                key,
                rate: wire.rate.milli_per_sec,
                capacity: capacity as usize,
            },
            store,
        )),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyPart;

    fn zone(capacity: usize) -> LimitZone {
        LimitZone::new(
            "z",
            ZoneSpec {
                key: RequestKey(vec![KeyPart::ClientIp]),
                rate: 2000,
                capacity,
            },
        )
        .unwrap()
    }

    const L: BucketLimits = BucketLimits {
        rate: 2000,
        burst: 0,
        delay: 0,
    };

    #[test]
    fn keys_are_independent() {
        let z = zone(100);
        assert!(matches!(z.check(b"a", 0, L).0, Verdict::Pass { .. }));
        assert!(matches!(z.check(b"a", 0, L).0, Verdict::Reject { .. }));
        assert!(matches!(z.check(b"b", 0, L).0, Verdict::Pass { .. }));
    }

    #[test]
    fn restore_undoes_a_charge() {
        let z = zone(100);
        let (verdict, prev) = z.check(b"a", 0, L);
        let Verdict::Pass { state, .. } = verdict else {
            panic!("passes")
        };
        z.restore(b"a", prev, state);
        assert!(z.is_empty());
        assert!(matches!(z.check(b"a", 0, L).0, Verdict::Pass { .. }));
    }

    #[test]
    fn restore_after_a_concurrent_charge_only_takes_back_its_own() {
        let z = zone(100);
        let burst = BucketLimits {
            rate: 2000,
            burst: 5,
            delay: 0,
        };
        let (first, prev) = z.check(b"a", 0, burst);
        let Verdict::Pass { state: mine, .. } = first else {
            panic!("passes")
        };
        z.check(b"a", 0, burst); // another request charges meanwhile: excess 1000
        z.restore(b"a", prev, mine);
        let (next, _) = z.check(b"a", 0, burst);
        let Verdict::Pass { state, .. } = next else {
            panic!("passes")
        };
        assert_eq!(state.excess, 1000, "the other request's charge was kept");
    }

    #[test]
    fn capacity_bounds_the_keys() {
        let z = zone(160);
        for i in 0..10_000u32 {
            z.check(&i.to_be_bytes(), 0, L);
        }
        assert!(z.len() <= 160, "{}", z.len());
        assert!(z.len() >= 100, "{}", z.len());
    }
}
