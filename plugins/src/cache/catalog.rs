//! A zone's catalog: its index ([`Index`], a pure LRU of the objects on disk), its memory
//! tier ([`MemoryTier`]) and its open files ([`OpenFiles`]) under one lock, kept in step.
//!
//! A copy in memory and an open file live and die with their index entry: every insert,
//! removal, eviction and meta rewrite of a key drops both, and one read from a file is only
//! admitted while the entry it was read under is still the current one (its generation), so
//! neither ever serves what the disk no longer holds. Mutations go through [`Catalog`]; the index and the tier are
//! lent out read-only.

use super::file::Hash;
use super::index::{Entry, Index, LoadDecision};
use super::memory::{Hot, MemoryTier};
use super::open_files::{OpenFile, OpenFiles};
use std::sync::Arc;
use std::time::Instant;

/// The index and the memory tier of a zone.
#[derive(Debug)]
pub struct Catalog {
    index: Index,
    memory: MemoryTier,
    open: OpenFiles,
}

impl Catalog {
    /// An empty catalog with the memory tier off; `loading` when a loader will fill it.
    pub fn new(loading: bool) -> Self {
        Catalog {
            index: Index::new(loading),
            memory: MemoryTier::default(),
            open: OpenFiles::default(),
        }
    }

    /// The index, read-only.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The memory tier, read-only.
    pub fn memory(&self) -> &MemoryTier {
        &self.memory
    }

    /// The loader is done (see [`Index::finish_loading`]).
    pub fn finish_loading(&mut self) {
        self.index.finish_loading();
    }

    /// Marks `key` read at `now`; its reads are counted while the memory tier is on (they
    /// serve only its admission).
    pub fn touch(&mut self, key: &Hash, now: Instant) -> Option<Entry> {
        let count = self.memory.is_on();
        self.index.touch(key, now, count)
    }

    /// Indexes `key` (a new file), dropping its copy in memory; what was indexed before.
    pub fn insert(&mut self, key: Hash, entry: Entry) -> Option<Entry> {
        self.forget(&key);
        self.index.insert(key, entry)
    }

    /// Offers an object found by the loader (see [`Index::insert_loaded`]).
    pub fn insert_loaded(&mut self, key: Hash, entry: Entry) -> LoadDecision {
        let decision = self.index.insert_loaded(key, entry);
        if decision == LoadDecision::Inserted {
            self.forget(&key);
        }
        decision
    }

    /// A rewritten meta: the new file size of an indexed `key`, its copy dropped; false when
    /// absent.
    pub fn set_size(&mut self, key: &Hash, size: u64) -> bool {
        let indexed = self.index.set_size(key, size);
        if indexed {
            self.forget(key);
        }
        indexed
    }

    /// Unindexes `key` and drops its copy; its entry when it was indexed.
    pub fn remove(&mut self, key: &Hash) -> Option<Entry> {
        self.forget(key);
        self.index.remove(key)
    }

    /// See [`Index::purge_primary`].
    pub fn purge_primary(&mut self, primary: &Hash) -> Vec<Hash> {
        self.index.purge_primary(primary)
    }

    /// Unindexes the least recently used object when `pred` holds for it, dropping its copy.
    pub fn pop_lru_if(&mut self, pred: impl Fn(&Entry) -> bool) -> Option<(Hash, Entry)> {
        let popped = self.index.pop_lru_if(pred)?;
        self.forget(&popped.0);
        Some(popped)
    }

    /// Bounds the memory tier (see [`MemoryTier::set_budget`]).
    pub fn set_memory_budget(&mut self, budget: u64) {
        self.memory.set_budget(budget);
    }

    /// The memory copy of `key`, marked most recently read.
    pub fn get_hot(&mut self, key: &Hash) -> Option<Arc<Hot>> {
        self.memory.get(key)
    }

    /// Would the memory tier take a copy of `key`, read under generation `gen`, costing `cost`
    /// bytes? Never once the entry changed (see [`MemoryTier::admits`] for the rest).
    pub fn admits(&self, key: &Hash, gen: u64, cost: u64) -> bool {
        let Some(e) = self.index.peek(key).filter(|e| e.gen == gen) else {
            return false;
        };
        let index = &self.index;
        self.memory
            .admits(key, e.reads, cost, |k| index.peek(k).map(|v| v.reads))
    }

    /// Keeps `hot`, read from the file of `key` while its entry had generation `gen`; false
    /// (nothing kept) when the entry changed since, or the object is too large for the tier.
    pub fn put_hot(&mut self, key: &Hash, gen: u64, hot: Arc<Hot>) -> bool {
        let max = self.memory.max_body();
        if hot.body.len() as u64 > max || !self.admits(key, gen, hot.cost()) {
            return false;
        }
        self.memory.put(key, hot)
    }

    /// The open file of `key`, marked most recently read.
    pub fn get_open(&mut self, key: &Hash) -> Option<Arc<OpenFile>> {
        self.open.get(key)
    }

    /// Keeps `open`, opened as the object `key` while its entry had generation `gen`; false
    /// (not kept) when the entry changed since.
    pub fn put_open(&mut self, key: &Hash, gen: u64, open: Arc<OpenFile>) -> bool {
        if self.index.peek(key).is_none_or(|e| e.gen != gen) {
            return false;
        }
        self.open.put(key, open);
        true
    }

    /// The open files, read-only.
    pub fn open_files(&self) -> &OpenFiles {
        &self.open
    }

