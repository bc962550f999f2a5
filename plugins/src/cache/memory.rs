//! The memory tier of a cache zone: the decoded header and the body of recently read small
//! objects ([`Hot`]), so a HIT on them touches no file, in an LRU of their own bounded by
//! `caches.NAME.memory` ([`MemoryTier`]).
//!
//! A copy lives and dies with its index entry; `super::catalog` keeps the two in step. When
//! the tier is full, a copy is admitted only for a key read more often than the copy it would
//! push out (TinyLFU's idea), so a long tail of objects read now and then does not churn the
//! popular copies.

use super::file::Hash;
use bytes::Bytes;
use lru::LruCache;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// The largest body kept in memory (and never more than an eighth of the memory tier).
pub const HOT_MAX_BODY: u64 = 1024 * 1024;

/// A stored object's copy in memory: what a HIT needs without touching the disk.
#[derive(Debug)]
pub struct Hot {
    /// The serialized internal meta (freshness, variance; cheap to decode).
    pub internal: Vec<u8>,
    /// The internal meta's fields when [`CacheMeta::new`] rebuilds it exactly (never
    /// revalidated: no `updated` or epoch of its own): no decoding at all.
    pub quick: Option<QuickMeta>,
    /// The decoded response header (its stored form is zstd-compressed).
    pub header: ResponseHeader,
    /// The whole body.
    pub body: Bytes,
    /// The size of the object's file.
    pub file_len: u64,
}

/// The fields of an internal meta that `CacheMeta::new` (plus a variance) rebuilds.
#[derive(Debug, Clone, Copy)]
pub struct QuickMeta {
    /// `CacheMeta::fresh_until`.
    pub fresh_until: SystemTime,
    /// `CacheMeta::created`.
    pub created: SystemTime,
    /// `CacheMeta::stale_while_revalidate_sec`.
    pub stale_while_revalidate_sec: u32,
    /// `CacheMeta::stale_if_error_sec`.
    pub stale_if_error_sec: u32,
    /// `CacheMeta::variance`.
    pub variance: Option<Hash>,
}

impl Hot {
    /// Bytes charged to the memory tier: the body, the meta and an estimate of the header.
    pub fn cost(&self) -> u64 {
        let header: usize = self
            .header
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + self.internal.len() + header + 256) as u64
    }

    /// A [`CacheMeta`] equal to the stored one, without decompressing its header.
    pub fn meta(&self) -> Option<CacheMeta> {
        rebuild_meta(self.quick.as_ref(), &self.internal, &self.header)
    }
}

/// The [`CacheMeta`] of a stored object from its serialized internal meta (or its quick form,
/// `quick`) and its decoded response header, without decompressing a header.
pub fn rebuild_meta(
    quick: Option<&QuickMeta>,
    internal: &[u8],
    header: &ResponseHeader,
) -> Option<CacheMeta> {
    if let Some(q) = quick {
        return Some(q.build(header.clone()));
    }
    let mut meta = CacheMeta::deserialize(internal, placeholder_header()?).ok()?;
    *meta.response_header_mut() = header.clone();
    Some(meta)
}

/// Headers a HIT adds to a copy of the stored header (`Age`, `Accept-Ranges`, the status
/// header, `Content-Length`, `Date`, a few from plugins) without growing its maps.
const HIT_HEADER_ROOM: usize = 8;

/// `header` rebuilt with room for [`HIT_HEADER_ROOM`] more headers: a HIT clones the stored
/// header (a clone keeps its maps' index capacity) and adds a few, and growing both maps
/// (values and header-name case) rehashes them on every HIT. Same status, version, reason,
/// headers in order with their case; `header` cloned as it is if a rebuild step fails.
pub fn with_room(header: &ResponseHeader) -> ResponseHeader {
    let rebuilt = || -> pingora::Result<ResponseHeader> {
        let room = Some(header.headers.len() + HIT_HEADER_ROOM);
        let mut out = match header.has_case() {
            true => ResponseHeader::build(header.status, room)?,
            false => ResponseHeader::build_no_case(header.status, room)?,
        };
        for (name, value) in header.case_header_iter() {
            out.append_header(name.clone(), value.clone())?;
        }
        out.set_version(header.version);
        out.set_reason_phrase(header.get_reason_phrase())?;
        Ok(out)
    };
    rebuilt().unwrap_or_else(|_| header.clone())
}

/// The serialized response header of the smallest valid meta: [`Hot::meta`] decodes the
/// internal meta with it (cheap) instead of the object's own zstd-compressed header.
fn placeholder_header() -> Option<&'static [u8]> {
    static HEADER: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    HEADER
        .get_or_init(|| {
            let header = ResponseHeader::build(200, Some(0)).ok()?;
            let t = SystemTime::UNIX_EPOCH;
            CacheMeta::new(t, t, 0, 0, header)
                .serialize()
                .ok()
                .map(|m| m.1)
        })
        .as_deref()
}

