//! `DiskStorage` on real files in a temp directory: what is stored is served back intact,
//! survives a restart (simulated with `open_uncached`/`open_without_loader`, which bypass the
//! process-wide map), corrupt files are deleted and never served, aborted writes leave nothing,
//! and the zone stays within `max_size`, `inactive` and `max_object_size`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use pingora::cache::key::{hash_key, CacheHashKey};
use pingora::cache::storage::{MissFinishType, PurgeOutcome, PurgeTarget};
use pingora::cache::trace::{Span, SpanHandle};
use pingora::cache::{CacheKey, CacheMeta, HitHandler, PurgeType, Storage};
use pingora::http::ResponseHeader;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use weir_plugins::cache::file::HEADER_LEN;
use weir_plugins::cache::storage::{DiskSettings, DiskStorage};

fn settings() -> DiskSettings {
    DiskSettings {
        max_size: 1 << 30,
        inactive: Duration::from_secs(600),
        max_object_size: 1 << 30,
        memory: 0,
    }
}

/// [`settings`] with a memory tier.
fn with_memory() -> DiskSettings {
    DiskSettings {
        memory: 8 << 20,
        ..settings()
    }
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

fn meta(tag: &str) -> CacheMeta {
    let mut h = ResponseHeader::build(200, None).unwrap();
    h.insert_header("x-tag", tag).unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h)
}

fn tag(m: &CacheMeta) -> String {
    let v = m.response_header().headers.get("x-tag").unwrap();
    v.to_str().unwrap().to_string()
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn key(text: &str) -> CacheKey {
    CacheKey::new(text, "")
}

fn variant(text: &str, v: &str) -> CacheKey {
    let mut k = key(text);
    k.set_variance_key(hash_key(v));
    k
}

/// Stores `body` under `key` (written in 10,000-byte pieces); the size `finish` reports.
async fn store(s: &'static DiskStorage, key: &CacheKey, tag: &str, body: &[u8]) -> usize {
    let mut miss = s.get_miss_handler(key, &meta(tag), &span()).await.unwrap();
    let mut pieces = body.chunks(10_000).peekable();
    while let Some(p) = pieces.next() {
        let eof = pieces.peek().is_none();
        miss.write_body(p.to_vec().into(), eof).await.unwrap();
    }
    match miss.finish().await.unwrap() {
        MissFinishType::Created(n) => n,
        MissFinishType::Appended(..) => panic!("appended"),
    }
}

async fn read_all(hit: &mut HitHandler) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = hit.read_body().await.unwrap() {
        assert!(!chunk.is_empty() && chunk.len() <= 64 * 1024);
        out.extend_from_slice(&chunk);
    }
    out
}

/// The tag and body stored under `key`, if any.
async fn fetch(s: &'static DiskStorage, key: &CacheKey) -> Option<(String, Vec<u8>)> {
    let (m, mut hit) = s.lookup(key, &span()).await.unwrap()?;
    Some((tag(&m), read_all(&mut hit).await))
}

