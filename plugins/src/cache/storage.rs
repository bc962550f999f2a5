//! `DiskStorage`: pingora-cache's `Storage` on the local disk.
//!
//! One file per object (format in [`super::file`]) under the zone directory, an in-memory
//! index ([`super::index`]) rebuilt by a background loader at startup, LRU eviction to
//! `max_size` after every stored object, and a sweeper thread removing objects not read for
//! `inactive`.
//!
//! Writes go to `<zone>/tmp/` while the body streams and are renamed into place only when
//! complete, so a reader (or a restart) never sees half an object; a dropped miss handler
//! deletes its temp file, and temp files left by a crash are deleted at open.
//!
//! File I/O is blocking, done directly on the runtime's threads: objects and directories are
//! normally in the page cache, the way nginx reads and writes its cache without aio. Removals
//! (unlink) run under the index lock, so a removal can never delete a newer object renamed into
//! place under the same name between the index update and the unlink.

use super::file::{self, BodyReader, Hash, Object, TempFile};
use super::index::{Entry, Hot, Index, QuickMeta};
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
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Largest chunk read from a file at once.
const CHUNK: usize = 64 * 1024;
/// Bytes a miss buffers before writing (larger body pieces are written directly), so a
/// thousand concurrent misses cost 8 MiB, not 64.
const WRITE_BUFFER: usize = 8 * 1024;
/// The temp directory under the zone directory.
const TMP: &str = "tmp";

/// Limits of one cache zone's disk use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSettings {
    /// Total bytes of stored objects (files) kept; the least recently read go first.
    pub max_size: u64,
    /// Objects not read for this long are removed, fresh or not (zero: never).
    pub inactive: Duration,
    /// Larger objects are not stored (they stream through).
    pub max_object_size: u64,
    /// Bytes of recently read small objects also kept in memory (0: none).
    pub memory: u64,
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
    /// Bytes of the objects' copies in memory now.
    pub memory_bytes: u64,
}

