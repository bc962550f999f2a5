//! The in-memory index of a disk cache zone: every stored object's size, last read and
//! primary hash, in least-recently-read order, plus the variants of each primary key.
//!
//! It is rebuilt from the files at startup by a background loader ([`DiskStorage::run_loader`],
//! here with eviction and the sweeper). While the loader runs, objects removed (purged,
//! evicted, swept) are remembered as tombstones so the loader does not bring back an object it
//! read just before it was removed; until it is done, an index miss checks the disk.
//!
//! It also keeps the zone's memory tier: the decoded header and the body of recently read
//! small objects ([`Hot`]), in an LRU of their own bounded by `caches.NAME.memory`. A hot copy
//! lives and dies with its index entry: every insert, removal and meta rewrite of a key drops
//! its copy, and a copy read from a file is only admitted while the entry it was read under
//! is still the current one (its generation), so memory never serves what the disk no
//! longer holds.

use super::file::{self, FormatError, Hash, Header};
use super::storage::DiskStorage;
use bytes::Bytes;
use log::{debug, info, warn};
use lru::LruCache;
use pingora::http::ResponseHeader;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The largest body kept in memory (and never more than an eighth of the memory tier).
pub const HOT_MAX_BODY: u64 = 1024 * 1024;

/// A stored object's copy in memory: what a HIT needs without touching the disk.
#[derive(Debug)]
pub struct Hot {
    /// The serialized internal meta (freshness, variance; cheap to decode).
    pub internal: Vec<u8>,
    /// The internal meta's fields when [`pingora::cache::CacheMeta::new`] rebuilds it exactly
    /// (never revalidated: no `updated` or epoch of its own): no decoding at all.
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
    pub fresh_until: SystemTime,
    pub created: SystemTime,
    pub stale_while_revalidate_sec: u32,
    pub stale_if_error_sec: u32,
    pub variance: Option<Hash>,
}

impl Hot {
    /// Bytes charged to the memory tier: the body, the meta and an estimate of the header.
    fn cost(&self) -> u64 {
        let header: usize = self
            .header
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + self.internal.len() + header + 256) as u64
    }
}

/// What the index knows of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Bytes of its file.
    pub size: u64,
    /// When it was last read (or stored, or loaded).
    pub last_access: Instant,
    /// Its primary hash (equal to its key when it has no variance).
    pub primary: Hash,
    /// Changes whenever the key's file is replaced or rewritten (set by the index).
    pub gen: u64,
    /// Reads since it was indexed while the memory tier is on, halved now and then (its
    /// admission).
    pub reads: u32,
}

impl Entry {
    /// An object of `size` bytes under `primary`, read (or stored) now.
    pub fn now(size: u64, primary: Hash) -> Entry {
        Entry {
            size,
            last_access: Instant::now(),
            primary,
            gen: 0,
            reads: 0,
        }
    }
}

/// What the loader should do with an object it found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadDecision {
    /// It is now in the index.
    Inserted,
    /// Leave it: the index already knows the key, or the object was removed meanwhile.
    Skip,
    /// Delete its file: every variant of its primary key was purged meanwhile.
    Delete,
}

#[derive(Debug, Default)]
struct Tombstones {
    keys: HashSet<Hash>,
    primaries: HashSet<Hash>,
}

/// The objects of a zone, least recently read last.
#[derive(Debug)]
pub struct Index {
    lru: LruCache<Hash, Entry>,
    /// primary → keys of its variants, only for keys that differ from their primary (most
    /// objects have no variance and need no entry here).
    variants: HashMap<Hash, Vec<Hash>>,
    bytes: u64,
    /// `Some` while the loader runs.
    loading: Option<Tombstones>,
    /// The last generation given to an entry.
    gen: u64,
    /// The memory tier, least recently read last.
    hot: LruCache<Hash, Arc<Hot>>,
    /// Bytes charged to the memory tier.
    hot_bytes: u64,
    /// The memory tier's bound (`caches.NAME.memory`; 0: off).
    hot_budget: u64,
    /// Reads since the read counts were last halved.
    reads_since_aging: u64,
}

