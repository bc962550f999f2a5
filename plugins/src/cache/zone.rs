//! `caches.NAME`: a cache zone — where its objects live, how they are keyed, how long they
//! stay fresh, and when stale copies may be served.
//!
//! The storage and the cache lock of a zone are created once per process and kept across
//! reloads (objects and waiting requests survive a `SIGHUP`); the rest is rebuilt.

use super::key::{KeyTemplate, DEFAULT_KEY};
use super::policy::Valid;
use super::storage::{DiskSettings, DiskStorage};
use crate::config::{from_value, index, join, ConfigErrors, Zones};
use crate::units::{ConfigDuration, ConfigSize};
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// `memory` when not given: no memory tier (SPEC §7: objects are streamed, never held whole;
/// the tier is an opt-in exception for small objects).
const DEFAULT_MEMORY: u64 = 0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheZoneWire {
    path: String,
    max_size: Option<ConfigSize>,
    inactive: Option<ConfigDuration>,
    max_object_size: Option<ConfigSize>,
    memory: Option<ConfigSize>,
    key: Option<String>,
    valid: Option<BTreeMap<String, ConfigDuration>>,
    use_stale: Option<Vec<String>>,
    lock_timeout: Option<ConfigDuration>,
    methods: Option<Vec<String>>,
    status_header: Option<Value>,
}

/// The failures after which a stale copy is served (`use_stale`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UseStale {
    /// Connection errors.
    pub error: bool,
    /// Timeouts.
    pub timeout: bool,
    /// While another request refreshes the object.
    pub updating: bool,
    /// `http_500` … as a bit per listed status.
    statuses: [bool; 5],
}

const STALE_STATUSES: [u16; 5] = [500, 502, 503, 504, 404];

impl UseStale {
    /// Is `http_<status>` listed?
    pub fn status(&self, status: u16) -> bool {
        STALE_STATUSES
            .iter()
            .position(|s| *s == status)
            .is_some_and(|i| self.statuses[i])
    }

    /// Is any failure listed?
    pub fn on_errors(&self) -> bool {
        self.error || self.timeout || self.statuses.iter().any(|s| *s)
    }
}

/// A validated cache zone.
pub struct CacheZone {
    /// Its name under `caches:`.
    pub name: String,
    /// Its objects.
    pub storage: &'static DiskStorage,
    /// Concurrent misses of one key wait on this (`lock_timeout`); `None` when 0s.
    pub lock: Option<&'static CacheKeyLockImpl>,
    /// How long a waiting request waits before going upstream itself, uncached.
    pub lock_timeout: Duration,
    /// The key template.
    pub key: KeyTemplate,
    /// TTLs by status when the upstream gives none.
    pub valid: Valid,
    /// When stale copies may be served.
    pub use_stale: UseStale,
    /// Methods looked up and stored (GET and HEAD by default; HEAD is served from GET).
    pub methods: Vec<http::Method>,
    /// Larger objects stream through uncached.
    pub max_object_size: u64,
    /// The response header that reports HIT/MISS/…; `None` = off.
    pub status_header: Option<http::HeaderName>,
    /// Responses by cache status since the zone was created (kept across reloads).
    pub stats: Arc<CacheStats>,
    /// Bounds the "not storing" lines to one a second.
    pub log_limiter: crate::respond::LogLimiter,
}

/// A response's cache status, as nginx's `$upstream_cache_status` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served fresh from the cache.
    Hit,
    /// Not in the cache (or not cacheable): fetched from the upstream.
    Miss,
    /// In the cache but stale: fetched again.
    Expired,
    /// A stale copy served because the upstream failed (`use_stale`).
    Stale,
    /// A stale copy served while another request refreshes it.
    Updating,
    /// A stale copy the upstream confirmed (304).
    Revalidated,
    /// The lookup was skipped (`bypass`).
    Bypass,
}

impl CacheStatus {
    /// Every status, in the order [`CacheStats`] counts them.
    pub const ALL: [CacheStatus; 7] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Expired,
        CacheStatus::Stale,
        CacheStatus::Updating,
        CacheStatus::Revalidated,
        CacheStatus::Bypass,
    ];

    /// nginx's name: `HIT`, `MISS` …
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Updating => "UPDATING",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// Served from the cache (HIT, STALE, UPDATING, REVALIDATED), not fetched upstream.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit
                | CacheStatus::Stale
                | CacheStatus::Updating
                | CacheStatus::Revalidated
        )
    }
}

/// Responses by cache status.
#[derive(Debug, Default)]
pub struct CacheStats {
    counts: [AtomicU64; 7],
}

