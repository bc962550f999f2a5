//! The in-memory index of a disk cache zone: every stored object's size, last read, read
//! count and primary hash, in least-recently-read order, plus the variants of each primary
//! key. A pure LRU: it knows nothing of files or of the memory tier.
//!
//! It is rebuilt from the files at startup by a background loader (`super::upkeep`). While the
//! loader runs, objects removed (purged, evicted, swept) are remembered as tombstones so the
//! loader does not bring back an object it read just before it was removed; until it is done,
//! an index miss checks the disk.

use super::file::Hash;
use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

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
    /// Reads counted since it was indexed (see [`Index::touch`]), halved now and then.
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

    /// True when `key` is indexed with generation `gen` (its file was not replaced since).
    pub fn is_current(&self, key: &Hash, gen: u64) -> bool {
        self.lru.peek(key).is_some_and(|e| e.gen == gen)
    }

    /// Marks `key` read at `now` (most recently used), counting the read when `count`; its
    /// entry when indexed.
    pub fn touch(&mut self, key: &Hash, now: Instant, count: bool) -> Option<Entry> {
        let e = self.lru.get_mut(key)?;
        e.last_access = now;
        if !count {
            return Some(*e);
        }
        e.reads = e.reads.saturating_add(1);
        let e = *e;
        // Counts are halved after about eight reads per object (TinyLFU's reset), so they
        // follow popularity that changes; amortized O(1) per read.
        self.reads_since_aging += 1;
        if self.reads_since_aging > 8 * self.lru.len() as u64 + 1024 {
            self.reads_since_aging = 0;
            for (_, e) in self.lru.iter_mut() {
                e.reads /= 2;
            }
        }
        Some(e)
    }

    /// Indexes `key` as the most recently used with a new generation, replacing (and
    /// returning) what was there.
    pub fn insert(&mut self, key: Hash, mut entry: Entry) -> Option<Entry> {
        self.gen += 1;
        entry.gen = self.gen;
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

    /// Changes the file size of an indexed `key` (its meta was rewritten) and gives it a new
    /// generation; false when absent.
    pub fn set_size(&mut self, key: &Hash, size: u64) -> bool {
        match self.lru.peek_mut(key) {
            Some(e) => {
                self.bytes = self.bytes.saturating_sub(e.size).saturating_add(size);
                e.size = size;
                self.gen += 1;
                e.gen = self.gen;
                true
            }
            None => false,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An entry of `size` bytes whose primary key is `[primary; 16]` (also used by the
    /// catalog's tests).
    pub(in crate::cache) fn e(size: u64, primary: u8) -> Entry {
        Entry {
            size,
            last_access: Instant::now(),
            primary: [primary; 16],
            gen: 0,
            reads: 0,
        }
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
        i.touch(&[1; 16], Instant::now(), false);
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
    fn read_counts_are_kept_when_asked_and_halved_as_reads_go_by() {
        let mut i = Index::new(false);
        i.insert([1; 16], e(10, 1));
        i.insert([2; 16], e(10, 2));
        let now = Instant::now();
        assert_eq!(i.touch(&[1; 16], now, false).map(|e| e.reads), Some(0));
        for _ in 0..100 {
            i.touch(&[1; 16], now, true);
        }
        assert_eq!(i.peek(&[1; 16]).map(|e| e.reads), Some(100));
        for _ in 0..(8 * i.len() + 1100) {
            i.touch(&[2; 16], now, true);
        }
        assert!(i.peek(&[1; 16]).is_some_and(|e| e.reads < 100));
        assert_eq!(i.touch(&[9; 16], now, true), None);
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