impl Index {
    /// An empty index; `loading` when a loader will fill it.
    pub fn new(loading: bool) -> Self {
        Index {
            lru: LruCache::unbounded(),
            variants: HashMap::new(),
            bytes: 0,
            loading: loading.then(Tombstones::default),
            gen: 0,
            hot: LruCache::unbounded(),
            hot_bytes: 0,
            hot_budget: 0,
            reads_since_aging: 0,
        }
    }

    /// Objects indexed.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// True when no object is indexed.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// Bytes of the indexed objects' files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True until [`Index::finish_loading`].
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// The loader is done: tombstones are no longer needed.
    pub fn finish_loading(&mut self) {
        self.loading = None;
    }

    /// True when `key` is indexed.
    pub fn contains(&self, key: &Hash) -> bool {
        self.lru.contains(key)
    }

    /// The entry of `key` without changing its recency.
    pub fn peek(&self, key: &Hash) -> Option<&Entry> {
        self.lru.peek(key)
    }

    /// Marks `key` read at `now` (most recently used); its entry when indexed.
    pub fn touch(&mut self, key: &Hash, now: Instant) -> Option<Entry> {
        let counting = self.hot_budget > 0;
        let e = self.lru.get_mut(key)?;
        e.last_access = now;
        if !counting {
            return Some(*e); // read counts only serve the memory tier
        }
        e.reads = e.reads.saturating_add(1);
        let e = *e;
        // Counts are halved after about eight reads per object (TinyLFU's reset), so the
        // memory tier follows popularity that changes; amortized O(1) per read.
        self.reads_since_aging += 1;
        if self.reads_since_aging > 8 * self.lru.len() as u64 + 1024 {
            self.reads_since_aging = 0;
            for (_, e) in self.lru.iter_mut() {
                e.reads /= 2;
            }
        }
        Some(e)
    }

    /// Indexes `key` as the most recently used, replacing (and returning) what was there.
    pub fn insert(&mut self, key: Hash, mut entry: Entry) -> Option<Entry> {
        self.gen += 1;
        entry.gen = self.gen;
        self.drop_hot(&key);
        let old = self.lru.push(key, entry).and_then(|(k, old)| {
            // push returns the replaced entry for the same key (the index is unbounded).
            (k == key).then_some(old)
        });
        if let Some(o) = &old {
            self.bytes = self.bytes.saturating_sub(o.size);
            self.unlink_variant(&key, &o.primary);
        }
        self.bytes = self.bytes.saturating_add(entry.size);
        if key != entry.primary {
            self.variants.entry(entry.primary).or_default().push(key);
        }
        if let Some(t) = &mut self.loading {
            t.keys.remove(&key);
        }
        old
    }

    /// Changes the file size of an indexed `key` (its meta was rewritten); false when absent.
    pub fn set_size(&mut self, key: &Hash, size: u64) -> bool {
        match self.lru.peek_mut(key) {
            Some(e) => {
                self.bytes = self.bytes.saturating_sub(e.size).saturating_add(size);
                e.size = size;
                self.gen += 1;
                e.gen = self.gen;
                self.drop_hot(key);
                true
            }
            None => false,
        }
    }

    /// Bounds the memory tier to `budget` bytes (0 turns it off), dropping copies beyond.
    pub fn set_hot_budget(&mut self, budget: u64) {
        self.hot_budget = budget;
        self.shrink_hot();
    }

    /// The memory tier's bound.
    pub fn hot_budget(&self) -> u64 {
        self.hot_budget
    }

    /// The largest body the memory tier takes (0: none).
    pub fn hot_max_body(&self) -> u64 {
        HOT_MAX_BODY.min(self.hot_budget / 8)
    }

    /// Bytes held by the memory tier.
    pub fn hot_bytes(&self) -> u64 {
        self.hot_bytes
    }

    /// The memory copy of `key`, marked most recently read.
    pub fn get_hot(&mut self, key: &Hash) -> Option<Arc<Hot>> {
        self.hot.get(key).cloned()
    }

    /// True when `key` is indexed with generation `gen` (its file was not replaced since).
    pub fn is_current(&self, key: &Hash, gen: u64) -> bool {
        self.lru.peek(key).is_some_and(|e| e.gen == gen)
    }

