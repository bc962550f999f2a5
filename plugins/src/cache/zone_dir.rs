//! A cache zone's directory and its catalog: where each object's file is, the limits in force,
//! and the object-level operations that change files and catalog together (open and
//! validate, publish a complete temp file, rewrite a meta, remove).
//!
//! Removals (unlink) and renames into place run under the catalog lock, so a removal can never
//! delete a newer object renamed into place under the same name between the catalog update and
//! the unlink. Eviction after a store is the caller's (`super::upkeep`), so this room never
//! walks the LRU itself.

use super::catalog::Catalog;
use super::file::{self, Hash, Object, TempFile};
use super::index::Entry;
use log::warn;
use pingora::cache::CacheMeta;
use pingora::prelude::*;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// A zone's directory of object files and the catalog indexing them.
pub struct ZoneDir {
    path: PathBuf,
    max_size: AtomicU64,
    inactive_ms: AtomicU64,
    max_object_size: AtomicU64,
    /// The index and the memory tier (whose budget is the `memory` setting).
    catalog: Mutex<Catalog>,
    /// When the zone was opened: the last access of every object the loader finds.
    opened: Instant,
    temp_seq: AtomicU64,
    last_store_error: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ZoneDir {
    /// Prepares the zone at `path` (its temp directory created and emptied of what a crash
    /// left, a probe written) with an empty catalog that a loader will fill.
    pub fn create(path: &Path, settings: DiskSettings) -> Result<ZoneDir, String> {
        let cannot = |e: io::Error| format!("cannot write to {}: {e}", path.display());
        let tmp = path.join(TMP);
        fs::create_dir_all(&tmp).map_err(cannot)?;
        file::clean_temp_dir(&tmp).map_err(cannot)?;
        let probe = tmp.join(format!("probe-{}", std::process::id()));
        let written = File::create(&probe).and_then(|mut f| f.write_all(b"probe"));
        file::unlink(&probe);
        written.map_err(cannot)?;
        let dir = ZoneDir {
            path: path.to_path_buf(),
            max_size: AtomicU64::new(0),
            inactive_ms: AtomicU64::new(0),
            max_object_size: AtomicU64::new(0),
            catalog: Mutex::new(Catalog::new(true)),
            opened: Instant::now(),
            temp_seq: AtomicU64::new(0),
            last_store_error: Mutex::new(None),
        };
        dir.set_limits(settings);
        Ok(dir)
    }

    /// The zone's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the zone was opened.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Applies new limits; a smaller `max_size` takes effect at the next eviction.
    pub fn set_limits(&self, settings: DiskSettings) {
        self.max_size.store(settings.max_size, Ordering::Relaxed);
        let inactive = u64::try_from(settings.inactive.as_millis()).unwrap_or(u64::MAX);
        self.inactive_ms.store(inactive, Ordering::Relaxed);
        self.max_object_size
            .store(settings.max_object_size, Ordering::Relaxed);
        self.catalog().set_memory_budget(settings.memory);
    }

    /// `max_size` in force (without the catalog lock [`ZoneDir::settings`] takes).
    pub fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    /// `max_object_size` in force.
    pub fn max_object_size(&self) -> u64 {
        self.max_object_size.load(Ordering::Relaxed)
    }

    /// `inactive` in force.
    pub fn inactive(&self) -> Duration {
        Duration::from_millis(self.inactive_ms.load(Ordering::Relaxed))
    }

    /// The limits in force.
    pub fn settings(&self) -> DiskSettings {
        DiskSettings {
            max_size: self.max_size(),
            inactive: self.inactive(),
            max_object_size: self.max_object_size(),
            memory: self.catalog().memory().budget(),
        }
    }

    /// The catalog, locked.
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        lock(&self.catalog)
    }

    /// The file of object `key`.
    pub fn object_path(&self, key: &Hash) -> PathBuf {
        file::object_path(&self.path, key)
    }

    /// A new temp file's path.
    pub fn temp_path(&self) -> PathBuf {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.path
            .join(TMP)
            .join(format!("{}-{seq}", std::process::id()))
    }

    /// Logs a failure to store, at most once a minute.
    pub fn store_error(&self, e: &dyn std::fmt::Display) {
        let mut last = lock(&self.last_store_error);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            warn!("cache {}: cannot store objects: {e}", self.path.display());
        }
    }

    /// Unindexes `key` and deletes its file, under the lock `catalog` is; true when either
    /// was there.
    pub fn remove_locked(&self, catalog: &mut Catalog, key: &Hash) -> bool {
        let indexed = catalog.remove(key).is_some();
        file::unlink(&self.object_path(key)) || indexed
    }

    /// Deletes a file that failed validation (unless another object replaced it meanwhile).
    pub fn discard_corrupt(
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
        let mut catalog = self.catalog();
        if ino.is_some() && file::inode(path) == ino {
            file::unlink(path);
            catalog.remove(key);
        }
    }

    /// Opens and validates the object `key`; `None` (a miss) when absent or invalid.
    pub fn open_object(&self, key: &Hash) -> Option<(File, Object, CacheMeta)> {
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
                let mut catalog = self.catalog();
                if catalog.index().contains(key) && file::inode(&path).is_none() {
                    catalog.remove(key); // removed behind our back
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
    /// The zone may be over `max_size` afterwards: the caller evicts.
    pub fn rewrite_meta(
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
        let mut catalog = self.catalog();
        // Only over the file read: not over a newer object, not after a removal.
        if file::inode(&path) != Some(o.ino) || fs::rename(&tmp, &path).is_err() {
            file::unlink(&tmp);
            return Ok(false);
        }
        let size = header.file_len();
        if !catalog.set_size(key, size) && !catalog.index().is_tombstoned(key, &header.primary) {
            catalog.insert(*key, Entry::now(size, header.primary));
        }
        Ok(true)
    }

    /// Publishes a complete temp file as its object; the object's size (0: not stored). The
    /// zone may be over `max_size` afterwards: the caller evicts.
    pub fn commit(&self, t: TempFile) -> io::Result<u64> {
        let (tmp, header) = t.complete()?;
        let size = header.file_len();
        if size > self.max_size() {
            file::unlink(&tmp);
            return Ok(0);
        }
        let path = self.object_path(&header.key);
        let mut catalog = self.catalog();
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
        catalog.insert(header.key, Entry::now(size, header.primary));
        Ok(size)
    }
}
