//! The cache phases of the pipeline: Pingora's `proxy_cache` machinery (lookup, lock, fill,
//! revalidation, stale serving, Range and HEAD from the stored GET) driven by a route's
//! `cache` plugin and its zone, with nginx's rules for what is stored and for how long.
//!
//! The proxy's `ProxyHttp` methods call these functions; nothing here runs for routes
//! without a `cache` plugin.

use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, NoCacheReason,
    RespCacheable, VarianceBuilder,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::ErrorType;
use std::sync::Arc;
use std::time::SystemTime;
use weir_plugins::cache::policy::{self, Verdict};
use weir_plugins::cache::zone::CacheStatus;
use weir_plugins::cache::{CachePlugin, CacheZone};
use weir_plugins::respond::{path_for_log, suppressed_note};
use weir_plugins::RequestCtx;

/// A request's cache state.
#[derive(Debug, Default)]
pub struct CacheState {
    /// The zone serving this request, when its route caches and the method is cached.
    pub zone: Option<Arc<CacheZone>>,
    /// The request matched a `bypass` condition: looked up never, stored when cacheable.
    pub bypass: bool,
    /// Answered by the fast path (a plain fresh HIT, see [`fresh_hit_zone`]), not by
    /// pingora-cache.
    pub fresh_hit: bool,
}

/// The request headers that make a HIT more than the stored response (a 304, a 206 or 416, a
/// precondition): such requests take pingora-cache's path.
const CONDITIONAL: [http::header::HeaderName; 6] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
];

/// The zone that may answer this request on the fast path, when its answer can only be a
/// plain fresh HIT or pingora-cache's path: a GET or HEAD the zone caches, with no body, no
/// upgrade, no Range or conditional header, and no `bypass` match. Whether the object is there
/// and fresh the zone tells ([`weir_plugins::cache::storage::DiskStorage::fresh_hit`]).
pub fn fresh_hit_zone<'a>(
    session: &mut Session,
    cache: Option<&'a CachePlugin>,
) -> Option<&'a Arc<CacheZone>> {
    let cache = cache?;
    let req = session.req_header();
    let get_or_head = matches!(req.method, http::Method::GET | http::Method::HEAD);
    if !get_or_head
        || !cache.zone.methods.contains(&req.method)
        || req.headers.keys().any(|name| CONDITIONAL.contains(name))
        || cache.bypasses(req)
        || session.is_upgrade_req()
        || !session.as_downstream_mut().is_body_empty()
    {
        return None;
    }
    Some(&cache.zone)
}

/// The key of this request in `zone` (its primary key: the fast path serves only objects
/// stored without variance), as [`key`] makes it.
pub fn primary_hash(
    session: &Session,
    zone: &CacheZone,
    tls: bool,
    plugins: &RequestCtx,
) -> [u8; 16] {
    use pingora::cache::key::CacheHashKey;
    CacheKey::new(
        zone.key.render(session.req_header(), tls, &plugins.path),
        "",
    )
    .combined_bin()
}

/// `request_cache_filter`: turns Pingora's cache on for a route with a `cache` plugin and a
/// cached method.
pub fn enable(session: &mut Session, cache: Option<&CachePlugin>, state: &mut CacheState) {
    let Some(cache) = cache else { return };
    let zone = &cache.zone;
    if !zone.methods.contains(&session.req_header().method) {
        return;
    }
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(zone.lock_timeout);
    session
        .cache
        .enable(zone.storage, None, None, zone.lock, Some(overrides));
    // Pingora's own bypass skips storing too; nginx's bypass only skips the lookup, so a
    // found object is turned into a miss in `cache_hit_filter` instead (see `hit`).
    state.bypass = cache.bypasses(session.req_header());
    state.zone = Some(zone.clone());
}

/// `cache_key_callback`: the zone's key template for this request (`plugins`: its plugin
/// context, which holds the normalised path, `$uri`).
pub fn key(
    session: &Session,
    state: &CacheState,
    tls: bool,
    plugins: Option<&RequestCtx>,
) -> Result<CacheKey> {
    let (Some(zone), Some(path)) = (&state.zone, plugins.map(|p| &p.path)) else {
        return Error::e_explain(ErrorType::InternalError, "cache key without a cache zone");
    };
    Ok(CacheKey::new(
        zone.key.render(session.req_header(), tls, path),
        "",
    ))
}