    /// Would the memory tier take a copy of `key` (read under generation `gen`) costing
    /// `cost` bytes? Yes while there is room; when full, only if `key` was read more often
    /// than the copy it would push out (the least recently read): a long tail of objects
    /// read now and then does not churn the tier's popular copies (TinyLFU's idea).
    pub fn admits(&self, key: &Hash, gen: u64, cost: u64) -> bool {
        let max = self.hot_max_body();
        let Some(e) = self.lru.peek(key).filter(|e| e.gen == gen) else {
            return false;
        };
        if max == 0 || cost > max + 64 * 1024 {
            return false;
        }
        if self.hot.contains(key) || self.hot_bytes + cost <= self.hot_budget {
            return true;
        }
        let victim = self.hot.peek_lru().and_then(|(k, _)| self.lru.peek(k));
        victim.is_none_or(|v| e.reads > v.reads)
    }

    /// Keeps `hot`, read from the file of `key` while its entry had generation `gen`; false
    /// (nothing kept) when the entry changed since, or the object is too large for the tier.
    pub fn put_hot(&mut self, key: &Hash, gen: u64, hot: Arc<Hot>) -> bool {
        let max = self.hot_max_body();
        if hot.body.len() as u64 > max || !self.admits(key, gen, hot.cost()) {
            return false;
        }
        self.drop_hot(key);
        self.hot_bytes += hot.cost();
        self.hot.push(*key, hot);
        self.shrink_hot();
        self.hot.contains(key)
    }

    fn drop_hot(&mut self, key: &Hash) {
        if let Some(h) = self.hot.pop(key) {
            self.hot_bytes = self.hot_bytes.saturating_sub(h.cost());
        }
    }

    fn shrink_hot(&mut self) {
        while self.hot_bytes > self.hot_budget {
            match self.hot.pop_lru() {
                Some((_, h)) => self.hot_bytes = self.hot_bytes.saturating_sub(h.cost()),
                None => {
                    self.hot_bytes = 0;
                    break;
                }
            }
        }
    }

    /// Offers an object found by the loader: indexed as the least recently used unless the
    /// key is known or was removed since the load started.
    pub fn insert_loaded(&mut self, key: Hash, entry: Entry) -> LoadDecision {
        if self.lru.contains(&key) {
            return LoadDecision::Skip;
        }
        if let Some(t) = &self.loading {
            if t.keys.contains(&key) {
                return LoadDecision::Skip;
            }
            if t.primaries.contains(&entry.primary) {
                return LoadDecision::Delete;
            }
        }
        self.insert(key, entry);
        self.lru.demote(&key);
        LoadDecision::Inserted
    }

    /// True when an object found on disk (not in the index) must not be served or indexed:
    /// it, or every variant of its primary key, was removed since the load started.
    pub fn is_tombstoned(&self, key: &Hash, primary: &Hash) -> bool {
        self.loading
            .as_ref()
            .is_some_and(|t| t.keys.contains(key) || t.primaries.contains(primary))
    }

    /// Unindexes `key`; its entry when it was there.
    pub fn remove(&mut self, key: &Hash) -> Option<Entry> {
        if let Some(t) = &mut self.loading {
            t.keys.insert(*key);
        }
        self.drop_hot(key);
        let e = self.lru.pop(key)?;
        self.bytes = self.bytes.saturating_sub(e.size);
        self.unlink_variant(key, &e.primary);
        Some(e)
    }

    /// Records that every variant of `primary` is being purged (matters while loading), and
    /// returns the indexed keys of its variants (the primary's own key included when there).
    pub fn purge_primary(&mut self, primary: &Hash) -> Vec<Hash> {
        if let Some(t) = &mut self.loading {
            t.primaries.insert(*primary);
        }
        let mut keys = self.variants.get(primary).cloned().unwrap_or_default();
        if self.lru.contains(primary) {
            keys.push(*primary);
        }
        keys
    }

    /// Unindexes and returns the least recently used object when `pred` holds for it.
    pub fn pop_lru_if(&mut self, pred: impl Fn(&Entry) -> bool) -> Option<(Hash, Entry)> {
        let (key, e) = self.lru.peek_lru()?;
        if !pred(e) {
            return None;
        }
        let key = *key;
        self.remove(&key).map(|e| (key, e))
    }

