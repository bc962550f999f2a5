//! The open-file cache of a cache zone: the descriptors and decoded metas of recently read
//! objects ([`OpenFile`]), so a HIT on a hot object outside the memory tier opens, stats and
//! decodes nothing — one positioned read of its body (nginx's `open_file_cache`, always on
//! here, bounded by [`OPEN_FILES`] descriptors per zone).
//!
//! An entry lives and dies with its index entry, like a copy in the memory tier:
//! `super::catalog` drops it on every insert, removal, eviction and meta rewrite of its key
//! under the catalog lock, and admits one only while the index entry it was read under is the
//! current one (its generation). Object files are never changed in place (a new object is
//! renamed over the old one, a removal unlinks), so a descriptor always reads the object it
//! was opened as, and a HIT already streaming from it finishes what it started.

use super::file::{Hash, Header};
use super::memory::QuickMeta;
use lru::LruCache;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use std::fs::File;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Descriptors kept open per zone: the most recently read objects (with Zipf-like traffic
/// the top few hundred objects take most of the reads).
pub const OPEN_FILES: usize = 256;

/// A stored object kept open, with what a HIT needs from its head already decoded.
#[derive(Debug)]
pub struct OpenFile {
    /// The object's file (read with positioned reads only: the descriptor is shared).
    pub file: Arc<File>,
    /// Its validated file header (where the body is, how long it is).
    pub header: Header,
    /// The serialized internal meta (freshness, variance; cheap to decode).
    pub internal: Vec<u8>,
    /// The internal meta's fields when `CacheMeta::new` rebuilds it exactly.
    pub quick: Option<QuickMeta>,
    /// The decoded response header (its stored form is zstd-compressed).
    pub response: ResponseHeader,
}

impl OpenFile {
    /// A [`CacheMeta`] equal to the stored one, without decompressing its header.
    pub fn meta(&self) -> Option<CacheMeta> {
        super::memory::rebuild_meta(self.quick.as_ref(), &self.internal, &self.response)
    }
}

/// The open objects of a zone, least recently read last.
#[derive(Debug)]
pub struct OpenFiles {
    lru: LruCache<Hash, Arc<OpenFile>>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles {
            lru: LruCache::new(NonZeroUsize::new(OPEN_FILES).unwrap_or(NonZeroUsize::MIN)),
        }
    }
}

impl OpenFiles {
    /// The open object `key`, marked most recently read.
    pub fn get(&mut self, key: &Hash) -> Option<Arc<OpenFile>> {
        self.lru.get(key).cloned()
    }

    /// Keeps `open` as the open object `key` (the least recently read one closes when full).
    pub fn put(&mut self, key: &Hash, open: Arc<OpenFile>) {
        self.lru.put(*key, open);
    }

    /// Closes the object `key`, if open (a HIT still reading it keeps its descriptor).
    pub fn remove(&mut self, key: &Hash) {
        self.lru.pop(key);
    }

    /// Objects open now.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }
}
