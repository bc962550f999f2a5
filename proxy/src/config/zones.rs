//! The `limits:`, `caches:` and `admin:` sections.
//!
//! `limits:` zones are built here (see [`build_limit_zones`]); `caches:` zones are built by
//! the cache module ([`build_cache_zones`]); `admin:` by [`build_admin`].

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use weir_plugins::cache::{self, CacheZone};
use weir_plugins::config::{from_value, join};
use weir_plugins::key::{parse_key, KeySpec};
use weir_plugins::limit_store::{self, StoreSpec};
use weir_plugins::limit_zone::{LimitZone, ZoneSpec};
use weir_plugins::units::{ConfigDuration, Rate};
use weir_plugins::ConfigErrors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitZoneWire {
    key: KeySpec,
    rate: Rate,
    capacity: Option<u64>,
    store: Option<String>,
    store_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminWire {
    listen: String,
    token: Option<String>,
}

/// Builds every zone of the `caches:` map. Returns the zones that built and every name
/// declared (a route naming a zone with errors is not reported again).
pub fn build_cache_zones(
    map: &Mapping,
    path: &str,
    errors: &mut ConfigErrors,
) -> (BTreeMap<String, Arc<CacheZone>>, BTreeSet<String>) {
    let mut zones = BTreeMap::new();
    let mut names = BTreeSet::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            errors.push(path, "zone names must be strings");
            continue;
        };
        names.insert(name.to_string());
        if let Some(zone) = errors.take(cache::zone::build(name, v, &join(path, name))) {
            let shared = zones
                .values()
                .find(|z: &&Arc<CacheZone>| z.storage.path() == zone.storage.path());
            if let Some(other) = shared {
                errors.push(
                    join(&join(path, name), "path"),
                    format!(
                        "{} is already the directory of caches.{}",
                        zone.storage.path().display(),
                        other.name
                    ),
                );
                continue;
            }
            zones.insert(name.to_string(), zone);
        }
    }
    (zones, names)
}

/// Zones kept when nothing is given: nginx's `10m` zone holds about 160,000 states.
const DEFAULT_CAPACITY: u64 = 100_000;

/// Builds the `limits:` zones. A zone whose definition (store included) is unchanged from
/// `previous` (the running config on a reload) is kept with its state and its Redis
/// connection, as nginx keeps its shared memory zones across reloads. A zone with a `store`
/// starts connecting in the background: building never waits for Redis.
pub fn build_limit_zones(
    map: &Mapping,
    path: &str,
    previous: &BTreeMap<String, Arc<LimitZone>>,
    errors: &mut ConfigErrors,
) -> BTreeMap<String, Arc<LimitZone>> {
    let mut zones = BTreeMap::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            errors.push(path, "zone names must be strings");
            continue;
        };
        let zone_path = join(path, name);
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
        zones.insert(name.to_string(), zone);
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
            if wire.rate.milli_per_sec > limit_store::MAX_RATE {
                errors.push(
                    join(path, "rate"),
                    "too high for a Redis store (Lua computes in doubles)",
                );
            }
            // A bad timeout is reported and the URL still checked (the zone is not built).
            let timeout = StoreSpec::timeout_of(timeout).unwrap_or_else(|e| {
                errors.push(join(path, "store_timeout"), e);
                limit_store::DEFAULT_TIMEOUT
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

/// `admin:`: where the admin API listens and the token its mutating calls need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The admin listener (never one of the proxy listeners).
    pub listen: SocketAddr,
    /// `Authorization: Bearer <token>` for every call but GET.
    pub token: String,
}

/// Builds `admin:`.
pub fn build_admin(value: &Value, path: &str) -> Result<AdminSettings, ConfigErrors> {
    let wire: AdminWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let listen = wire.listen.parse::<SocketAddr>().map_err(|_| {
        errors.push(
            join(path, "listen"),
            format!("`{}` is not an IP:port address", wire.listen),
        )
    });
    let token = wire.token.unwrap_or_default();
    if token.trim().is_empty() {
        errors.push(
            join(path, "token"),
            "required: purge, reload and registration change the running proxy",
        );
    }
    match listen {
        Ok(listen) if errors.is_empty() => Ok(AdminSettings { listen, token }),
        _ => Err(errors),
    }
}