/// A cache zone's objects on disk.
pub struct DiskStorage {
    pub(super) path: PathBuf,
    max_size: AtomicU64,
    inactive_ms: AtomicU64,
    max_object_size: AtomicU64,
    /// The index, with the memory tier (whose budget is the `memory` setting).
    index: Mutex<Index>,
    /// When the zone was opened: the last access of every object the loader finds.
    pub(super) opened: Instant,
    bytes_served: AtomicU64,
    temp_seq: AtomicU64,
    last_store_error: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut zones = lock(ZONES.get_or_init(Default::default));
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
        let cannot = |e: io::Error| format!("cannot write to {}: {e}", path.display());
        let tmp = path.join(TMP);
        fs::create_dir_all(&tmp).map_err(cannot)?;
        file::clean_temp_dir(&tmp).map_err(cannot)?;
        let probe = tmp.join(format!("probe-{}", std::process::id()));
        let written = File::create(&probe).and_then(|mut f| f.write_all(b"probe"));
        file::unlink(&probe);
        written.map_err(cannot)?;
        let zone: &'static DiskStorage = Box::leak(Box::new(DiskStorage {
            path: path.to_path_buf(),
            max_size: AtomicU64::new(0),
            inactive_ms: AtomicU64::new(0),
            max_object_size: AtomicU64::new(0),
            index: Mutex::new(Index::new(true)),
            opened: Instant::now(),
            bytes_served: AtomicU64::new(0),
            temp_seq: AtomicU64::new(0),
            last_store_error: Mutex::new(None),
        }));
        zone.set_settings(settings);
        spawn("cache-sweeper", path, move || zone.sweep_forever())?;
        Ok(zone)
    }

    /// The zone's directory (canonical when opened with [`DiskStorage::open`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies new limits (a reload); a smaller `max_size` evicts at once.
    pub fn set_settings(&self, settings: DiskSettings) {
        self.max_size.store(settings.max_size, Ordering::Relaxed);
        let inactive = u64::try_from(settings.inactive.as_millis()).unwrap_or(u64::MAX);
        self.inactive_ms.store(inactive, Ordering::Relaxed);
        self.max_object_size
            .store(settings.max_object_size, Ordering::Relaxed);
        lock(&self.index).set_hot_budget(settings.memory);
        self.enforce_max_size();
    }

    /// `max_size` in force (without the index lock [`DiskStorage::settings`] takes).
    pub(super) fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    /// The limits in force.
    pub fn settings(&self) -> DiskSettings {
        DiskSettings {
            max_size: self.max_size.load(Ordering::Relaxed),
            inactive: Duration::from_millis(self.inactive_ms.load(Ordering::Relaxed)),
            max_object_size: self.max_object_size.load(Ordering::Relaxed),
            memory: lock(&self.index).hot_budget(),
        }
    }

    /// True once the loader has indexed every object found on disk at startup.
    pub fn is_loaded(&self) -> bool {
        !lock(&self.index).is_loading()
    }

    /// Removes every variant stored under `key`'s primary key; true when one was there.
    pub async fn purge_key(&self, key: &CacheKey) -> bool {
        let primary = key.primary_bin();
        let mut index = lock(&self.index);
        let mut keys = index.purge_primary(&primary);
        keys.extend([primary, key.combined_bin()]);
        keys.sort_unstable();
        keys.dedup();
        let mut found = false;
        for k in keys {
            found |= self.remove_locked(&mut index, &k);
        }
        found
    }

    /// Removes objects not read for `older_than`; returns the bytes freed.
    pub fn clean_older_than(&self, older_than: Duration) -> u64 {
        let Some(cutoff) = Instant::now().checked_sub(older_than) else {
            return 0;
        };
        self.remove_while(|index| index.pop_lru_if(|e| e.last_access <= cutoff))
    }

    /// Counters now (while the loader runs, of the objects indexed so far).
    pub fn totals(&self) -> Totals {
        let index = lock(&self.index);
        Totals {
            objects: index.len() as u64,
            bytes: index.bytes(),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            memory_bytes: index.hot_bytes(),
        }
    }

    /// The index, locked.
    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    pub(super) fn object_path(&self, key: &Hash) -> PathBuf {
        file::object_path(&self.path, key)
    }

    fn temp_path(&self) -> PathBuf {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.path
            .join(TMP)
            .join(format!("{}-{seq}", std::process::id()))
    }

    /// Logs a failure to store, at most once a minute.
    fn store_error(&self, e: &dyn std::fmt::Display) {
        let mut last = lock(&self.last_store_error);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            warn!("cache {}: cannot store objects: {e}", self.path.display());
        }
    }

    /// Unindexes `key` and deletes its file; true when either was there.
    fn remove_locked(&self, index: &mut Index, key: &Hash) -> bool {
        let indexed = index.remove(key).is_some();
        file::unlink(&self.object_path(key)) || indexed
    }

    /// Deletes a file that failed validation (unless another object replaced it meanwhile).
    pub(super) fn discard_corrupt(
        &self,
        key: &Hash,
        path: &Path,
        ino: Option<u64>,
        why: &file::FormatError,
    ) {
        warn!(
            "cache {}: removing {}: {why}",
            self.path.display(),
            path.display()
        );
        let mut index = lock(&self.index);
        if ino.is_some() && file::inode(path) == ino {
            file::unlink(path);
            index.remove(key);
        }
    }

    /// Opens and validates the object `key`; `None` (a miss) when absent or invalid.
    fn open_object(&self, key: &Hash) -> Option<(File, Object, CacheMeta)> {
        let path = self.object_path(key);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(
                        "cache {}: cannot open {}: {e}",
                        self.path.display(),
                        path.display()
                    );
                }
                let mut index = lock(&self.index);
                if index.contains(key) && file::inode(&path).is_none() {
                    index.remove(key); // removed behind our back
                }
                return None;
            }
        };
        let read = file::read_object(&f, key).and_then(|o| {
            // The checksum says the meta is what was stored; pingora must be able to read it.
            match CacheMeta::deserialize(&o.meta.0, &o.meta.1) {
                Ok(meta) => Ok((o, meta)),
                Err(e) => Err(file::FormatError::BadMeta(e.to_string())),
            }
        });
        match read {
            Ok((o, meta)) => Some((f, o, meta)),
            Err(why) => {
                let ino = f.metadata().ok().map(|m| m.ino());
                self.discard_corrupt(key, &path, ino, &why);
                None
            }
        }
    }

    /// Replaces the meta of the stored object `key` by what `meta` makes of the old one (a new
    /// file with the old body, renamed over the old one). `Ok(false)` when it is not stored.
    fn rewrite_meta(
        &self,
        key: &Hash,
        meta: impl FnOnce(CacheMeta) -> Result<(Vec<u8>, Vec<u8>)>,
    ) -> Result<bool> {
        let Some((old, o, old_meta)) = self.open_object(key) else {
            return Ok(false);
        };
        let new_meta = meta(old_meta)?;
        let tmp = self.temp_path();
        let header = match file::write_rewritten(&tmp, &old, &o, &new_meta) {
            Ok(h) => h,
            Err(e) => {
                self.store_error(&e);
                return Err(Error::because(
                    FileWriteError,
                    "cache: cannot rewrite meta",
                    e,
                ));
            }
        };
        let path = self.object_path(key);
        let mut index = lock(&self.index);
        // Only over the file read: not over a newer object, not after a removal.
        if file::inode(&path) != Some(o.ino) || fs::rename(&tmp, &path).is_err() {
            file::unlink(&tmp);
            return Ok(false);
        }
        let size = header.file_len();
        if !index.set_size(key, size) && !index.is_tombstoned(key, &header.primary) {
            index.insert(*key, Entry::now(size, header.primary));
        }
        drop(index);
        self.enforce_max_size();
        Ok(true)
    }

    /// True when a copy of `key` read now (under generation `gen`) would be kept: only then
    /// is a body read whole, so memory beyond `memory` is never spent on copies.
    fn hot_wanted(&self, key: &Hash, gen: u64, body_len: u64) -> bool {
        lock(&self.index).admits(key, gen, body_len)
    }

    /// Publishes a complete temp file as its object; the object's size (0: not stored).
    fn commit(&self, t: TempFile) -> io::Result<u64> {
        let (tmp, header) = t.complete()?;
        let size = header.file_len();
        if size > self.max_size.load(Ordering::Relaxed) {
            file::unlink(&tmp);
            return Ok(0);
        }
        let path = self.object_path(&header.key);
        let mut index = lock(&self.index);
        let mut renamed = fs::rename(&tmp, &path);
        if renamed
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            if let Some(dir) = path.parent() {
                renamed = fs::create_dir_all(dir).and_then(|()| fs::rename(&tmp, &path));
            }
        }
        if let Err(e) = renamed {
            file::unlink(&tmp);
            return Err(e);
        }
        index.insert(header.key, Entry::now(size, header.primary));
        drop(index);
        self.enforce_max_size();
        Ok(size)
    }
}

