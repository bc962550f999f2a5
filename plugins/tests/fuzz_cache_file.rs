//! Fuzzing the disk cache's object files (proptest; `PROPTEST_CASES` sets the cases per
//! target, 256 by default): whatever bytes an object file holds, decoding never panics, and a
//! file whose header, meta or length was damaged is never accepted, at the format level
//! ([`file::decode`]) and through a running zone's lookups ([`DiskStorage`]).
//!
//! The body is not covered by the checksum (by design, see `cache/file.rs`: it would mean
//! reading the whole object before serving its first byte), so a changed body byte of the
//! right length is accepted; the targets assert exactly that.
//!
//! The long run: `PROPTEST_CASES=1000000 cargo test --release -p weir-plugins --test fuzz_cache_file`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use pingora::cache::key::CacheHashKey;
use pingora::cache::storage::MissFinishType;
use pingora::cache::trace::{Span, SpanHandle};
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::http::ResponseHeader;
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use weir_plugins::cache::file::{self, Header, HEADER_LEN};
use weir_plugins::cache::storage::{DiskSettings, DiskStorage};

/// One change to an object file's bytes.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR one byte with a non-zero value.
    Flip(Index, u8),
    /// Cut the file at this point.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Overwrite a run of bytes.
    Overwrite(Index, Vec<u8>),
    /// Remove one byte.
    Remove(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Damage::Flip(i, x)),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Extend),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Damage::Overwrite(i, b)),
        1 => any::<Index>().prop_map(Damage::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    match d {
        Damage::Flip(i, x) => {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        Damage::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Damage::Extend(more) => bytes.extend_from_slice(more),
        Damage::Overwrite(i, run) => {
            let at = i.index(bytes.len());
            for (k, b) in run.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        Damage::Remove(i) => {
            let at = i.index(bytes.len());
            bytes.remove(at);
        }
    }
}

/// True when `damaged` differs from `original` in its length or anywhere before the body.
fn framing_damaged(original: &[u8], damaged: &[u8], body_offset: usize) -> bool {
    original.len() != damaged.len() || original[..body_offset] != damaged[..body_offset]
}

/// A response header with a few generated headers.
fn response_header() -> impl Strategy<Value = ResponseHeader> {
    let name = "[a-z][a-z0-9-]{0,20}";
    let value = "[ -~]{0,60}";
    (
        prop::sample::select(vec![200u16, 203, 206, 301, 404, 410, 500]),
        prop::collection::vec((name, value), 0..6),
    )
        .prop_map(|(status, headers)| {
            let mut h = ResponseHeader::build(status, None).expect("status");
            for (k, v) in headers {
                h.append_header(k, v.trim()).expect("generated header");
            }
            h
        })
}

/// A real serialized meta (what the cache writes), as its two parts.
fn meta_parts() -> impl Strategy<Value = (CacheMeta, Vec<u8>, Vec<u8>)> {
    (response_header(), 0..100_000u64, 0..1000u32, 0..1000u32).prop_map(|(h, ttl, swr, sie)| {
        let now = SystemTime::now();
        let meta = CacheMeta::new(now + Duration::from_secs(ttl), now, swr, sie, h);
        let (m0, m1) = meta.serialize().expect("serialize");
        (meta, m0, m1)
    })
}

/// A whole valid object file: header, metas, body.
fn object(
    m0: &[u8],
    m1: &[u8],
    body: &[u8],
    key: [u8; 16],
    primary: [u8; 16],
) -> (Header, Vec<u8>) {
    let h = Header {
        meta_lens: [m0.len() as u32, m1.len() as u32],
        body_len: body.len() as u64,
        key,
        primary,
    };
    let mut f = h.encode(m0, m1).to_vec();
    f.extend_from_slice(m0);
    f.extend_from_slice(m1);
    f.extend_from_slice(body);
    (h, f)
}

proptest! {
    /// Arbitrary bytes and an arbitrary file length never panic; whatever is accepted is a
    /// consistent object (its header re-encodes to the same bytes, its length is exact).
    #[test]
    fn fuzz_cache_decode_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        extra in 0..4096u64,
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 12 {
            // Get past the magic and version checks often enough to reach the rest.
            bytes[..8].copy_from_slice(&file::MAGIC);
            bytes[8..12].copy_from_slice(&file::VERSION.to_le_bytes());
        }
        let file_len = bytes.len() as u64 + extra;
        if let Ok((h, m0, m1)) = file::decode(&bytes, file_len) {
            prop_assert_eq!(h.file_len(), file_len);
            prop_assert_eq!(&h.encode(m0, m1)[..], &bytes[..HEADER_LEN]);
        }
    }

    /// A valid object decodes to what was encoded; any damage to its header, metas or length
    /// is rejected; damage confined to the body is accepted (the body is not checksummed).
    /// Metas that decode are always readable by Pingora's `CacheMeta::deserialize`.
    #[test]
    fn fuzz_cache_decode_rejects_damage(
        (_, m0, m1) in meta_parts(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
        key in any::<[u8; 16]>(),
        primary in any::<[u8; 16]>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let (h, f) = object(&m0, &m1, &body, key, primary);
        let (got, g0, g1) = file::decode(&f, f.len() as u64).expect("a valid object");
        prop_assert_eq!(got, h);
        prop_assert!(CacheMeta::deserialize(g0, g1).is_ok());
        let mut bad = f.clone();
        for d in &damages {
            apply(&mut bad, d);
        }
        let verdict = file::decode(&bad, bad.len() as u64);
        if framing_damaged(&f, &bad, h.body_offset() as usize) {
            prop_assert!(verdict.is_err(), "damaged header/meta/length accepted: {:?}", damages);
        } else {
            prop_assert!(verdict.is_ok(), "an intact header refused: {:?}", verdict.err());
        }
    }

    /// Metas that pass the checksum but are garbage (what a bug or a hostile writer with
    /// access to the cache directory could leave) never make Pingora's deserializer panic.
    #[test]
    fn fuzz_cache_meta_deserialize_never_panics(
        (_, m0, m1) in meta_parts(),
        d0 in prop::collection::vec(damage(), 0..4),
        d1 in prop::collection::vec(damage(), 0..4),
    ) {
        let (mut m0, mut m1) = (m0, m1);
        for d in &d0 {
            apply(&mut m0, d);
        }
        for d in &d1 {
            apply(&mut m1, d);
        }
        let (_, f) = object(&m0, &m1, b"body", [1; 16], [2; 16]);
        let (_, g0, g1) = file::decode(&f, f.len() as u64).expect("checksum recomputed");
        let _ = CacheMeta::deserialize(g0, g1);
    }
}

// ---------------------------------------------------------------------------------------
// Through a running zone: store, damage the file on disk, look it up
// ---------------------------------------------------------------------------------------

fn span() -> SpanHandle {
    Span::inactive().handle()
}

/// A stored object whose file was damaged on disk is never served when its header, meta or
/// length changed (and its file is removed); with only body bytes changed it is served with
/// its meta and a body of the stored length. One zone in a temp dir removed at the end.
#[test]
fn fuzz_cache_zone_never_serves_a_damaged_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = DiskSettings {
        max_size: 1 << 30,
        inactive: Duration::from_secs(3600),
        max_object_size: 1 << 30,
        memory: 0,
    };
    let s = DiskStorage::open_uncached(dir.path(), settings).expect("zone");
    while !s.is_loaded() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let strategy = (
        response_header(),
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::collection::vec(damage(), 1..4),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let n = AtomicU64::new(0);
    let result = runner.run(&strategy, |(header, body, damages)| {
        let key = CacheKey::new(format!("fuzz-{}", n.fetch_add(1, Ordering::Relaxed)), "");
        let now = SystemTime::now();
        let meta = CacheMeta::new(now + Duration::from_secs(600), now, 0, 0, header);
        let served = rt.block_on(async {
            let mut miss = s
                .get_miss_handler(&key, &meta, &span())
                .await
                .expect("miss");
            miss.write_body(body.clone().into(), true)
                .await
                .expect("write");
            let done = miss.finish().await.expect("finish");
            assert!(matches!(done, MissFinishType::Created(_)));
            let hex = key.combined();
            let path = dir.path().join(&hex[30..]).join(&hex);
            let original = std::fs::read(&path).expect("object file");
            let mut bad = original.clone();
            for d in &damages {
                apply(&mut bad, d);
            }
            std::fs::write(&path, &bad).expect("damage");
            let offset = original.len() - body.len();
            let damaged = framing_damaged(&original, &bad, offset);
            let hit = s.lookup(&key, &span()).await.expect("lookup");
            let mut out = None;
            if let Some((m, mut hit)) = hit {
                let mut got = Vec::new();
                while let Some(chunk) = hit.read_body().await.expect("read") {
                    got.extend_from_slice(&chunk);
                }
                out = Some((m.response_header().status, got.len()));
            }
            (damaged, out, path.exists())
        });
        match served {
            (true, out, exists) => {
                prop_assert!(out.is_none(), "a damaged object was served: {:?}", damages);
                prop_assert!(!exists, "a damaged object file was left in the zone");
            }
            (false, out, _) => {
                prop_assert_eq!(out, Some((meta.response_header().status, body.len())));
            }
        }
        Ok(())
    });
    drop(dir);
    if let Err(e) = result {
        panic!("{e}");
    }
}