/// Every object file of the zone (not the temp files).
fn object_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
        if sub.is_dir() && !sub.ends_with("tmp") {
            out.extend(fs::read_dir(&sub).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn disk_bytes(dir: &Path) -> u64 {
    object_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn file_of(dir: &Path, key: &CacheKey) -> PathBuf {
    let hex = key.combined();
    dir.join(&hex[30..]).join(hex)
}

#[tokio::test]
async fn stores_and_serves_meta_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let k = key("GET http://example.com/secret?q=1");
    let b = body(200_000, 7);
    let size = store(s, &k, "one", &b).await;
    assert_eq!(fetch(s, &k).await, Some(("one".into(), b.clone())));
    // one file, named by the hash only
    let files = object_files(dir.path());
    assert_eq!(files, vec![file_of(dir.path(), &k)]);
    assert!(!files[0].to_string_lossy().contains("example"));
    let t = s.totals();
    assert_eq!((t.objects, t.bytes), (1, size as u64));
    assert_eq!(t.bytes, fs::metadata(&files[0]).unwrap().len());
    assert_eq!(t.bytes_served, b.len() as u64);
    assert!(temp_files(dir.path()).is_empty());
    assert!(fetch(s, &key("other")).await.is_none());
    // an empty body is an object too
    store(s, &key("empty"), "e", &[]).await;
    assert_eq!(fetch(s, &key("empty")).await, Some(("e".into(), vec![])));
}

#[tokio::test]
async fn objects_survive_a_restart_before_and_after_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let keys: Vec<CacheKey> = (0..20).map(|i| key(&format!("k{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        store(s1, k, &format!("t{i}"), &body(3000 + i, i as u8)).await;
    }
    let before = s1.totals();

    // Restarted, the loader not run yet: lookups find objects on disk.
    let s2 = DiskStorage::open_without_loader(dir.path(), settings()).unwrap();
    assert!(!s2.is_loaded());
    let got = fetch(s2, &keys[3]).await;
    assert_eq!(got, Some(("t3".into(), body(3003, 3))));
    assert_eq!(s2.totals().objects, 1);
    s2.run_loader();
    assert!(s2.is_loaded());
    let t = s2.totals();
    assert_eq!((t.objects, t.bytes), (before.objects, before.bytes));

    // Restarted with the background loader.
    let s3 = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let want = Some((format!("t{i}"), body(3000 + i, i as u8)));
        assert_eq!(fetch(s3, k).await, want);
    }
    while !s3.is_loaded() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s3.totals().bytes, before.bytes);
}

#[tokio::test]
async fn corrupt_files_are_deleted_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    // The loader must be done before the files are damaged: a late loader would (rightly)
    // find and delete them all, and this part is about lookups in a running zone.
    while !s1.is_loaded() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (a, b, c, d) = (key("a"), key("b"), key("c"), key("d"));
    for k in [&a, &b, &c, &d] {
        store(s1, k, "t", &body(5000, 1)).await;
    }
    // Truncated by one byte; a flipped bit in the meta; a header only.
    let truncate = |k: &CacheKey, len: Option<u64>| {
        let p = file_of(dir.path(), k);
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        let full = f.metadata().unwrap().len();
        f.set_len(len.unwrap_or(full - 1)).unwrap();
    };
    truncate(&a, None);
    let pb = file_of(dir.path(), &b);
    let mut bytes = fs::read(&pb).unwrap();
    bytes[HEADER_LEN + 3] ^= 0x10;
    fs::write(&pb, bytes).unwrap();
    truncate(&d, Some(HEADER_LEN as u64));

    // The running zone: a lookup validates and deletes.
    assert!(fetch(s1, &a).await.is_none());
    assert!(!file_of(dir.path(), &a).exists());
    assert_eq!(s1.totals().objects, 3);

    // A restart: lookups before the load, then the loader.
    let s2 = DiskStorage::open_without_loader(dir.path(), settings()).unwrap();
    assert!(fetch(s2, &b).await.is_none());
    assert!(!pb.exists());
    s2.run_loader();
    assert!(!file_of(dir.path(), &d).exists());
    assert!(fetch(s2, &d).await.is_none());
    assert_eq!(fetch(s2, &c).await, Some(("t".into(), body(5000, 1))));
    assert_eq!(s2.totals().objects, 1);
    assert_eq!(object_files(dir.path()), vec![file_of(dir.path(), &c)]);
}

#[tokio::test]
async fn an_aborted_miss_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let k = key("aborted");
    let mut miss = s.get_miss_handler(&k, &meta("t"), &span()).await.unwrap();
    miss.write_body(body(100_000, 1).into(), false)
        .await
        .unwrap();
    assert_eq!(temp_files(dir.path()).len(), 1);
    drop(miss);
    assert!(temp_files(dir.path()).is_empty());
    assert!(object_files(dir.path()).is_empty());
    assert!(fetch(s, &k).await.is_none());
    assert_eq!(s.totals(), Default::default());
}

