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
use weir_plugins::limit_zone::{LimitZone, ZoneSpec};
use weir_plugins::units::{ConfigDuration, Rate};
use weir_plugins::{ConfigError, ConfigErrors};

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
            zones.insert(name.to_string(), zone);
        }
    }
    (zones, names)
}

/// Zones kept when nothing is given: nginx's `10m` zone holds about 160,000 states.
const DEFAULT_CAPACITY: u64 = 100_000;

/// Builds the `limits:` zones. A zone whose definition is unchanged from `previous` (the
/// running config on a reload) is kept with its state, as nginx keeps its shared memory
/// zones across reloads.
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
        let Some(spec) = errors.take(limit_zone_spec(v, &zone_path)) else {
            continue;
        };
        let zone = match previous.get(name) {
            Some(old) if old.spec == spec => old.clone(),
            _ => match LimitZone::new(name, spec) {
                Ok(zone) => Arc::new(zone),
                Err(e) => {
                    errors.push(&zone_path, format!("cannot register its metrics: {e}"));
                    continue;
                }
            },
        };
        zones.insert(name.to_string(), zone);
    }
    zones
}

/// Validates `limits.NAME` into a zone definition.
fn limit_zone_spec(value: &Value, path: &str) -> Result<ZoneSpec, ConfigErrors> {
    let wire: LimitZoneWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let key = errors.take(parse_key(&wire.key, &join(path, "key")));
    let capacity = wire.capacity.unwrap_or(DEFAULT_CAPACITY);
    if capacity == 0 || capacity > 100_000_000 {
        errors.push(join(path, "capacity"), "must be from 1 to 100000000");
    }
    if let Some(store) = &wire.store {
        if !(store.starts_with("redis://") || store.starts_with("rediss://")) {
            errors.push(
                join(path, "store"),
                format!("`{store}`: expected redis://host:port/db or rediss://…"),
            );
        }
        errors
            .0
            .push(ConfigError::not_implemented(join(path, "store")));
    }
    if wire.store_timeout.is_some() && wire.store.is_none() {
        errors.push(join(path, "store_timeout"), "only applies with `store`");
    }
    match key {
        Some(key) if errors.is_empty() => Ok(ZoneSpec {
            key,
            rate: wire.rate.milli_per_sec,
            capacity: capacity as usize,
        }),
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
