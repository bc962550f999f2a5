//! `DiskStorage`: pingora-cache's `Storage` on the local disk, with its hit and miss
//! handlers.
//!
//! One file per object (format in [`super::file`]) under the zone directory
//! ([`super::zone_dir`]), a catalog of them ([`super::catalog`]: the LRU index and the memory
//! tier) rebuilt by a background loader at startup, LRU eviction to `max_size` after every
//! stored object, and a sweeper thread removing objects not read for `inactive`
//! ([`super::upkeep`]).
//!
//! Writes go to `<zone>/tmp/` while the body streams and are renamed into place only when
//! complete, so a reader (or a restart) never sees half an object; a dropped miss handler
//! deletes its temp file, and temp files left by a crash are deleted at open.
//!
//! File I/O is blocking, done directly on the runtime's threads: objects and directories are
//! normally in the page cache, the way nginx reads and writes its cache without aio.

use super::file::{self, BodyReader, TempFile};
use super::index::Entry;
use super::memory::{Hot, QuickMeta};
use super::open_files::OpenFile;
use super::upkeep;
pub use super::zone_dir::DiskSettings;
use super::zone_dir::ZoneDir;
use async_trait::async_trait;
use bytes::Bytes;
use log::{info, warn};
use pingora::cache::key::CacheHashKey;
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType, PurgeOutcome, PurgeTarget};
use pingora::cache::trace::SpanHandle;
use pingora::cache::Storage;
use pingora::cache::{CacheEntryKey, CacheKey, CacheMeta, HitHandler, MissHandler, PurgeType};
use pingora::prelude::*;
use std::any::Any;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Largest chunk read from a file at once.
const CHUNK: usize = 64 * 1024;
/// Bytes a miss buffers before writing (larger body pieces are written directly), so a
/// thousand concurrent misses cost 8 MiB, not 64.
const WRITE_BUFFER: usize = 8 * 1024;

/// Counters of one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Objects stored now.
    pub objects: u64,
    /// Bytes of the stored objects' files now.
    pub bytes: u64,
    /// Body bytes served from the cache so far (what the origin did not have to send).
    pub bytes_served: u64,
    /// Bytes of the objects' copies in memory now.
    pub memory_bytes: u64,
}

/// A cache zone's objects on disk.
pub struct DiskStorage {
    /// The directory, its limits and its catalog.
    dir: ZoneDir,
    bytes_served: AtomicU64,
}

fn spawn(name: &str, path: &Path, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("cache {}: cannot start the {name}: {e}", path.display()))
}