#[tokio::test]
async fn temp_files_left_by_a_crash_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let mut miss = s
        .get_miss_handler(&key("x"), &meta("t"), &span())
        .await
        .unwrap();
    miss.write_body(body(1000, 1).into(), false).await.unwrap();
    std::mem::forget(miss); // as if the process died here
    assert_eq!(temp_files(dir.path()).len(), 1);
    DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn least_recently_read_objects_are_evicted_past_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let keys: Vec<CacheKey> = (0..12).map(|i| key(&format!("e{i}"))).collect();
    let size = store(s, &keys[0], "t", &body(10_000, 0)).await as u64;
    let max_size = 5 * size + size / 2;
    s.set_settings(DiskSettings {
        max_size,
        ..settings()
    });
    for k in &keys[1..5] {
        store(s, k, "t", &body(10_000, 0)).await;
    }
    assert_eq!(s.totals().objects, 5);
    // e0 is the oldest but read now: e1 goes first, then e2.
    assert!(fetch(s, &keys[0]).await.is_some());
    store(s, &keys[5], "t", &body(10_000, 0)).await;
    assert!(fetch(s, &keys[1]).await.is_none());
    assert!(!file_of(dir.path(), &keys[1]).exists());
    assert!(fetch(s, &keys[0]).await.is_some());
    store(s, &keys[6], "t", &body(10_000, 0)).await;
    assert!(fetch(s, &keys[2]).await.is_none());
    for k in &keys[7..] {
        store(s, k, "t", &body(10_000, 0)).await;
        assert!(s.totals().bytes <= max_size);
        assert!(disk_bytes(dir.path()) <= max_size);
    }
    assert_eq!(s.totals().objects, 5);
    assert!(fetch(s, &keys[0]).await.is_none()); // not read for a while
                                                 // An object larger than max_size is not stored at all.
    assert_eq!(store(s, &key("huge"), "t", &body(60_000, 0)).await, 0);
    assert_eq!(s.totals().objects, 5);
    // A smaller max_size evicts at once.
    s.set_settings(DiskSettings {
        max_size: 2 * size + size / 2,
        ..settings()
    });
    assert_eq!(s.totals().objects, 2);
    assert_eq!(disk_bytes(dir.path()), s.totals().bytes);
}

#[tokio::test]
async fn objects_not_read_for_inactive_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let (a, b) = (key("a"), key("b"));
    store(s, &a, "t", &body(1000, 0)).await;
    let b_size = store(s, &b, "t", &body(2000, 0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fetch(s, &a).await.is_some());
    assert_eq!(
        s.clean_older_than(Duration::from_millis(200)),
        b_size as u64
    );
    assert!(!file_of(dir.path(), &b).exists());
    assert!(fetch(s, &a).await.is_some());
    assert_eq!(s.clean_older_than(Duration::from_secs(3600)), 0);

    // The sweeper thread, with a short `inactive`.
    let dir = tempfile::tempdir().unwrap();
    let short = DiskSettings {
        inactive: Duration::from_secs(1),
        ..settings()
    };
    let s = DiskStorage::open_uncached(dir.path(), short).unwrap();
    store(s, &a, "t", &body(1000, 0)).await;
    assert_eq!(s.totals().objects, 1);
    for _ in 0..100 {
        if s.totals().objects == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.totals().objects, 0);
    assert!(object_files(dir.path()).is_empty());
}

#[tokio::test]
async fn objects_past_max_object_size_stream_through_unstored() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DiskSettings {
        max_object_size: 25_000,
        ..settings()
    };
    let s = DiskStorage::open_uncached(dir.path(), limits).unwrap();
    assert_eq!(store(s, &key("big"), "t", &body(25_001, 0)).await, 0);
    assert!(fetch(s, &key("big")).await.is_none());
    assert!(temp_files(dir.path()).is_empty() && object_files(dir.path()).is_empty());
    assert!(store(s, &key("fits"), "t", &body(25_000, 0)).await > 25_000);
    assert_eq!(s.totals().objects, 1);
}