    fn unlink_variant(&mut self, key: &Hash, primary: &Hash) {
        if key == primary {
            return;
        }
        if let Some(v) = self.variants.get_mut(primary) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.variants.remove(primary);
            }
        }
    }
}

/// Objects removed per hold of the index lock.
const REMOVE_BATCH: usize = 64;

/// Keeping a zone's index: the loader, eviction to `max_size`, the `inactive` sweeper.
/// Removals pop from the LRU tail, so their cost is proportional to what they remove; after
/// the load, no directory is walked again.
impl DiskStorage {
    /// Indexes the objects on disk (what the background loader does at open): walks the
    /// two-level directories, validates every file's header, deletes the corrupt ones.
    #[doc(hidden)]
    pub fn run_loader(&self) {
        let started = Instant::now();
        let mut subdirs: Vec<(PathBuf, String)> = match fs::read_dir(&self.path) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let hex2 = name.len() == 2 && file::parse_hex(&name.repeat(16)).is_some();
                    (hex2 && e.path().is_dir()).then(|| (e.path(), name))
                })
                .collect(),
            Err(e) => {
                warn!("cache {}: cannot load: {e}", self.path.display());
                Vec::new()
            }
        };
        subdirs.sort();
        for (dir, name) in subdirs {
            match scan_subdir(&dir, &name) {
                Ok(found) => self.index_found(found),
                Err(e) => warn!(
                    "cache {}: cannot read {}: {e}",
                    self.path.display(),
                    dir.display()
                ),
            }
            self.enforce_max_size();
        }
        let mut index = self.index();
        index.finish_loading();
        info!(
            "cache {}: loaded {} objects, {} bytes in {:?}",
            self.path.display(),
            index.len(),
            index.bytes(),
            started.elapsed()
        );
    }

    /// Indexes what [`scan_subdir`] found in one subdirectory, deletes the corrupt files.
    fn index_found(&self, found: Vec<Scanned>) {
        let mut valid = Vec::new();
        for f in found {
            match f {
                Scanned::Valid {
                    path,
                    header,
                    ino,
                    mtime,
                } => valid.push((mtime, header, ino, path)),
                Scanned::Corrupt {
                    path,
                    key,
                    ino,
                    why,
                } => self.discard_corrupt(&key, &path, ino, &why),
                Scanned::Foreign(p) => {
                    warn!(
                        "cache {}: {} is not a cache file, left alone",
                        self.path.display(),
                        p.display()
                    )
                }
            }
        }
        // Newest first: each is demoted to the LRU tail, so the oldest ends up last.
        valid.sort_by_key(|v| std::cmp::Reverse(v.0));
        let mut index = self.index();
        for (_, h, ino, path) in valid {
            let entry = Entry {
                size: h.file_len(),
                last_access: self.opened,
                primary: h.primary,
                gen: 0,
                reads: 0,
            };
            if index.insert_loaded(h.key, entry) == LoadDecision::Delete
                && file::inode(&path) == Some(ino)
            {
                file::unlink(&path);
            }
        }
    }

    /// Removes objects not read for `inactive`, every min(inactive / 2, 60 s), at least 1 s.
    pub(super) fn sweep_forever(&self) {
        loop {
            let period = (self.settings().inactive / 2)
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            std::thread::sleep(period);
            let inactive = self.settings().inactive;
            if !inactive.is_zero() {
                let freed = self.clean_older_than(inactive);
                if freed > 0 {
                    debug!(
                        "cache {}: inactive: freed {freed} bytes",
                        self.path.display()
                    );
                }
            }
        }
    }

    /// Removes objects while `next` picks one, a batch per lock hold; returns the bytes freed.
    pub(super) fn remove_while(
        &self,
        mut next: impl FnMut(&mut Index) -> Option<(Hash, Entry)>,
    ) -> u64 {
        let mut freed = 0;
        loop {
            let mut index = self.index();
            for _ in 0..REMOVE_BATCH {
                let Some((key, entry)) = next(&mut index) else {
                    return freed;
                };
                file::unlink(&self.object_path(&key));
                freed += entry.size;
            }
        }
    }

    /// Evicts the least recently read objects until the total is within `max_size`.
    pub(super) fn enforce_max_size(&self) {
        let max = self.max_size();
        let freed = self.remove_while(|index| {
            let over = index.bytes() > max;
            over.then(|| index.pop_lru_if(|_| true)).flatten()
        });
        if freed > 0 {
            debug!(
                "cache {}: max_size: evicted {freed} bytes",
                self.path.display()
            );
        }
    }
}