impl DiskStorage {
    /// Opens the zone at `path` (created when missing; an error when it cannot be written).
    /// One storage per path for the life of the process: opening the same path again (a
    /// reload) returns the same storage with `settings` applied.
    pub fn open(path: &Path, settings: DiskSettings) -> Result<&'static DiskStorage, String> {
        static ZONES: OnceLock<Mutex<HashMap<PathBuf, &'static DiskStorage>>> = OnceLock::new();
        let cannot = |e: io::Error| format!("cannot write to {}: {e}", path.display());
        fs::create_dir_all(path).map_err(cannot)?;
        let canonical = path.canonicalize().map_err(cannot)?;
        let mut zones = ZONES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(zone) = zones.get(&canonical) {
            zone.set_settings(settings);
            return Ok(zone);
        }
        let zone = Self::open_uncached(&canonical, settings)?;
        zones.insert(canonical, zone);
        Ok(zone)
    }

    /// Opens the zone at `path` as a new storage with its own loader and sweeper threads,
    /// bypassing the process-wide map of [`DiskStorage::open`]: simulates a restart in tests.
    #[doc(hidden)]
    pub fn open_uncached(
        path: &Path,
        settings: DiskSettings,
    ) -> Result<&'static DiskStorage, String> {
        let zone = Self::open_without_loader(path, settings)?;
        spawn("cache-loader", path, move || zone.run_loader())?;
        Ok(zone)
    }

    /// [`DiskStorage::open_uncached`] without starting the loader: lookups check the disk until
    /// [`DiskStorage::run_loader`] is called. For tests.
    #[doc(hidden)]
    pub fn open_without_loader(
        path: &Path,
        settings: DiskSettings,
    ) -> Result<&'static DiskStorage, String> {
        let zone: &'static DiskStorage = Box::leak(Box::new(DiskStorage {
            dir: ZoneDir::create(path, settings)?,
            bytes_served: AtomicU64::new(0),
        }));
        spawn("cache-sweeper", path, move || {
            upkeep::sweep_forever(&zone.dir)
        })?;
        Ok(zone)
    }

    /// Indexes the objects on disk (what the background loader does at open). For tests.
    #[doc(hidden)]
    pub fn run_loader(&self) {
        upkeep::run_loader(&self.dir);
    }

    /// The zone's directory (canonical when opened with [`DiskStorage::open`]).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Applies new limits (a reload); a smaller `max_size` evicts at once.
    pub fn set_settings(&self, settings: DiskSettings) {
        self.dir.set_limits(settings);
        upkeep::enforce_max_size(&self.dir);
    }

    /// The limits in force.
    pub fn settings(&self) -> DiskSettings {
        self.dir.settings()
    }

    /// True once the loader has indexed every object found on disk at startup.
    pub fn is_loaded(&self) -> bool {
        !self.dir.catalog().index().is_loading()
    }

    /// Removes every variant stored under `key`'s primary key; true when one was there.
    pub async fn purge_key(&self, key: &CacheKey) -> bool {
        let primary = key.primary_bin();
        let mut catalog = self.dir.catalog();
        let mut keys = catalog.purge_primary(&primary);
        keys.extend([primary, key.combined_bin()]);
        keys.sort_unstable();
        keys.dedup();
        let mut found = false;
        for k in keys {
            found |= self.dir.remove_locked(&mut catalog, &k);
        }
        found
    }

    /// Removes objects not read for `older_than`; returns the bytes freed.
    pub fn clean_older_than(&self, older_than: Duration) -> u64 {
        upkeep::clean_older_than(&self.dir, older_than)
    }

    /// Counters now (while the loader runs, of the objects indexed so far).
    pub fn totals(&self) -> Totals {
        let catalog = self.dir.catalog();
        Totals {
            objects: catalog.index().len() as u64,
            bytes: catalog.index().bytes(),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            memory_bytes: catalog.memory().bytes(),
        }
    }

    /// [`ZoneDir::rewrite_meta`], then eviction when it changed the object.
    fn rewrite_meta(
        &self,
        key: &file::Hash,
        meta: impl FnOnce(CacheMeta) -> Result<(Vec<u8>, Vec<u8>)>,
    ) -> Result<bool> {
        let rewritten = self.dir.rewrite_meta(key, meta)?;
        if rewritten {
            upkeep::enforce_max_size(&self.dir);
        }
        Ok(rewritten)
    }

    /// [`ZoneDir::commit`], then eviction when it stored the object.
    fn commit(&self, t: TempFile) -> io::Result<u64> {
        let size = self.dir.commit(t)?;
        if size > 0 {
            upkeep::enforce_max_size(&self.dir);
        }
        Ok(size)
    }

    /// True when a copy of `key` read now (under generation `gen`) would be kept: only then
    /// is a body read whole, so memory beyond `memory` is never spent on copies.
    fn hot_wanted(&self, key: &file::Hash, gen: u64, body_len: u64) -> bool {
        self.dir.catalog().admits(key, gen, body_len)
    }
    /// Opens and validates the object file of `hash`, keeping it open when `indexed` (its
    /// index entry when the lookup began) still describes it; `None` when it is not there.
    pub(super) fn open_file(
        &self,
        hash: &file::Hash,
        indexed: Option<Entry>,
    ) -> Option<(Arc<OpenFile>, CacheMeta)> {
        let (f, o, meta) = self.dir.open_object(hash)?;
        let open = Arc::new(OpenFile {
            file: Arc::new(f),
            header: o.header,
            quick: QuickMeta::of(&meta, &o.meta.0),
            internal: o.meta.0,
            response: super::memory::with_room(meta.response_header()),
        });
        if let Some(e) = indexed.filter(|e| e.size == open.header.file_len()) {
            self.dir.catalog().put_open(hash, e.gen, open.clone());
        }
        Some((open, meta))
    }

    /// A small indexed object (entry `e`, body within the memory tier's largest): reads its
    /// body whole and keeps a copy in memory when the tier takes it; `None` (nothing read)
    /// when the tier would not.
    pub(super) fn read_hot(
        &self,
        hash: &file::Hash,
        e: &Entry,
        open: &OpenFile,
    ) -> Result<Option<Bytes>> {
        let header = &open.header;
        if !self.hot_wanted(hash, e.gen, header.body_len) {
            return Ok(None);
        }
        let body = BodyReader::new(open.file.clone(), header)
            .read_chunk(header.body_len as usize)
            .or_err(FileReadError, "cache: cannot read the body")?
            .map(Bytes::from)
            .unwrap_or_default();
        let hot = Arc::new(Hot {
            quick: open.quick,
            internal: open.internal.clone(),
            header: open.response.clone(),
            body: body.clone(),
            file_len: header.file_len(),
        });
        self.dir.catalog().put_hot(hash, e.gen, hot);
        Ok(Some(body))
    }

    /// Counts `n` body bytes served from the zone.
    pub(super) fn count_served(&self, n: u64) {
        self.bytes_served.fetch_add(n, Ordering::Relaxed);
    }

    /// The zone's catalog, locked.
    pub(super) fn catalog(&self) -> std::sync::MutexGuard<'_, super::catalog::Catalog> {
        self.dir.catalog()
    }
}