#[tokio::test]
async fn seek_serves_byte_ranges() {
    // Served from the file, then (a second read) from the memory tier.
    for cfg in [settings(), with_memory()] {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStorage::open_uncached(dir.path(), cfg).unwrap();
        let k = key("ranges");
        let b = body(300_000, 9);
        store(s, &k, "t", &b).await;
        let (_, mut hit) = s.lookup(&k, &span()).await.unwrap().unwrap();
        assert!(hit.can_seek());
        assert_eq!(hit.get_eviction_weight() as u64, s.totals().bytes);
        hit.seek(10, Some(20)).unwrap(); // end exclusive, as pingora's Range<usize>
        assert_eq!(read_all(&mut hit).await, &b[10..20]);
        hit.seek(70_000, None).unwrap();
        assert_eq!(read_all(&mut hit).await, &b[70_000..]);
        hit.seek(299_990, Some(400_000)).unwrap();
        assert_eq!(read_all(&mut hit).await, &b[299_990..]);
        assert!(hit.seek(300_000, None).is_err());
        hit.seek(0, Some(1)).unwrap();
        assert_eq!(read_all(&mut hit).await, &b[..1]);
    }
}

#[tokio::test]
async fn purges_remove_one_or_every_variant() {
    // Served from the file, then (a second read) from the memory tier.
    for cfg in [settings(), with_memory()] {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStorage::open_uncached(dir.path(), cfg).unwrap();
        let url = "GET http://h/p";
        let keys = [key(url), variant(url, "gzip"), variant(url, "br")];
        for k in &keys {
            store(s, k, "t", &body(1000, 0)).await;
        }
        let other = key("GET http://h/other");
        store(s, &other, "t", &body(1000, 0)).await;
        assert_eq!(s.totals().objects, 4);

        let (compact, sp) = (keys[1].to_compact(), span());
        let target = PurgeTarget::Active(&compact);
        let first = s.purge(target, PurgeType::Invalidation, &sp).await.unwrap();
        assert_eq!(first, PurgeOutcome::Purged(None));
        let again = s.purge(target, PurgeType::Invalidation, &sp).await.unwrap();
        assert_eq!(again, PurgeOutcome::NotFound);
        assert!(fetch(s, &keys[1]).await.is_none());
        store(s, &keys[1], "t", &body(1000, 0)).await;

        assert!(s.purge_key(&key(url)).await);
        for k in &keys {
            assert!(fetch(s, k).await.is_none());
            assert!(!file_of(dir.path(), k).exists());
        }
        assert!(!s.purge_key(&key(url)).await);
        assert_eq!(s.totals().objects, 1);
        assert!(fetch(s, &other).await.is_some());

        // Purged after a restart, before the loader reached the variants.
        for k in &keys {
            store(s, k, "t", &body(1000, 0)).await;
        }
        let s2 = DiskStorage::open_without_loader(dir.path(), settings()).unwrap();
        assert!(s2.purge_key(&key(url)).await);
        assert!(fetch(s2, &keys[2]).await.is_none());
        s2.run_loader();
        assert_eq!(s2.totals().objects, 1);
        assert_eq!(object_files(dir.path()), vec![file_of(dir.path(), &other)]);
    }
}