impl CacheStats {
    /// Counts one response with `status`.
    pub fn count(&self, status: CacheStatus) {
        self.counts[status as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses with `status` so far.
    pub fn get(&self, status: CacheStatus) -> u64 {
        self.counts[status as usize].load(Ordering::Relaxed)
    }

    /// Responses served from the cache (HIT, STALE, UPDATING, REVALIDATED).
    pub fn hits(&self) -> u64 {
        CacheStatus::ALL
            .iter()
            .filter(|s| s.is_hit())
            .map(|s| self.get(*s))
            .sum()
    }

    /// Responses fetched from the upstream (MISS, EXPIRED, BYPASS).
    pub fn misses(&self) -> u64 {
        CacheStatus::ALL
            .iter()
            .filter(|s| !s.is_hit())
            .map(|s| self.get(*s))
            .sum()
    }
}

/// A zone's totals: what `/status` and the admin API report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneTotals {
    /// Objects stored now.
    pub objects: u64,
    /// Bytes on disk now.
    pub bytes: u64,
    /// Responses served from the cache.
    pub hits: u64,
    /// Responses fetched from the upstream.
    pub misses: u64,
    /// Body bytes served from the cache: what the origin did not have to send.
    pub origin_bytes_saved: u64,
    /// Bytes of the objects' copies in memory now (`memory`).
    pub memory_bytes: u64,
}

impl CacheZone {
    /// Totals now.
    pub fn totals(&self) -> ZoneTotals {
        let t = self.storage.totals();
        ZoneTotals {
            objects: t.objects,
            bytes: t.bytes,
            hits: self.stats.hits(),
            misses: self.stats.misses(),
            origin_bytes_saved: t.bytes_served,
            memory_bytes: t.memory_bytes,
        }
    }

    /// Removes every stored variant of `key` (the rendered key text); true when found.
    pub async fn purge_key(&self, key: &str) -> bool {
        self.storage
            .purge_key(&pingora::cache::CacheKey::new(key.as_bytes().to_vec(), ""))
            .await
    }

    /// Removes every stored variant of `url` (`http[s]://host/path?query`), keyed by the
    /// zone's template as a GET of that URL would be; true when found. `Err` for a URL that
    /// cannot be parsed.
    pub async fn purge_url(&self, url: &str) -> Result<bool, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!(
                "`{url}`: expected http://host/path or https://host/path"
            ));
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = pingora::http::RequestHeader::build("GET", path.as_bytes(), None)
            .map_err(|e| e.to_string())?;
        req.insert_header(http::header::HOST, authority.as_str())
            .map_err(|e| e.to_string())?;
        let normalized =
            crate::NormalizedPath::parse(path.as_bytes()).map_err(|e| format!("`{url}`: {e}"))?;
        let key = self.key.render(&req, scheme == "https", &normalized);
        Ok(self
            .storage
            .purge_key(&pingora::cache::CacheKey::new(key, ""))
            .await)
    }

    /// Removes objects not read for `older_than`; returns the bytes freed.
    pub fn clean(&self, older_than: Duration) -> u64 {
        self.storage.clean_older_than(older_than)
    }
}

impl std::fmt::Debug for CacheZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheZone")
            .field("name", &self.name)
            .field("path", &self.storage.path())
            .finish_non_exhaustive()
    }
}

const USE_STALE: [&str; 8] = [
    "error", "timeout", "updating", "http_500", "http_502", "http_503", "http_504", "http_404",
];

/// A lock whose writer is considered gone after this long (nginx `proxy_cache_lock_age`).
const LOCK_AGE: Duration = Duration::from_secs(30);

/// A zone's counters, kept per zone name for the life of the process.
fn zone_stats(name: &str) -> Arc<CacheStats> {
    static STATS: OnceLock<Mutex<HashMap<String, Arc<CacheStats>>>> = OnceLock::new();
    let mut stats = STATS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    stats.entry(name.to_string()).or_default().clone()
}

/// One lock per zone name for the life of the process (Pingora needs `'static`).
fn zone_lock(name: &str) -> &'static CacheKeyLockImpl {
    static LOCKS: OnceLock<Mutex<HashMap<String, &'static CacheKeyLockImpl>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *locks.entry(name.to_string()).or_insert_with(|| {
        let lock: &'static CacheLock = Box::leak(CacheLock::new_boxed(LOCK_AGE));
        lock
    })
}

