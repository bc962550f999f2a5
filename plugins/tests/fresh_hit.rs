//! `DiskStorage::fresh_hit`, the proxy's fast path for plain fresh HITs, on real files: it
//! serves an indexed fresh object without Vary (from its file, or from memory when the tier
//! takes it), counts what it serves, and refuses (`None`) what pingora-cache's path must
//! answer: absent, purged, stale, varying objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use pingora::cache::key::CacheHashKey;
use pingora::cache::storage::PurgeTarget;
use pingora::cache::trace::{Span, SpanHandle};
use pingora::cache::{CacheKey, CacheMeta, PurgeType, Storage};
use pingora::http::ResponseHeader;
use std::time::{Duration, SystemTime};
use weir_plugins::cache::fresh::FreshBody;
use weir_plugins::cache::storage::{DiskSettings, DiskStorage};

fn settings(memory: u64) -> DiskSettings {
    DiskSettings {
        max_size: 1 << 30,
        inactive: Duration::from_secs(600),
        max_object_size: 1 << 30,
        memory,
    }
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31)).collect()
}

/// Stores `body` under `key`, fresh for 60 s, its header carrying `headers`.
async fn store(s: &'static DiskStorage, key: &CacheKey, headers: &[(&str, &str)], body: &[u8]) {
    let mut h = ResponseHeader::build(200, None).unwrap();
    for (n, v) in headers {
        h.insert_header(n.to_string(), *v).unwrap();
    }
    let now = SystemTime::now();
    let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h);
    let mut miss = s.get_miss_handler(key, &meta, &span()).await.unwrap();
    miss.write_body(body.to_vec().into(), true).await.unwrap();
    miss.finish().await.unwrap();
}

fn read_all(b: &mut FreshBody) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = b.next_chunk().unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

async fn open(memory: u64) -> (tempfile::TempDir, &'static DiskStorage) {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskStorage::open_uncached(dir.path(), settings(memory)).unwrap();
    while !s.is_loaded() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (dir, s)
}

#[tokio::test]
async fn a_fresh_plain_object_is_served_from_its_file_and_counted() {
    let (_dir, s) = open(0).await;
    let k = CacheKey::new("GET /a", "");
    let b = body(200_000);
    store(s, &k, &[("x-tag", "a")], &b).await;
    let now = SystemTime::now();
    let mut hit = s
        .fresh_hit(&k.combined_bin(), now, u64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(hit.header.headers.get("x-tag").unwrap(), "a");
    assert!(hit.age <= 1);
    let range = hit.body.file_range().unwrap();
    assert_eq!(range.len, 200_000);
    assert_eq!(hit.body.body_len(), 200_000);
    assert_eq!(read_all(&mut hit.body), b);
    assert!(hit.body.file_range().unwrap().len == 0);
    assert_eq!(s.totals().bytes_served, 200_000);
    // What sendfile sent moves the body on and is counted.
    let mut hit = s
        .fresh_hit(&k.combined_bin(), now, u64::MAX)
        .unwrap()
        .unwrap();
    hit.body.sent_from_file(150_000);
    assert_eq!(hit.body.body_len(), 50_000);
    assert_eq!(read_all(&mut hit.body), b[150_000..]);
    assert_eq!(s.totals().bytes_served, 400_000);
    // Stale at a later time, absent under another key, gone once purged.
    let later = now + Duration::from_secs(120);
    assert!(s
        .fresh_hit(&k.combined_bin(), later, u64::MAX)
        .unwrap()
        .is_none());
    let other = CacheKey::new("GET /b", "");
    assert!(s
        .fresh_hit(&other.combined_bin(), now, u64::MAX)
        .unwrap()
        .is_none());
    let compact = k.to_compact();
    s.purge(
        PurgeTarget::Active(&compact),
        PurgeType::Invalidation,
        &span(),
    )
    .await
    .unwrap();
    assert!(s
        .fresh_hit(&k.combined_bin(), now, u64::MAX)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_varying_object_is_left_to_pingora_cache() {
    let (_dir, s) = open(0).await;
    let k = CacheKey::new("GET /v", "");
    store(s, &k, &[("vary", "accept")], &body(10)).await;
    assert!(s
        .fresh_hit(&k.combined_bin(), SystemTime::now(), u64::MAX)
        .unwrap()
        .is_none());
    // pingora-cache's lookup still finds it.
    assert!(s.lookup(&k, &span()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_small_object_is_kept_in_memory_and_served_from_there() {
    let (_dir, s) = open(8 << 20).await;
    let k = CacheKey::new("GET /m", "");
    let b = body(5000);
    store(s, &k, &[], &b).await;
    let now = SystemTime::now();
    let mut first = s
        .fresh_hit(&k.combined_bin(), now, u64::MAX)
        .unwrap()
        .unwrap();
    assert!(
        first.body.file_range().is_none(),
        "read whole into the tier"
    );
    assert_eq!(read_all(&mut first.body), b);
    assert!(s.totals().memory_bytes > 5000);
    let mut second = s
        .fresh_hit(&k.combined_bin(), now, u64::MAX)
        .unwrap()
        .unwrap();
    assert!(second.body.file_range().is_none());
    assert_eq!(read_all(&mut second.body), b);
    assert_eq!(s.totals().bytes_served, 10_000);
    // A caller that can sendfile bodies of this size gets the open file instead of the copy.
    let mut third = s.fresh_hit(&k.combined_bin(), now, 5000).unwrap().unwrap();
    assert_eq!(third.body.file_range().unwrap().len, 5000);
    assert_eq!(read_all(&mut third.body), b);
    let small = s.fresh_hit(&k.combined_bin(), now, 5001).unwrap().unwrap();
    assert!(
        small.body.file_range().is_none(),
        "below the caller's size: the copy"
    );
    assert!(s.totals().memory_bytes > 5000, "the copy stays");
}