/// A hit's body: read from the object's file, or a memory copy.
enum HitBody {
    File(BodyReader),
    /// The whole body, and the range `pos..end` left to send.
    Memory {
        body: Bytes,
        pos: usize,
        end: usize,
    },
}

impl HitBody {
    fn memory(body: Bytes) -> HitBody {
        let end = body.len();
        HitBody::Memory { body, pos: 0, end }
    }
}

/// Streams a stored object's body.
struct DiskHit {
    zone: &'static DiskStorage,
    body: HitBody,
    file_len: u64,
}

#[async_trait]
impl HandleHit for DiskHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let chunk = match &mut self.body {
            HitBody::File(f) => f
                .read_chunk(CHUNK)
                .or_err(FileReadError, "cache: cannot read the body")?
                .map(Bytes::from),
            // Zero-copy: the client's writes get slices of the shared bytes.
            HitBody::Memory { body, pos, end } => (*pos < *end).then(|| {
                let from = *pos;
                *pos = (*end).min(from + CHUNK);
                body.slice(from..*pos)
            }),
        };
        let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
        self.zone.bytes_served.fetch_add(n, Ordering::Relaxed);
        Ok(chunk)
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// `end` is exclusive: pingora's range filter passes the bounds of a `Range<usize>`.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let (start, end) = (start as u64, end.map(|e| e as u64));
        match &mut self.body {
            HitBody::File(f) => f.seek(start, end),
            HitBody::Memory { body, pos, end: to } => {
                file::body_range(start, end, body.len() as u64).map(|(from, until)| {
                    // Both within the body, which is in memory: they fit a usize.
                    (*pos, *to) = (from as usize, until as usize);
                })
            }
        }
        .map_err(|e| Error::explain(InternalError, format!("cache: seek: {e}")))
    }

    fn get_eviction_weight(&self) -> usize {
        usize::try_from(self.file_len).unwrap_or(usize::MAX)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Writes a miss to a temp file; `out` is `None` once it is not stored (too large, error).
/// Dropping it (client abort, upstream error) drops the [`TempFile`], which deletes the file.
struct DiskMiss {
    zone: &'static DiskStorage,
    out: Option<TempFile>,
}

#[async_trait]
impl HandleMiss for DiskMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let max = self.zone.dir.max_object_size();
        if out.header().body_len + data.len() as u64 > max {
            info!(
                "cache {}: not storing {}: body larger than max_object_size ({max} bytes)",
                self.zone.path().display(),
                file::hex(&out.header().key)
            );
            self.out = None;
        } else if let Err(e) = out.append(&data) {
            self.zone.dir.store_error(&e);
            self.out = None;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let size = match self.out.take().map(|t| self.zone.commit(t)) {
            None => 0,
            Some(Ok(size)) => size,
            Some(Err(e)) => {
                self.zone.dir.store_error(&e);
                0
            }
        };
        Ok(MissFinishType::Created(
            usize::try_from(size).unwrap_or(usize::MAX),
        ))
    }
}

