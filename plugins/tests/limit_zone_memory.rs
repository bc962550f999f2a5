//! Memory of a `limits:` zone at its `capacity`: 1,000,000 distinct client-IP-like keys
//! (4-byte IPv4 and 16-byte IPv6, interleaved, like `client_ip`'s bytes) go through
//! `LimitZone::check` on a zone of capacity 100,000. The zone must hold at most 100,000 keys
//! and the process's resident memory must grow by less than 64 MiB; the bytes per key are
//! printed (docs/configuration.md, `limits.capacity`, records the figure).
//!
//! Uses mimalloc, the weir binary's allocator, so the figure is the production one. The only
//! test of this binary, so no other test allocates while it measures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use std::time::Instant;
use weir_plugins::key::{KeyPart, RequestKey};
use weir_plugins::leaky_bucket::{BucketLimits, Verdict};
use weir_plugins::limit_zone::{LimitZone, ZoneSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u32 = 1_000_000;
const CAPACITY: usize = 100_000;
const MAX_GROWTH: u64 = 64 << 20;

/// VmRSS of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Key `i`: even → an IPv4 address (4 bytes), odd → an IPv6 address (16 bytes); all distinct.
fn key(i: u32, buf: &mut Vec<u8>) {
    buf.clear();
    if i.is_multiple_of(2) {
        buf.extend_from_slice(&(0x0a00_0000 | i).to_be_bytes());
    } else {
        buf.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&i.to_be_bytes());
    }
}

#[test]
fn a_million_keys_stay_within_capacity_and_memory() {
    let limits = BucketLimits {
        rate: 10_000,
        burst: 20,
        delay: 0,
    };
    let before = rss_bytes();
    let zone = LimitZone::new(
        "per_ip",
        ZoneSpec {
            key: RequestKey(vec![KeyPart::ClientIp]),
            rate: limits.rate,
            capacity: CAPACITY,
        },
    )
    .expect("zone metrics register");
    let started = Instant::now();
    let mut buf = Vec::with_capacity(16);
    let mut passed = 0u32;
    for i in 0..KEYS {
        key(i, &mut buf);
        // A new clock tick every 1000 keys, as under real traffic.
        if let (Verdict::Pass { .. }, _) = zone.check(&buf, u64::from(i / 1000), limits) {
            passed += 1;
        }
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let len = zone.len();
    let growth = after.saturating_sub(before);
    let per_key = growth as f64 / len as f64;
    eprintln!(
        "limit zone: {KEYS} keys in {:.2} s, {len} held (capacity {CAPACITY}); VmRSS {} → {} KiB, \
         growth {:.1} MiB = {per_key:.0} bytes/key",
        elapsed.as_secs_f64(),
        before / 1024,
        after / 1024,
        growth as f64 / f64::from(1 << 20),
    );
    assert_eq!(
        passed, KEYS,
        "every key is new, so every first request passes"
    );
    assert!(
        len <= CAPACITY,
        "zone holds {len} keys, capacity {CAPACITY}"
    );
    // Each shard evicts on its own, so the zone may hold a little less than the capacity.
    assert!(len >= CAPACITY * 9 / 10, "zone holds only {len} keys");
    assert!(
        growth < MAX_GROWTH,
        "resident memory grew {growth} bytes ({per_key:.0} bytes/key) for {len} keys"
    );
    // The last key is held: with no burst, its second request in the same ms is rejected.
    key(KEYS - 1, &mut buf);
    let no_burst = BucketLimits { burst: 0, ..limits };
    assert!(matches!(
        zone.check(&buf, u64::from((KEYS - 1) / 1000), no_burst).0,
        Verdict::Reject { .. }
    ));
    drop(zone);
}
