//! `DiskStorage`: pingora-cache's `Storage` on the local disk.
//!
//! SKELETON: the interface the proxy codes against. The implementation (files, index,
//! eviction, loader) lands in the next commit; until then every lookup misses and nothing is
//! stored.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::CompactCacheKey;
use pingora::cache::storage::{HandleMiss, MissFinishType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, HitHandler, MissHandler, PurgeType, Storage};
use pingora::prelude::*;
use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Limits of one cache zone's disk use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSettings {
    /// Total bytes of stored objects (files) kept; the least recently read go first.
    pub max_size: u64,
    /// Objects not read for this long are removed, fresh or not.
    pub inactive: Duration,
    /// Larger objects are not stored (they stream through).
    pub max_object_size: u64,
}

/// Counters of one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Objects stored now.
    pub objects: u64,
    /// Bytes of the stored objects' files now.
    pub bytes: u64,
    /// Body bytes served from the cache so far (what the origin did not have to send).
    pub bytes_served: u64,
}

/// A cache zone's objects on disk.
pub struct DiskStorage {
    path: PathBuf,
}

impl DiskStorage {
    /// Opens the zone at `path` (created when missing; an error when it cannot be written).
    /// One storage per path for the life of the process: opening the same path again (a
    /// reload) returns the same storage with `settings` applied.
    pub fn open(path: &Path, settings: DiskSettings) -> Result<&'static DiskStorage, String> {
        let _ = settings;
        Ok(Box::leak(Box::new(DiskStorage {
            path: path.to_path_buf(),
        })))
    }

    /// The zone's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies new limits (a reload).
    pub fn set_settings(&self, settings: DiskSettings) {
        let _ = settings;
    }

    /// Removes every variant stored under `key`'s primary key; true when one was there.
    pub async fn purge_key(&self, key: &CacheKey) -> bool {
        let _ = key;
        false
    }

    /// Removes objects not read for `older_than`; returns the bytes freed.
    pub fn clean_older_than(&self, older_than: Duration) -> u64 {
        let _ = older_than;
        0
    }

    /// Counters now.
    pub fn totals(&self) -> Totals {
        Totals::default()
    }
}

struct NoMiss;

#[async_trait]
impl HandleMiss for NoMiss {
    async fn write_body(&mut self, _data: Bytes, _eof: bool) -> Result<()> {
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        Ok(MissFinishType::Created(0))
    }
}

#[async_trait]
impl Storage for DiskStorage {
    async fn lookup(
        &'static self,
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        Ok(None)
    }

    async fn get_miss_handler(
        &'static self,
        _key: &CacheKey,
        _meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(NoMiss))
    }

    async fn purge(
        &'static self,
        _target: pingora::cache::PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<pingora::cache::PurgeOutcome> {
        Ok(pingora::cache::PurgeOutcome::NotFound)
    }

    async fn update_meta(
        &'static self,
        _key: &CacheKey,
        _meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        Ok(false)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[allow(dead_code)]
fn _compact(_k: &CompactCacheKey) {}