/// `response_cache_filter`: nginx's rules (see `policy`) plus `max_object_size` by
/// Content-Length. Objects without a Content-Length are cut off by the storage when they
/// grow past it, and still stream to the client.
pub fn decide(session: &Session, resp: &ResponseHeader, state: &CacheState) -> RespCacheable {
    let Some(zone) = &state.zone else {
        return RespCacheable::Uncacheable(NoCacheReason::NeverEnabled);
    };
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Why a response is not stored, at most one line a second per zone.
    let not_storing = |why: &str| {
        if let Some(suppressed) = zone.log_limiter.allow() {
            log::info!(
                "cache {}: not storing {}: {why}{}",
                zone.name,
                path_for_log(session.req_header()),
                suppressed_note(suppressed)
            );
        }
    };
    if length.is_some_and(|l| l > zone.max_object_size) {
        not_storing("larger than max_object_size");
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    let now = SystemTime::now();
    match policy::decide(resp, &zone.valid, now) {
        Verdict::Store {
            ttl,
            stale_while_revalidate,
            stale_if_error,
        } => {
            // Stale copies are kept servable for as long as they are stored when use_stale
            // allows it (nginx keeps no time limit on them either).
            let swr = if zone.use_stale.updating {
                u32::MAX
            } else {
                stale_while_revalidate.unwrap_or(0)
            };
            let sie = if zone.use_stale.on_errors() {
                u32::MAX
            } else {
                stale_if_error.unwrap_or(0)
            };
            RespCacheable::Cacheable(CacheMeta::new(
                policy::fresh_until(now, ttl),
                now,
                swr,
                sie,
                resp.clone(),
            ))
        }
        Verdict::Skip(why) => {
            not_storing(&why);
            RespCacheable::Uncacheable(NoCacheReason::OriginNotCache)
        }
    }
}

/// `cache_vary_filter`: one variant per value of the request headers the stored response
/// varies on.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<[u8; 16]> {
    let mut builder = VarianceBuilder::new();
    for value in meta.headers().get_all(http::header::VARY) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',') {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || name == "*" {
                continue;
            }
            let mut joined = Vec::new();
            for (i, v) in req.headers.get_all(name.as_str()).iter().enumerate() {
                if i > 0 {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            builder.add_owned_name_value(name, joined);
        }
    }
    builder.finalize()
}

/// `cache_hit_filter`: a bypassing request treats what it found as absent, so it fetches
/// and stores a fresh copy (nginx `proxy_cache_bypass`).
pub fn hit(state: &CacheState) -> Option<ForcedFreshness> {
    state.bypass.then_some(ForcedFreshness::ForceMiss)
}

/// `should_serve_stale`: `use_stale` — `updating` while another request refreshes the
/// object (`error` is `None`), else the upstream failure it lists.
///
/// The request that finds the object expired refreshes it itself (EXPIRED); only the
/// requests that arrive meanwhile get the stale copy (UPDATING). That is nginx's default
/// (`proxy_cache_background_update off`); Pingora would otherwise serve the refreshing
/// request stale too and update in the background.
pub fn serve_stale(session: &Session, state: &CacheState, error: Option<&Error>) -> bool {
    let Some(zone) = &state.zone else {
        return false;
    };
    let stale = &zone.use_stale;
    // A window the response itself gave (Cache-Control stale-while-revalidate=N /
    // stale-if-error=N) also allows it, as nginx honours those extensions; `decide` stored
    // them unless `use_stale` opened the window for good (u32::MAX).
    let meta = session.cache.maybe_cache_meta();
    let from_response = |sec: u32| sec > 0 && sec < u32::MAX;
    match error {
        None => {
            let allowed = stale.updating
                || meta.is_some_and(|m| from_response(m.stale_while_revalidate_sec()));
            allowed && !session.cache.is_cache_lock_writer()
        }
        Some(e) => {
            let listed = match e.etype() {
                ErrorType::HTTPStatus(code) => stale.status(*code),
                ErrorType::ConnectTimedout
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
                | ErrorType::TLSHandshakeTimedout => stale.timeout,
                _ => e.esource() == &pingora::ErrorSource::Upstream && stale.error,
            };
            let upstream_failed = e.esource() == &pingora::ErrorSource::Upstream
                || matches!(e.etype(), ErrorType::HTTPStatus(500..=599));
            listed
                || (upstream_failed && meta.is_some_and(|m| from_response(m.stale_if_error_sec())))
        }
    }
}

/// nginx's `$upstream_cache_status` for this response, `None` when the cache was not used.
pub fn status(session: &Session, state: &CacheState) -> Option<CacheStatus> {
    state.zone.as_ref()?;
    if state.fresh_hit {
        return Some(CacheStatus::Hit);
    }
    if state.bypass {
        return Some(CacheStatus::Bypass);
    }
    Some(match session.cache.phase() {
        CachePhase::Hit => CacheStatus::Hit,
        CachePhase::Expired => CacheStatus::Expired,
        CachePhase::Stale => CacheStatus::Stale,
        CachePhase::StaleUpdating => CacheStatus::Updating,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheStatus::Revalidated,
        CachePhase::Bypass => CacheStatus::Bypass,
        // Looked up and not found, or found uncacheable on the way back: nginx says MISS.
        _ => CacheStatus::Miss,
    })
}

/// Counts the response's cache status and adds the zone's status header to `resp`.
pub fn add_status_header(
    session: &Session,
    state: &CacheState,
    resp: &mut ResponseHeader,
) -> Result<()> {
    let (Some(zone), Some(status)) = (&state.zone, status(session, state)) else {
        return Ok(());
    };
    zone.stats.count(status);
    if let Ok(c) = crate::metrics::metrics()
        .cache
        .get_metric_with_label_values(&[&zone.name, status.as_str()])
    {
        c.inc();
    }
    if let Some(name) = &zone.status_header {
        let value = http::HeaderValue::from_static(status.as_str());
        resp.insert_header(name.clone(), value)?;
    }
    Ok(())
}