/// Builds `caches.NAME` at `path`: validates every key, creates the directory when missing
/// and checks that it can be written.
pub fn build(name: &str, value: &Value, path: &str) -> Result<Arc<CacheZone>, ConfigErrors> {
    let wire: CacheZoneWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    if !wire.path.starts_with('/') {
        errors.push(join(path, "path"), "must be an absolute directory path");
    }
    let key = match KeyTemplate::parse(wire.key.as_deref().unwrap_or(DEFAULT_KEY)) {
        Ok(k) => Some(k),
        Err(e) => {
            errors.push(join(path, "key"), e);
            None
        }
    };
    let mut valid = Valid::default();
    for (status, ttl) in wire.valid.iter().flatten() {
        if status == "any" {
            valid.insert(None, ttl.0);
            continue;
        }
        match status.parse::<u16>() {
            Ok(s) if (100..=599).contains(&s) => valid.insert(Some(s), ttl.0),
            _ => errors.push(
                join(&join(path, "valid"), status),
                "expected an HTTP status or `any`",
            ),
        }
    }
    let mut use_stale = UseStale::default();
    for (i, s) in wire.use_stale.iter().flatten().enumerate() {
        match s.as_str() {
            "error" => use_stale.error = true,
            "timeout" => use_stale.timeout = true,
            "updating" => use_stale.updating = true,
            other => match other
                .strip_prefix("http_")
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| STALE_STATUSES.iter().position(|s| *s == c))
            {
                Some(bit) => use_stale.statuses[bit] = true,
                None => errors.push(
                    index(&join(path, "use_stale"), i),
                    format!("`{s}`: expected one of {}", USE_STALE.join(", ")),
                ),
            },
        }
    }
    let mut methods = Vec::new();
    match &wire.methods {
        None => methods = vec![http::Method::GET, http::Method::HEAD],
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                match m.as_str() {
                    "GET" => methods.push(http::Method::GET),
                    "HEAD" => methods.push(http::Method::HEAD),
                    _ => errors.push(
                        index(&join(path, "methods"), i),
                        format!("`{m}`: expected GET or HEAD"),
                    ),
                }
            }
        }
    }
    let status_header = match &wire.status_header {
        None => Some(http::HeaderName::from_static("x-cache-status")),
        Some(Value::Bool(false)) => None,
        Some(Value::String(s)) => match http::HeaderName::from_bytes(s.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                errors.push(
                    join(path, "status_header"),
                    "expected a header name or false",
                );
                None
            }
        },
        Some(_) => {
            errors.push(
                join(path, "status_header"),
                "expected a header name or false",
            );
            None
        }
    };
    let max_size = wire.max_size.map_or(u64::MAX, |s| s.0);
    if max_size == 0 {
        errors.push(join(path, "max_size"), "must be larger than 0");
    }
    let settings = DiskSettings {
        max_size,
        // nginx's default `inactive` is 10 minutes.
        inactive: wire.inactive.map_or(Duration::from_secs(600), |d| d.0),
        max_object_size: wire.max_object_size.map_or(u64::MAX, |s| s.0),
        // Never more than the zone may hold on disk.
        memory: wire.memory.map_or(DEFAULT_MEMORY, |s| s.0).min(max_size),
    };
    if settings.inactive.is_zero() {
        errors.push(join(path, "inactive"), "must be longer than 0s");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let storage = match DiskStorage::open(Path::new(&wire.path), settings) {
        Ok(s) => s,
        Err(e) => {
            errors.push(join(path, "path"), e);
            return Err(errors);
        }
    };
    storage.set_settings(settings);
    let lock_timeout = wire.lock_timeout.map_or(Duration::from_secs(5), |d| d.0);
    match key {
        Some(key) => Ok(Arc::new(CacheZone {
            name: name.to_string(),
            storage,
            lock: (!lock_timeout.is_zero()).then(|| zone_lock(name)),
            lock_timeout,
            key,
            valid,
            use_stale,
            methods,
            max_object_size: settings.max_object_size,
            status_header,
            stats: zone_stats(name),
            log_limiter: Default::default(),
        })),
        None => Err(errors),
    }
}

/// Builds every zone of the `caches:` map: the zones that built, and every name declared (a
/// route naming a zone with errors is not reported again). Two zones never share a directory.
pub fn build_section(map: &Mapping, path: &str, errors: &mut ConfigErrors) -> Zones<CacheZone> {
    let mut zones: BTreeMap<String, Arc<CacheZone>> = BTreeMap::new();
    let mut declared = Zones::default();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            errors.push(path, "zone names must be strings");
            continue;
        };
        declared.declare(name, None);
        if let Some(zone) = errors.take(build(name, v, &join(path, name))) {
            let shared = zones
                .values()
                .find(|z| z.storage.path() == zone.storage.path());
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
            zones.insert(name.to_string(), zone.clone());
            declared.declare(name, Some(zone));
        }
    }
    declared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_count_by_kind_under_nginx_names() {
        for (i, s) in CacheStatus::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "ALL is in declaration order");
        }
        let names: Vec<&str> = CacheStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "HIT",
                "MISS",
                "EXPIRED",
                "STALE",
                "UPDATING",
                "REVALIDATED",
                "BYPASS"
            ]
        );
        let stats = CacheStats::default();
        for s in CacheStatus::ALL {
            stats.count(s);
        }
        stats.count(CacheStatus::Hit);
        assert_eq!(stats.get(CacheStatus::Hit), 2);
        assert_eq!(stats.get(CacheStatus::Bypass), 1);
        assert_eq!((stats.hits(), stats.misses()), (5, 3));
    }
}