    /// Drops the memory copy and the open file of `key` (its entry changed or went).
    fn forget(&mut self, key: &Hash) {
        self.memory.remove(key);
        self.open.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::index::tests::e;
    use bytes::Bytes;
    use pingora::http::ResponseHeader;

    fn hot(body: usize) -> Arc<Hot> {
        Arc::new(Hot {
            internal: Vec::new(),
            quick: None,
            header: ResponseHeader::build(200, None).unwrap(),
            body: Bytes::from(vec![7u8; body]),
            file_len: body as u64 + 100,
        })
    }

    fn gen(i: &Catalog, key: u8) -> u64 {
        i.index().peek(&[key; 16]).map(|e| e.gen).unwrap()
    }

    #[test]
    fn the_memory_tier_follows_the_entries_and_its_budget() {
        let mut i = Catalog::new(false);
        // Off by default: nothing is kept.
        i.insert([1; 16], e(10, 1));
        assert!(!i.put_hot(&[1; 16], gen(&i, 1), hot(100)));
        i.set_memory_budget(8 * 1000);
        assert_eq!(i.memory().max_body(), 1000);
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
        assert_eq!(i.memory().bytes(), 0);
        // The budget: least recently read copies go first, for a key read more often.
        let now = Instant::now();
        for k in 2..=20u8 {
            i.insert([k; 16], e(10, k));
            for _ in 0..k {
                i.touch(&[k; 16], now);
            }
            assert!(i.put_hot(&[k; 16], gen(&i, k), hot(900)));
            assert!(i.memory().bytes() <= 8000);
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
        let before = i.index().peek(&[20; 16]).unwrap().reads;
        for _ in 0..(8 * i.index().len() + 1100) {
            i.touch(&[30; 16], now);
        }
        assert!(i.index().peek(&[20; 16]).unwrap().reads < before);
        assert!(i.admits(&[30; 16], gen(&i, 30), 1200));
        // Eviction from the index drops the copy too.
        while i.pop_lru_if(|_| true).is_some() {}
        assert_eq!(i.memory().bytes(), 0);
        i.insert([1; 16], e(10, 1));
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        i.set_memory_budget(0);
        assert!(i.get_hot(&[1; 16]).is_none());
        assert_eq!(i.memory().bytes(), 0);
    }

    /// An open file of a temp file standing for the object `key`.
    fn open(dir: &std::path::Path, key: u8) -> Arc<OpenFile> {
        let path = dir.join(format!("o{key}"));
        std::fs::write(&path, b"x").unwrap();
        Arc::new(OpenFile {
            file: Arc::new(std::fs::File::open(&path).unwrap()),
            header: super::super::file::Header {
                meta_lens: [0, 0],
                body_len: 1,
                key: [key; 16],
                primary: [key; 16],
            },
            internal: Vec::new(),
            quick: None,
            response: ResponseHeader::build(200, None).unwrap(),
        })
    }

    #[test]
    fn an_open_file_follows_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = Catalog::new(false);
        let k = [1u8; 16];
        assert!(!i.put_open(&k, 0, open(dir.path(), 1)), "not indexed");
        i.insert(k, e(10, 1));
        assert!(i.put_open(&k, gen(&i, 1), open(dir.path(), 1)));
        assert!(i.get_open(&k).is_some());
        // Opened under an older generation: refused once the entry changed.
        let old = gen(&i, 1);
        i.insert(k, e(10, 1));
        assert!(i.get_open(&k).is_none(), "a new file closes the old one");
        assert!(!i.put_open(&k, old, open(dir.path(), 1)));
        assert!(i.put_open(&k, gen(&i, 1), open(dir.path(), 1)));
        assert!(i.set_size(&k, 11));
        assert!(i.get_open(&k).is_none(), "a rewritten meta closes it");
        assert!(i.put_open(&k, gen(&i, 1), open(dir.path(), 1)));
        i.remove(&k);
        assert!(i.get_open(&k).is_none(), "a removal (purge) closes it");
        i.insert(k, e(10, 1));
        assert!(i.put_open(&k, gen(&i, 1), open(dir.path(), 1)));
        while i.pop_lru_if(|_| true).is_some() {}
        assert!(i.open_files().is_empty(), "an eviction closes it");
        // Bounded: the least recently read close first.
        for n in 0..=super::super::open_files::OPEN_FILES {
            let key = [
                (n % 256) as u8,
                (n / 256) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            i.insert(key, e(10, 2));
            let g = i.index().peek(&key).map(|e| e.gen).unwrap();
            assert!(i.put_open(&key, g, open(dir.path(), 2)));
        }
        assert_eq!(i.open_files().len(), super::super::open_files::OPEN_FILES);
        assert!(i.get_open(&[0; 16]).is_none());
    }

    #[test]
    fn a_loaded_or_purged_object_has_no_copy_and_loading_counts_no_reads() {
        let mut i = Catalog::new(true);
        assert_eq!(i.insert_loaded([1; 16], e(10, 1)), LoadDecision::Inserted);
        i.touch(&[1; 16], Instant::now());
        assert_eq!(
            i.index().peek(&[1; 16]).map(|e| e.reads),
            Some(0),
            "tier off"
        );
        i.set_memory_budget(8 * 1000);
        i.touch(&[1; 16], Instant::now());
        assert_eq!(i.index().peek(&[1; 16]).map(|e| e.reads), Some(1));
        assert!(i.put_hot(&[1; 16], gen(&i, 1), hot(900)));
        assert_eq!(i.purge_primary(&[1; 16]), vec![[1; 16]]);
        i.remove(&[1; 16]);
        assert!(i.get_hot(&[1; 16]).is_none());
        assert_eq!(i.memory().bytes(), 0);
    }
}