#[async_trait]
impl Storage for DiskStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        let (indexed, hot, open, loading, hot_max) = {
            let mut catalog = self.dir.catalog();
            let indexed = catalog.touch(&hash, Instant::now());
            let hot = indexed.and_then(|_| catalog.get_hot(&hash));
            let open = match (indexed, &hot) {
                (Some(_), None) => catalog.get_open(&hash),
                _ => None,
            };
            let loading = catalog.index().is_loading();
            (indexed, hot, open, loading, catalog.memory().max_body())
        };
        if let Some(hit) = hot.as_deref().and_then(|h| Some((h.meta()?, h))) {
            let (meta, hot) = hit;
            let hit = DiskHit {
                zone: self,
                body: HitBody::memory(hot.body.clone()),
                file_len: hot.file_len,
            };
            return Ok(Some((meta, Box::new(hit))));
        }
        // Until the loader is done, an object not indexed yet may still be on disk.
        if indexed.is_none() && !loading {
            return Ok(None);
        }
        // An open file: no open, stat or header decoding; else open and validate the file.
        let (open, meta) = match open.and_then(|o| Some((o.meta()?, o))) {
            Some((meta, open)) => (open, meta),
            None => {
                let Some(found) = self.open_file(&hash, indexed) else {
                    return Ok(None);
                };
                found
            }
        };
        let header = &open.header;
        let size = header.file_len();
        let reader = BodyReader::new(open.file.clone(), header);
        match indexed {
            Some(e) if e.size != size => {
                self.dir.catalog().set_size(&hash, size);
            }
            Some(e) if hot_max > 0 && header.body_len <= hot_max => {
                if let Some(body) = self.read_hot(&hash, &e, &open)? {
                    let hit = DiskHit {
                        zone: self,
                        body: HitBody::memory(body),
                        file_len: size,
                    };
                    return Ok(Some((meta, Box::new(hit))));
                }
            }
            Some(_) => {}
            None => {
                let mut catalog = self.dir.catalog();
                if catalog.index().is_tombstoned(&hash, &header.primary) {
                    return Ok(None); // removed since the loader started
                }
                if !catalog.index().contains(&hash) {
                    catalog.insert(hash, Entry::now(size, header.primary));
                }
            }
        }
        let hit = DiskHit {
            zone: self,
            body: HitBody::File(reader),
            file_len: size,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (hash, primary) = (key.combined_bin(), key.primary_bin());
        let out = match meta.serialize() {
            Ok(meta) => TempFile::create(self.dir.temp_path(), hash, primary, meta, WRITE_BUFFER)
                .inspect_err(|e| self.dir.store_error(e))
                .ok(),
            Err(e) => {
                warn!(
                    "cache {}: cannot serialize meta: {e}",
                    self.path().display()
                );
                None
            }
        };
        Ok(Box::new(DiskMiss { zone: self, out }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // Entries have no storage-defined ID here, so an identified one is never ours.
        if let PurgeTarget::Exact(CacheEntryKey::Identified { .. }) = target {
            return Ok(PurgeOutcome::NotFound);
        }
        let hash = target.key().combined_bin();
        let mut catalog = self.dir.catalog();
        Ok(if self.dir.remove_locked(&mut catalog, &hash) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    /// Marks the object stale by rewriting its meta (the body stays for a 304).
    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if let PurgeTarget::Exact(CacheEntryKey::Identified { .. }) = target {
            return Ok(PurgeOutcome::NotFound);
        }
        let expired = self.rewrite_meta(&target.key().combined_bin(), |mut meta| {
            meta.expire_at(SystemTime::now());
            meta.serialize()
        })?;
        Ok(if expired {
            PurgeOutcome::Expired
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let new = meta.serialize()?;
        self.rewrite_meta(&key.combined_bin(), |_| Ok(new))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