impl QuickMeta {
    fn build(&self, header: ResponseHeader) -> CacheMeta {
        let q = self;
        let mut meta = CacheMeta::new(
            q.fresh_until,
            q.created,
            q.stale_while_revalidate_sec,
            q.stale_if_error_sec,
            header,
        );
        if let Some(v) = q.variance {
            meta.set_variance(v);
        }
        meta
    }

    /// The quick form of `meta` when it rebuilds exactly what `internal` (its serialized
    /// internal part) holds; checked once, when the copy is made.
    pub fn of(meta: &CacheMeta, internal: &[u8]) -> Option<QuickMeta> {
        let q = QuickMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
        };
        let header = ResponseHeader::build(200, Some(0)).ok()?;
        let rebuilt = q.build(header).serialize().ok()?;
        (rebuilt.0 == internal).then_some(q)
    }
}

/// The copies in memory, least recently read last, within a budget of bytes.
#[derive(Debug)]
pub struct MemoryTier {
    lru: LruCache<Hash, Arc<Hot>>,
    /// Bytes charged to the tier.
    bytes: u64,
    /// The tier's bound (`caches.NAME.memory`; 0: off).
    budget: u64,
}

impl Default for MemoryTier {
    fn default() -> Self {
        MemoryTier {
            lru: LruCache::unbounded(),
            bytes: 0,
            budget: 0,
        }
    }
}

impl MemoryTier {
    /// Bounds the tier to `budget` bytes (0 turns it off), dropping copies beyond.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
        self.shrink();
    }

    /// The tier's bound.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// True when the tier is on (its budget is not 0).
    pub fn is_on(&self) -> bool {
        self.budget > 0
    }

    /// The largest body the tier takes (0: none).
    pub fn max_body(&self) -> u64 {
        HOT_MAX_BODY.min(self.budget / 8)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The copy of `key`, marked most recently read.
    pub fn get(&mut self, key: &Hash) -> Option<Arc<Hot>> {
        self.lru.get(key).cloned()
    }

    /// Would the tier take a copy of `key`, read `reads` times, costing `cost` bytes? Yes
    /// while there is room; when full, only if `key` was read more often than the copy it
    /// would push out (the least recently read), whose reads `reads_of` tells.
    pub fn admits(
        &self,
        key: &Hash,
        reads: u32,
        cost: u64,
        reads_of: impl FnOnce(&Hash) -> Option<u32>,
    ) -> bool {
        let max = self.max_body();
        if max == 0 || cost > max + 64 * 1024 {
            return false;
        }
        if self.lru.contains(key) || self.bytes + cost <= self.budget {
            return true;
        }
        let victim = self.lru.peek_lru().and_then(|(k, _)| reads_of(k));
        victim.is_none_or(|v| reads > v)
    }

    /// Keeps `hot` as the copy of `key` (the caller checked [`MemoryTier::admits`]), then
    /// drops the least recently read copies beyond the budget; true when it is still there.
    pub fn put(&mut self, key: &Hash, hot: Arc<Hot>) -> bool {
        self.remove(key);
        self.bytes += hot.cost();
        self.lru.push(*key, hot);
        self.shrink();
        self.lru.contains(key)
    }

    /// Drops the copy of `key`, if any.
    pub fn remove(&mut self, key: &Hash) {
        if let Some(h) = self.lru.pop(key) {
            self.bytes = self.bytes.saturating_sub(h.cost());
        }
    }

    fn shrink(&mut self) {
        while self.bytes > self.budget {
            match self.lru.pop_lru() {
                Some((_, h)) => self.bytes = self.bytes.saturating_sub(h.cost()),
                None => {
                    self.bytes = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(h: &ResponseHeader) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        h.header_to_h1_wire(&mut buf);
        let reason = h.get_reason_phrase().unwrap_or("").to_string();
        let mut out = format!("{:?} {} {reason}\r\n", h.version, h.status).into_bytes();
        out.extend_from_slice(&buf);
        out
    }

    #[test]
    fn a_header_with_room_is_the_same_header() {
        let mut h = ResponseHeader::build(203, None).unwrap();
        h.append_header("X-Mixed-Case", "a").unwrap();
        h.append_header("content-type", "text/plain").unwrap();
        h.append_header("Set-Cookie", "one=1").unwrap();
        h.append_header("X-Mixed-Case", "b").unwrap();
        h.append_header("Set-Cookie", "two=2").unwrap();
        h.set_reason_phrase(Some("Odd Reason")).unwrap();
        h.set_version(http::Version::HTTP_10);
        let roomy = with_room(&h);
        assert_eq!(wire(&roomy), wire(&h));
        assert_eq!(roomy.headers, h.headers);
        let plain = ResponseHeader::build_no_case(200, None).unwrap();
        assert!(!with_room(&plain).has_case());
        // The point: a clone takes HIT_HEADER_ROOM more headers without growing its map.
        let mut copy = roomy.clone();
        let capacity = copy.headers.capacity();
        for i in 0..HIT_HEADER_ROOM {
            copy.insert_header(format!("x-added-{i}"), "1").unwrap();
        }
        assert_eq!(copy.headers.capacity(), capacity);
    }
}