#[tokio::test]
async fn update_meta_and_expire_keep_the_body() {
    // Served from the file, then (a second read) from the memory tier.
    for cfg in [settings(), with_memory()] {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStorage::open_uncached(dir.path(), cfg).unwrap();
        let k = key("revalidated");
        let b = body(150_000, 3);
        store(s, &k, "old", &b).await;
        assert!(s
            .update_meta(&k, &meta("new, longer"), &span())
            .await
            .unwrap());
        assert_eq!(fetch(s, &k).await, Some(("new, longer".into(), b.clone())));
        let file_len = fs::metadata(file_of(dir.path(), &k)).unwrap().len();
        assert_eq!(s.totals().bytes, file_len);
        assert!(temp_files(dir.path()).is_empty());
        assert!(!s
            .update_meta(&key("absent"), &meta("x"), &span())
            .await
            .unwrap());

        let target = k.to_compact();
        let outcome = s
            .expire(PurgeTarget::Active(&target), &span())
            .await
            .unwrap();
        assert_eq!(outcome, PurgeOutcome::Expired);
        let (m, mut hit) = s.lookup(&k, &span()).await.unwrap().unwrap();
        assert!(m.fresh_until() <= SystemTime::now());
        assert_eq!(read_all(&mut hit).await, b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_writers_all_land_intact() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let tasks: Vec<_> = (0..50u8)
        .map(|i| {
            tokio::spawn(async move {
                let k = key(&format!("c{i}"));
                store(
                    s,
                    &k,
                    &format!("t{i}"),
                    &body(20_000 + usize::from(i) * 100, i),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    for i in 0..50u8 {
        let want = (format!("t{i}"), body(20_000 + usize::from(i) * 100, i));
        assert_eq!(fetch(s, &key(&format!("c{i}"))).await, Some(want));
    }
    assert_eq!(s.totals().objects, 50);
    assert_eq!(s.totals().bytes, disk_bytes(dir.path()));
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn open_is_once_per_path_and_checks_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("a/b/zone");
    let s1 = DiskStorage::open(&zone, settings()).unwrap();
    let smaller = DiskSettings {
        max_size: 1000,
        ..settings()
    };
    let s2 = DiskStorage::open(&dir.path().join("a/b/../b/zone"), smaller).unwrap();
    assert!(std::ptr::eq(s1, s2));
    assert_eq!(s1.settings(), smaller);

    // A path that is a file.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = DiskStorage::open(&file, settings()).err().unwrap();
    assert!(err.starts_with("cannot write to "), "{err}");

    // A read-only directory (root writes anyway: then only check open still works).
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    let root = fs::write(ro.join("probe"), b"x").is_ok();
    let opened = DiskStorage::open(&ro, settings());
    if root {
        assert!(opened.is_ok());
    } else {
        let err = opened.err().unwrap();
        assert!(
            err.starts_with(&format!("cannot write to {}", ro.display())),
            "{err}"
        );
    }
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
}

#[tokio::test]
async fn failed_writes_store_nothing_and_keep_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings()).unwrap();
    let tmp = dir.path().join("tmp");
    // The temp directory is gone mid-write: the rename in finish fails.
    let k = key("lost");
    let mut miss = s.get_miss_handler(&k, &meta("t"), &span()).await.unwrap();
    miss.write_body(body(1000, 0).into(), false).await.unwrap();
    fs::remove_dir_all(&tmp).unwrap();
    miss.write_body(body(1000, 0).into(), true).await.unwrap();
    assert!(matches!(
        miss.finish().await.unwrap(),
        MissFinishType::Created(0)
    ));
    assert!(fetch(s, &k).await.is_none());
    // No temp file can be created (`tmp` is a file now): every write still succeeds.
    fs::write(&tmp, b"not a directory").unwrap();
    assert_eq!(store(s, &k, "t", &body(50_000, 0)).await, 0);
    assert!(fetch(s, &k).await.is_none());
    assert_eq!(s.totals().objects, 0);
    assert!(object_files(dir.path()).is_empty());
}

#[tokio::test]
async fn the_memory_tier_serves_what_the_disk_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), with_memory()).unwrap();
    while !s.is_loaded() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let k = key("hot");
    let b = body(200_000, 4);
    store(s, &k, "v1", &b).await;
    assert_eq!(s.totals().memory_bytes, 0, "stored objects wait for a read");
    let (from_disk, mut hit) = s.lookup(&k, &span()).await.unwrap().unwrap();
    assert_eq!(read_all(&mut hit).await, b);
    let held = s.totals().memory_bytes;
    assert!((200_000..210_000).contains(&held), "{held}");

    // The second read does not touch the file: damaging it changes nothing served.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(file_of(dir.path(), &k))
        .unwrap();
    f.set_len(HEADER_LEN as u64).unwrap();
    assert_eq!(fetch(s, &k).await, Some(("v1".into(), b.clone())));
    let (m, mut hit) = s.lookup(&k, &span()).await.unwrap().unwrap();
    // The same meta as the file's, field by field.
    assert_eq!(m.fresh_until(), from_disk.fresh_until());
    assert_eq!(m.created(), from_disk.created());
    assert_eq!(m.updated(), from_disk.updated());
    assert_eq!(m.variance(), from_disk.variance());
    assert_eq!(m.serialize().unwrap(), from_disk.serialize().unwrap());
    hit.seek(199_999, None).unwrap();
    assert_eq!(read_all(&mut hit).await, &b[199_999..]);

    // A new version replaces the copy.
    let b2 = body(1000, 5);
    store(s, &k, "v2", &b2).await;
    assert_eq!(s.totals().memory_bytes, 0);
    assert_eq!(fetch(s, &k).await, Some(("v2".into(), b2.clone())));
    assert!(s.totals().memory_bytes > 0);
    assert_eq!(fetch(s, &k).await, Some(("v2".into(), b2.clone())));
    // A revalidation's new meta too.
    assert!(s.update_meta(&k, &meta("v3"), &span()).await.unwrap());
    assert_eq!(fetch(s, &k).await, Some(("v3".into(), b2.clone())));
    assert_eq!(fetch(s, &k).await, Some(("v3".into(), b2.clone())));
    // A revalidated meta (its own `updated`) is rebuilt exactly from memory too.
    let mut revalidated = meta("v4");
    std::thread::sleep(Duration::from_millis(2));
    let until = SystemTime::now() + Duration::from_secs(90);
    revalidated.update_freshness(until, 5, 7);
    assert_ne!(revalidated.updated(), revalidated.created());
    assert!(s.update_meta(&k, &revalidated, &span()).await.unwrap());
    for _ in 0..2 {
        let (m, mut hit) = s.lookup(&k, &span()).await.unwrap().unwrap();
        assert_eq!(m.serialize().unwrap(), revalidated.serialize().unwrap());
        assert_eq!((m.updated(), tag(&m)), (revalidated.updated(), "v4".into()));
        assert_eq!(read_all(&mut hit).await, b2);
    }
    assert!(s.totals().memory_bytes > 0);
    // A purge removes it.
    assert!(s.purge_key(&k).await);
    assert!(fetch(s, &k).await.is_none());
    assert_eq!(s.totals().memory_bytes, 0);

    // Larger than an eighth of the tier (1 MiB here): streamed from the file every time.
    let big = key("big");
    let bb = body(1_100_000, 6);
    store(s, &big, "t", &bb).await;
    for _ in 0..2 {
        assert_eq!(fetch(s, &big).await, Some(("t".into(), bb.clone())));
        assert_eq!(s.totals().memory_bytes, 0);
    }

    // The tier's bound: 8 MiB of 200 KB copies, least recently read dropped first.
    for i in 0..60u8 {
        let k = key(&format!("many{i}"));
        store(s, &k, "t", &body(200_000, i)).await;
        assert!(fetch(s, &k).await.is_some());
        assert!(s.totals().memory_bytes <= 8 << 20);
    }
    assert!(s.totals().memory_bytes > 7 << 20);
    // Eviction from the disk drops the copies; turning the tier off drops them all.
    s.set_settings(DiskSettings {
        max_size: 1_000_000,
        ..with_memory()
    });
    assert!(s.totals().memory_bytes < 1_000_000);
    s.set_settings(settings());
    assert_eq!(s.totals().memory_bytes, 0);
}