/// What the loader found in an object subdirectory.
#[derive(Debug)]
pub enum Scanned {
    /// A valid object.
    Valid {
        /// Its file.
        path: PathBuf,
        /// Its header.
        header: Header,
        /// Its inode.
        ino: u64,
        /// When it was stored.
        mtime: SystemTime,
    },
    /// A file named like an object that is not valid, to delete.
    Corrupt {
        /// Its file.
        path: PathBuf,
        /// The key its name stands for.
        key: Hash,
        /// Its inode, when it could be read.
        ino: Option<u64>,
        /// Why it is not valid.
        why: FormatError,
    },
    /// Something not named like an object: left alone.
    Foreign(PathBuf),
}

/// Reads and validates every file in the object subdirectory `dir` (named `name`).
pub fn scan_subdir(dir: &Path, name: &str) -> io::Result<Vec<Scanned>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Some(key) = entry.file_name().to_str().and_then(file::parse_hex) else {
            found.push(Scanned::Foreign(path));
            continue;
        };
        let Ok(f) = File::open(&path) else { continue }; // removed meanwhile
        let ino = f.metadata().ok().map(|m| m.ino());
        let read = if file::subdir_name(&key) != name {
            Err(FormatError::Misplaced)
        } else {
            file::read_object(&f, &key)
        };
        found.push(match read {
            Ok(o) => Scanned::Valid {
                path,
                header: o.header,
                ino: o.ino,
                mtime: o.mtime,
            },
            Err(why) => Scanned::Corrupt {
                path,
                key,
                ino,
                why,
            },
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(size: u64, primary: u8) -> Entry {
        Entry {
            size,
            last_access: Instant::now(),
            primary: [primary; 16],
            gen: 0,
            reads: 0,
        }
    }

    fn hot(body: usize) -> Arc<Hot> {
        Arc::new(Hot {
            internal: Vec::new(),
            quick: None,
            header: ResponseHeader::build(200, None).unwrap(),
            body: Bytes::from(vec![7u8; body]),
            file_len: body as u64 + 100,
        })
    }

    fn gen(i: &Index, key: u8) -> u64 {
        i.peek(&[key; 16]).map(|e| e.gen).unwrap()
    }

    #[test]
    fn the_memory_tier_follows_the_entries_and_its_budget() {
        let mut i = Index::new(false);
        // Off by default: nothing is kept.
        i.insert([1; 16], e(10, 1));
        assert!(!i.put_hot(&[1; 16], gen(&i, 1), hot(100)));
        i.set_hot_budget(8 * 1000);
        assert_eq!(i.hot_max_body(), 1000);
        assert!(!i.put_hot(&[1; 16], gen(&i, 1), hot(1001)), "too large");
        assert!(!i.put_hot(&[9; 16], 0, hot(10)), "not indexed");
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        assert_eq!(i.get_hot(&[1; 16]).map(|h| h.body.len()), Some(900));
        // A copy read under an older generation is refused once the entry changed.
        let old = gen(&i, 1);
        i.insert([1; 16], e(10, 1));
        assert!(i.get_hot(&[1; 16]).is_none(), "a new file drops the copy");
        assert!(!i.put_hot(&[1; 16], old, hot(900)));
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        let before = gen(&i, 1);
        assert!(i.set_size(&[1; 16], 11));
        assert!(
            i.get_hot(&[1; 16]).is_none(),
            "a rewritten meta drops the copy"
        );
        assert!(!i.put_hot(&[1; 16], before, hot(900)));
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        i.remove(&[1; 16]);
        assert!(i.get_hot(&[1; 16]).is_none(), "a removal drops the copy");
        assert_eq!(i.hot_bytes(), 0);
        // The budget: least recently read copies go first, for a key read more often.
        let now = Instant::now();
        for k in 2..=20u8 {
            i.insert([k; 16], e(10, k));
            for _ in 0..k {
                i.touch(&[k; 16], now);
            }
            assert!(i.put_hot(&[k; 16], gen(&i, k), hot(900)));
            assert!(i.hot_bytes() <= 8000);
            i.get_hot(&[2; 16]); // 2 stays the most recently read
        }
        assert!(i.get_hot(&[2; 16]).is_some());
        assert!(i.get_hot(&[3; 16]).is_none());
        assert!(i.get_hot(&[20; 16]).is_some());
        // Full: a key read less often than the least recently read copy is not admitted.
        i.insert([30; 16], e(10, 30));
        i.touch(&[30; 16], now);
        assert!(!i.admits(&[30; 16], gen(&i, 30), 1200));
        assert!(!i.put_hot(&[30; 16], gen(&i, 30), hot(900)));
        assert!(i.get_hot(&[30; 16]).is_none());
        // Read counts are halved as reads go by: old popularity fades.
        let before = i.peek(&[20; 16]).unwrap().reads;
        for _ in 0..(8 * i.len() + 1100) {
            i.touch(&[30; 16], now);
        }
        assert!(i.peek(&[20; 16]).unwrap().reads < before);
        assert!(i.admits(&[30; 16], gen(&i, 30), 1200));
        // Eviction from the index drops the copy too.
        while i.pop_lru_if(|_| true).is_some() {}
        assert_eq!(i.hot_bytes(), 0);
        i.insert([1; 16], e(10, 1));
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        i.set_hot_budget(0);
        assert!(i.get_hot(&[1; 16]).is_none());
        assert_eq!(i.hot_bytes(), 0);
    }

    #[test]
    fn lru_order_bytes_and_variants() {
        let mut i = Index::new(false);
        i.insert([1; 16], e(10, 1));
        i.insert([2; 16], e(20, 9));
        i.insert([3; 16], e(30, 9));
        assert_eq!((i.len(), i.bytes()), (3, 60));
        let mut v = i.purge_primary(&[9; 16]);
        v.sort();
        assert_eq!(v, vec![[2; 16], [3; 16]]);
        assert_eq!(i.purge_primary(&[1; 16]), vec![[1; 16]]);
        i.touch(&[1; 16], Instant::now());
        assert_eq!(i.pop_lru_if(|_| true).map(|p| p.0), Some([2; 16]));
        assert_eq!(i.purge_primary(&[9; 16]), vec![[3; 16]]);
        // replacing an entry adjusts the bytes
        i.insert([3; 16], e(5, 9));
        assert_eq!((i.len(), i.bytes()), (2, 15));
        assert!(i.set_size(&[3; 16], 7));
        assert_eq!(i.bytes(), 17);
        assert_eq!(i.remove(&[3; 16]).map(|e| e.size), Some(7));
        assert!(i.purge_primary(&[9; 16]).is_empty());
        assert_eq!(i.pop_lru_if(|e| e.size > 100), None);
        assert_eq!((i.len(), i.bytes()), (1, 10));
    }

    #[test]
    fn loading_keeps_removed_objects_out() {
        let mut i = Index::new(true);
        i.insert([1; 16], e(10, 1));
        assert_eq!(i.insert_loaded([1; 16], e(99, 1)), LoadDecision::Skip);
        assert_eq!(i.insert_loaded([2; 16], e(10, 2)), LoadDecision::Inserted);
        // loaded objects go last in LRU order
        assert_eq!(i.pop_lru_if(|_| true).map(|p| p.0), Some([2; 16]));
        assert_eq!(i.insert_loaded([2; 16], e(10, 2)), LoadDecision::Skip);
        i.purge_primary(&[7; 16]);
        assert_eq!(i.insert_loaded([3; 16], e(10, 7)), LoadDecision::Delete);
        assert!(i.is_tombstoned(&[4; 16], &[7; 16]));
        i.finish_loading();
        assert!(!i.is_tombstoned(&[4; 16], &[7; 16]));
        assert_eq!(i.insert_loaded([2; 16], e(10, 2)), LoadDecision::Inserted);
    }
}
