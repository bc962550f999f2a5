//! Keeping a zone: the loader that indexes the files found at startup (the directory scan),
//! eviction to `max_size`, and the sweeper that removes objects not read for `inactive`.
//!
//! Removals pop from the LRU tail, so their cost is proportional to what they remove; after
//! the load, no directory is walked again.

use super::catalog::Catalog;
use super::file::{self, FormatError, Hash, Header};
use super::index::{Entry, LoadDecision};
use super::zone_dir::ZoneDir;
use log::{debug, info, warn};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Objects removed per hold of the catalog lock.
const REMOVE_BATCH: usize = 64;

/// Indexes the objects on disk (what the background loader does at open): walks the
/// two-level directories, validates every file's header, deletes the corrupt ones.
pub fn run_loader(zone: &ZoneDir) {
    let started = Instant::now();
    let mut subdirs: Vec<(PathBuf, String)> = match fs::read_dir(zone.path()) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let hex2 = name.len() == 2 && file::parse_hex(&name.repeat(16)).is_some();
                (hex2 && e.path().is_dir()).then(|| (e.path(), name))
            })
            .collect(),
        Err(e) => {
            warn!("cache {}: cannot load: {e}", zone.path().display());
            Vec::new()
        }
    };
    subdirs.sort();
    for (dir, name) in subdirs {
        match scan_subdir(&dir, &name) {
            Ok(found) => index_found(zone, found),
            Err(e) => warn!(
                "cache {}: cannot read {}: {e}",
                zone.path().display(),
                dir.display()
            ),
        }
        enforce_max_size(zone);
    }
    let mut catalog = zone.catalog();
    catalog.finish_loading();
    info!(
        "cache {}: loaded {} objects, {} bytes in {:?}",
        zone.path().display(),
        catalog.index().len(),
        catalog.index().bytes(),
        started.elapsed()
    );
}

/// Indexes what [`scan_subdir`] found in one subdirectory, deletes the corrupt files.
fn index_found(zone: &ZoneDir, found: Vec<Scanned>) {
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
            } => zone.discard_corrupt(&key, &path, ino, &why),
            Scanned::Foreign(p) => {
                warn!(
                    "cache {}: {} is not a cache file, left alone",
                    zone.path().display(),
                    p.display()
                )
            }
        }
    }
    // Newest first: each is demoted to the LRU tail, so the oldest ends up last.
    valid.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut catalog = zone.catalog();
    for (_, h, ino, path) in valid {
        let entry = Entry {
            size: h.file_len(),
            last_access: zone.opened(),
            primary: h.primary,
            gen: 0,
            reads: 0,
        };
        if catalog.insert_loaded(h.key, entry) == LoadDecision::Delete
            && file::inode(&path) == Some(ino)
        {
            file::unlink(&path);
        }
    }
}

/// Removes objects not read for `inactive`, every min(inactive / 2, 60 s), at least 1 s.
pub fn sweep_forever(zone: &ZoneDir) {
    loop {
        let period = (zone.inactive() / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        std::thread::sleep(period);
        let inactive = zone.inactive();
        if !inactive.is_zero() {
            let freed = clean_older_than(zone, inactive);
            if freed > 0 {
                debug!(
                    "cache {}: inactive: freed {freed} bytes",
                    zone.path().display()
                );
            }
        }
    }
}

/// Removes objects not read for `older_than`; returns the bytes freed.
pub fn clean_older_than(zone: &ZoneDir, older_than: Duration) -> u64 {
    let Some(cutoff) = Instant::now().checked_sub(older_than) else {
        return 0;
    };
    remove_while(zone, |catalog| {
        catalog.pop_lru_if(|e| e.last_access <= cutoff)
    })
}

/// Removes objects while `next` picks one, a batch per lock hold; returns the bytes freed.
fn remove_while(
    zone: &ZoneDir,
    mut next: impl FnMut(&mut Catalog) -> Option<(Hash, Entry)>,
) -> u64 {
    let mut freed = 0;
    loop {
        let mut catalog = zone.catalog();
        for _ in 0..REMOVE_BATCH {
            let Some((key, entry)) = next(&mut catalog) else {
                return freed;
            };
            file::unlink(&zone.object_path(&key));
            freed += entry.size;
        }
    }
}

/// Evicts the least recently read objects until the total is within `max_size`.
pub fn enforce_max_size(zone: &ZoneDir) {
    let max = zone.max_size();
    let freed = remove_while(zone, |catalog| {
        let over = catalog.index().bytes() > max;
        over.then(|| catalog.pop_lru_if(|_| true)).flatten()
    });
    if freed > 0 {
        debug!(
            "cache {}: max_size: evicted {freed} bytes",
            zone.path().display()
        );
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
