//! The fast path for plain fresh cache HITs: answered in the request phase from the zone's
//! own index, as pingora-cache's hit path would answer them, without its per-request
//! machinery (cache key object, lock, meta, hit handler, phases).
//!
//! It serves only what is certainly a plain fresh HIT (see `cache::fresh_hit_zone` and
//! `DiskStorage::fresh_hit`); everything else returns `false` and takes pingora-cache's path
//! unchanged. What a HIT gets there it gets here: the stored header with `Age` (and
//! `Transfer-Encoding: chunked` when it has no length), as HTTP/1.1; `Accept-Ranges` as
//! the range filter gives it; weir's `response_filter`
//! (the status header, cache counters, the route's plugins); HEAD without a body; the
//! access log's HIT and body bytes. A body read from a file goes out with `sendfile(2)` where
//! the connection allows it (HTTP/1 on plain TCP, with a Content-Length), else as bytes.

use super::{is_tls, RequestState, Weir};
use crate::cache;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::RangeType;
use pingora::ErrorType;
use std::time::SystemTime;
use weir_plugins::cache::fresh::FreshBody;

/// Answers the request when it is a plain fresh HIT; `Ok(true)` when it was answered.
pub(super) async fn serve(
    weir: &Weir,
    session: &mut Session,
    ctx: &mut RequestState,
) -> Result<bool> {
    let (Some(route), Some(plugins)) = (&ctx.route, &ctx.plugins) else {
        return Ok(false);
    };
    let Some(zone) = cache::fresh_hit_zone(session, route.cache.as_ref()) else {
        return Ok(false);
    };
    let hash = cache::primary_hash(session, zone, is_tls(session), plugins);
    // Where sendfile may apply, a body it would send comes from the file even when the
    // memory tier holds a copy: sending it costs less CPU than writing the copy (50 KiB HIT:
    // 18.9 vs 23.6 µs).
    let sendfile_possible =
        !is_tls(session) && session.req_header().version < http::Version::HTTP_2;
    let file_from = if sendfile_possible {
        SENDFILE_MIN
    } else {
        u64::MAX
    };
    let Some(hit) = zone
        .storage
        .fresh_hit(&hash, SystemTime::now(), file_from)?
    else {
        return Ok(false);
    };
    log::trace!("fresh HIT on the fast path");
    let zone = zone.clone();
    let mut header = hit_header(hit.header, hit.age)?;
    let mut body = hit.body;
    ctx.cache.zone = Some(zone);
    ctx.cache.fresh_hit = true;
    let header_only = session.req_header().method == http::Method::HEAD;
    // Without a Range header this only marks the answer rangeable (`Accept-Ranges`), as the
    // hit path does for a 200 with a length.
    let range = ProxyHttp::range_header_filter(weir, session, &mut header, ctx);
    if range != RangeType::None {
        return Error::e_explain(ErrorType::InternalError, "fast path: a range without Range");
    }
    ProxyHttp::response_filter(weir, session, &mut header, ctx).await?;
    session
        .write_response_header(header, header_only)
        .await
        .map_err(|e| e.into_down())?;
    if !header_only {
        send_from_file(session, &mut body).await?;
        while let Some(chunk) = body.next_chunk()? {
            session
                .write_response_body(Some(chunk), false)
                .await
                .map_err(|e| e.into_down())?;
        }
    }
    session
        .as_downstream_mut()
        .finish_body()
        .await
        .map_err(|e| e.into_down())?;
    Ok(true)
}

/// Bodies read from a file from this size on go out with `sendfile(2)` (HTTP/1 on plain TCP
/// with a Content-Length); smaller ones are read and written with the header in one write.
/// Measured (one worker, memory tier off, CPU per HIT, sendfile off → on, medians): 1 KiB
/// 14.2 → 18.6 µs, 4 KiB 19.6 → 19.0 (even), 10 KiB 20.7 → 19.3, 50 KiB 26.0 → 19.0,
/// 1 MiB 324 → 174.
const SENDFILE_MIN: u64 = 8 * 1024;

/// Sends what it can of `body` with `sendfile(2)` when it is read from a file and large
/// enough; the rest (all of it when sendfile does not apply) is left to the caller.
async fn send_from_file(session: &mut Session, body: &mut FreshBody) -> Result<()> {
    let Some(range) = body.file_range().filter(|r| r.len >= SENDFILE_MIN) else {
        return Ok(());
    };
    let len = usize::try_from(range.len).unwrap_or(usize::MAX);
    let sent = session
        .as_downstream_mut()
        .write_response_body_from_file(range.file, range.offset, len)
        .await
        .map_err(|e| e.into_down())?;
    if let Some(n) = sent {
        log::trace!("sendfile: {n} body bytes");
        body.sent_from_file(n as u64);
    }
    Ok(())
}

/// The response header of a HIT, as pingora-cache's hit path makes it from the stored one
/// (`proxy_cache.rs` `cache_hit_header`): `Age`, HTTP/1.1, and chunked when a body of
/// unknown length follows.
fn hit_header(stored: ResponseHeader, age: u64) -> Result<Box<ResponseHeader>> {
    let mut header = Box::new(stored);
    let no_body = matches!(header.status.as_u16(), 204 | 304);
    header.insert_header(http::header::AGE, age)?;
    header.set_version(http::Version::HTTP_11);
    if !no_body
        && !header.status.is_informational()
        && header.headers.get(http::header::CONTENT_LENGTH).is_none()
    {
        header
            .insert_header(http::header::TRANSFER_ENCODING, "chunked")
            .map_err(|e| e.more_context("cache hit header"))?;
    }
    Ok(header)
}