/// The serialized response header of the smallest valid meta: [`Hot::meta`] decodes the
/// internal meta with it (cheap) instead of the object's own zstd-compressed header.
fn placeholder_header() -> Option<&'static [u8]> {
    static HEADER: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    HEADER
        .get_or_init(|| {
            let header = pingora::http::ResponseHeader::build(200, Some(0)).ok()?;
            let t = SystemTime::UNIX_EPOCH;
            CacheMeta::new(t, t, 0, 0, header)
                .serialize()
                .ok()
                .map(|m| m.1)
        })
        .as_deref()
}

impl QuickMeta {
    fn build(&self, header: pingora::http::ResponseHeader) -> CacheMeta {
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
    fn of(meta: &CacheMeta, internal: &[u8]) -> Option<QuickMeta> {
        let q = QuickMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
        };
        let header = pingora::http::ResponseHeader::build(200, Some(0)).ok()?;
        let rebuilt = q.build(header).serialize().ok()?;
        (rebuilt.0 == internal).then_some(q)
    }
}

impl Hot {
    /// A [`CacheMeta`] equal to the stored one, without decompressing its header.
    fn meta(&self) -> Option<CacheMeta> {
        if let Some(q) = &self.quick {
            return Some(q.build(self.header.clone()));
        }
        let mut meta = CacheMeta::deserialize(&self.internal, placeholder_header()?).ok()?;
        *meta.response_header_mut() = self.header.clone();
        Some(meta)
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
        let max = self.zone.max_object_size.load(Ordering::Relaxed);
        if out.header().body_len + data.len() as u64 > max {
            info!(
                "cache {}: not storing {}: body larger than max_object_size ({max} bytes)",
                self.zone.path.display(),
                file::hex(&out.header().key)
            );
            self.out = None;
        } else if let Err(e) = out.append(&data) {
            self.zone.store_error(&e);
            self.out = None;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let size = match self.out.take().map(|t| self.zone.commit(t)) {
            None => 0,
            Some(Ok(size)) => size,
            Some(Err(e)) => {
                self.zone.store_error(&e);
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
        let (indexed, hot, loading, hot_max) = {
            let mut index = lock(&self.index);
            let indexed = index.touch(&hash, Instant::now());
            let hot = indexed.and_then(|_| index.get_hot(&hash));
            (indexed, hot, index.is_loading(), index.hot_max_body())
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
        let Some((f, o, meta)) = self.open_object(&hash) else {
            return Ok(None);
        };
        let size = o.header.file_len();
        let mut reader = BodyReader::new(f, &o.header);
        match indexed {
            Some(e) if e.size != size => {
                lock(&self.index).set_size(&hash, size);
            }
            Some(e)
                if hot_max > 0
                    && o.header.body_len <= hot_max
                    && self.hot_wanted(&hash, e.gen, o.header.body_len) =>
            {
                // Small and indexed: read it whole and keep a copy in memory.
                let body = reader
                    .read_chunk(o.header.body_len as usize)
                    .or_err(FileReadError, "cache: cannot read the body")?
                    .map(Bytes::from)
                    .unwrap_or_default();
                let hot = Arc::new(Hot {
                    quick: QuickMeta::of(&meta, &o.meta.0),
                    internal: o.meta.0,
                    header: meta.response_header().clone(),
                    body: body.clone(),
                    file_len: size,
                });
                lock(&self.index).put_hot(&hash, e.gen, hot);
                let hit = DiskHit {
                    zone: self,
                    body: HitBody::memory(body),
                    file_len: size,
                };
                return Ok(Some((meta, Box::new(hit))));
            }
            Some(_) => {}
            None => {
                let mut index = lock(&self.index);
                if index.is_tombstoned(&hash, &o.header.primary) {
                    return Ok(None); // removed since the loader started
                }
                if !index.contains(&hash) {
                    index.insert(hash, Entry::now(size, o.header.primary));
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
            Ok(meta) => TempFile::create(self.temp_path(), hash, primary, meta, WRITE_BUFFER)
                .inspect_err(|e| self.store_error(e))
                .ok(),
            Err(e) => {
                warn!("cache {}: cannot serialize meta: {e}", self.path.display());
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
        let mut index = lock(&self.index);
        Ok(if self.remove_locked(&mut index, &hash) {
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
