//! The `limits:`, `caches:` and `admin:` sections.
//!
//! `limits:` zones are built (see [`build_limit_zones`]).
//!
//! Their behaviour lands with the limiter, disk cache and admin API work. Their YAML is
//! settled by the contract, so it is parsed and validated now, names are collected for
//! reference checks (a route naming a missing zone is an error), and each entry is then
//! rejected as "not implemented yet".

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use weir_plugins::config::{from_value, index, join};
use weir_plugins::key::{parse_key, KeySpec};
use weir_plugins::limit_zone::{LimitZone, ZoneSpec};
use weir_plugins::units::{ConfigDuration, ConfigSize, Rate};
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
struct CacheZoneWire {
    path: String,
    max_size: Option<ConfigSize>,
    inactive: Option<ConfigDuration>,
    max_object_size: Option<ConfigSize>,
    key: Option<String>,
    valid: Option<BTreeMap<String, ConfigDuration>>,
    use_stale: Option<Vec<String>>,
    lock_timeout: Option<ConfigDuration>,
    methods: Option<Vec<String>>,
    status_header: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminWire {
    listen: String,
    token: Option<String>,
}

const USE_STALE: [&str; 8] = [
    "error", "timeout", "updating", "http_500", "http_502", "http_503", "http_504", "http_404",
];
const KEY_VARS: [&str; 5] = ["scheme", "host", "request_uri", "uri", "args"];

/// Validates every zone of the `caches:` map, returning the names declared.
pub fn names(
    map: &Mapping,
    path: &str,
    validate: fn(&Value, &str) -> ConfigErrors,
    errors: &mut ConfigErrors,
) -> Vec<String> {
    let mut names = Vec::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            errors.push(path, "zone names must be strings");
            continue;
        };
        let zone_path = join(path, name);
        errors.extend(validate(v, &zone_path));
        errors.0.push(ConfigError::not_implemented(zone_path));
        names.push(name.to_string());
    }
    names
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

/// Validates `caches.NAME`.
pub fn validate_cache_zone(value: &Value, path: &str) -> ConfigErrors {
    let wire: CacheZoneWire = match from_value(value, path) {
        Ok(w) => w,
        Err(e) => return e.into(),
    };
    let mut errors = ConfigErrors::default();
    if !wire.path.starts_with('/') {
        errors.push(join(path, "path"), "must be an absolute directory path");
    }
    if let Some(key) = &wire.key {
        if let Err(m) = check_key_template(key) {
            errors.push(join(path, "key"), m);
        }
    }
    for status in wire.valid.iter().flat_map(|v| v.keys()) {
        let ok = status == "any"
            || status
                .parse::<u16>()
                .is_ok_and(|s| (100..=599).contains(&s));
        if !ok {
            errors.push(
                join(&join(path, "valid"), status),
                "expected an HTTP status or `any`",
            );
        }
    }
    for (i, s) in wire.use_stale.iter().flatten().enumerate() {
        if !USE_STALE.contains(&s.as_str()) {
            errors.push(
                index(&join(path, "use_stale"), i),
                format!("`{s}`: expected one of {}", USE_STALE.join(", ")),
            );
        }
    }
    for (i, m) in wire.methods.iter().flatten().enumerate() {
        if !matches!(m.as_str(), "GET" | "HEAD" | "POST") {
            errors.push(
                index(&join(path, "methods"), i),
                format!("`{m}`: expected GET, HEAD or POST"),
            );
        }
    }
    match &wire.status_header {
        None | Some(Value::Bool(false)) => {}
        Some(Value::String(s)) if http::HeaderName::from_bytes(s.as_bytes()).is_ok() => {}
        Some(_) => errors.push(
            join(path, "status_header"),
            "expected a header name or false",
        ),
    }
    if wire.max_size.is_some_and(|s| s.0 == 0) {
        errors.push(join(path, "max_size"), "must be larger than 0");
    }
    let _ = (wire.inactive, wire.max_object_size, wire.lock_timeout);
    errors
}

/// Checks a cache key template: `$scheme$host$request_uri`, `$http_NAME`, `$cookie_NAME`.
fn check_key_template(key: &str) -> Result<(), String> {
    for part in key.split('$').skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let known = KEY_VARS.contains(&name.as_str())
            || name.strip_prefix("http_").is_some_and(|n| !n.is_empty())
            || name.strip_prefix("cookie_").is_some_and(|n| !n.is_empty());
        if !known {
            return Err(format!(
                "unknown variable `${name}` (expected $scheme, $host, $request_uri, $uri, $args, $http_NAME or $cookie_NAME)"
            ));
        }
    }
    Ok(())
}

/// Validates `admin:`; the admin API itself is not built yet.
pub fn validate_admin(value: &Value, path: &str) -> ConfigErrors {
    let wire: AdminWire = match from_value(value, path) {
        Ok(w) => w,
        Err(e) => return e.into(),
    };
    let mut errors = ConfigErrors::default();
    if wire.listen.parse::<SocketAddr>().is_err() {
        errors.push(
            join(path, "listen"),
            format!("`{}` is not an IP:port address", wire.listen),
        );
    }
    if wire.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        errors.push(join(path, "token"), "must not be empty");
    }
    errors.0.push(ConfigError::not_implemented(path));
    errors
}
