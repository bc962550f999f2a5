//! The disk cache under faults, through the real binary: `kill -9` while objects are being
//! written, `max_size` eviction, `inactive` removal, a full disk (a small tmpfs), and no file
//! written outside the zone directory. The object files are checked directly on disk (format in
//! `plugins/src/cache/file.rs`): `<zone>/<2 hex>/<32 hex>`, temp files under `<zone>/tmp/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, is_root, Origin, Weir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use weir_origin::expected_byte;

/// weir with zone `c` at `zone` (`zone_extra`: more zone keys, indented 4) on one catch-all
/// route to `origin` with `- cache: {zone: c}`.
fn start_zone(origin: &Origin, zone: &Path, zone_extra: &str) -> Weir {
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         caches:\n  c:\n    path: {}\n    valid: {{ \"200\": 10m }}\n{zone_extra}\
         upstreams:\n  o: {{ tiers: [{{ name: a, servers: [\"{}\"] }}] }}\n\
         routes:\n  - {{ upstream: o, plugins: [{{ cache: {{ zone: c }} }}] }}\n",
        zone.display(),
        origin.addr()
    );
    Weir::start(&yaml, port)
}

struct Got {
    status: u16,
    cache: String,
    body: Vec<u8>,
}

async fn get(client: &reqwest::Client, weir: &Weir, path: &str) -> Got {
    get_url(client, weir.url(path)).await
}

async fn get_url(client: &reqwest::Client, url: String) -> Got {
    let resp = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-cache-status")
        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{url}: body: {e}"))
        .to_vec();
    Got {
        status,
        cache,
        body,
    }
}

/// The first `len` bytes every `size=` body of the origin starts with.
fn pattern(len: usize) -> &'static [u8] {
    const MAX: usize = 4 << 20;
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    assert!(len <= MAX, "{len}");
    &P.get_or_init(|| (0..MAX as u64).map(expected_byte).collect())[..len]
}

/// Asserts `got` is a 200 with the `len` bytes of a `size=len` body.
fn assert_intact(got: &Got, len: usize, what: &str) {
    assert_eq!(got.status, 200, "{what} ({})", got.cache);
    assert_eq!(got.body.len(), len, "{what}: length ({})", got.cache);
    if got.body != pattern(len) {
        let at = got
            .body
            .iter()
            .zip(pattern(len))
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!("{what}: wrong byte at {at} ({})", got.cache);
    }
}

/// What a zone directory holds.
#[derive(Debug, Default)]
struct ZoneFiles {
    /// Object files (`<2 hex>/<32 hex>`, the name ending in its directory's two chars) and
    /// their lengths.
    objects: Vec<(PathBuf, u64)>,
    /// Files in `tmp/`.
    temp: Vec<PathBuf>,
    /// Anything else.
    other: Vec<PathBuf>,
}

impl ZoneFiles {
    fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.1).sum()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn zone_files(zone: &Path) -> ZoneFiles {
    let mut out = ZoneFiles::default();
    let Ok(dir) = std::fs::read_dir(zone) else {
        return out;
    };
    for e in dir {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let path = e.path();
        let is_dir = e.file_type().unwrap().is_dir();
        if name == "tmp" && is_dir {
            for t in std::fs::read_dir(&path).unwrap() {
                out.temp.push(t.unwrap().path());
            }
        } else if is_hex(&name, 2) && is_dir {
            for f in std::fs::read_dir(&path).unwrap() {
                let f = f.unwrap();
                let fname = f.file_name().into_string().unwrap();
                let md = f.metadata().unwrap();
                if is_hex(&fname, 32) && fname.ends_with(&name) && md.is_file() {
                    out.objects.push((f.path(), md.len()));
                } else {
                    out.other.push(f.path());
                }
            }
        } else {
            out.other.push(path);
        }
    }
    out
}

/// Checks one object file of a `size=` body: magic, version, a length that is exactly header
/// + metas + body, and a body that is the origin's pattern. The body length.
fn check_object(path: &Path) -> Result<u64, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: String| Err(format!("{}: {why}", path.display()));
    if b.len() < 72 {
        return bad(format!("{} bytes: shorter than a header", b.len()));
    }
    if &b[0..8] != b"WEIRCOBJ" {
        return bad(format!("bad magic {:?}", &b[0..8]));
    }
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
    if u32_at(8) != 1 {
        return bad(format!("version {}", u32_at(8)));
    }
    let body_len = u64::from_le_bytes(b[24..32].try_into().unwrap());
    let body_at = 72 + u32_at(12) + u32_at(16);
    if b.len() as u64 != body_at + body_len {
        return bad(format!(
            "{} bytes, the header says {} + {body_len}",
            b.len(),
            body_at
        ));
    }
    if &b[body_at as usize..] != pattern(body_len as usize) {
        return bad("the body is not the origin's".into());
    }
    Ok(body_len)
}

/// Every file under `root` (directories too), relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    out
}

/// The URL of `path` without its `body_delay=` parameter: the same cache key (`$uri`), fast.
fn without_body_delay(path: &str) -> String {
    let (p, q) = path.split_once('?').unwrap();
    let q: Vec<&str> = q
        .split('&')
        .filter(|kv| !kv.starts_with("body_delay="))
        .collect();
    format!("{p}?{}", q.join("&"))
}

/// The `size=` of a path (`k`/`m` suffixes).
fn size_of(path: &str) -> usize {
    let q = path.split_once('?').unwrap().1;
    let v = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("size="))
        .unwrap();
    let (n, mult) = match v.as_bytes()[v.len() - 1] {
        b'k' => (&v[..v.len() - 1], 1 << 10),
        b'm' => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    n.parse::<usize>().unwrap() * mult
}

// The last verification pass of runs here saw 58-59 HIT / 3 MISS / 0-1 other (`/rep/x`
// EXPIRED) of the 62 paths: the three MISSes were the last round's new objects whose writes
// its kill cut short. The kills of the 20 rounds left 47-50 temp files behind (deleted at the
// next start), never a truncated object file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_writing_never_serves_a_corrupt_object() {
    const ROUNDS: u64 = 20;
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    // Keyed by `$uri`: the verification GETs drop `body_delay` and still find the object.
    let extra = "    key: \"$uri\"\n";
    let client = common::client();
    // path (no body_delay) → body length, for every path requested so far.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = (0, 0, 0);
    // Temp files found after the kills: writes the kills cut short.
    let mut cut_short = 0;
    let started = Instant::now();
    for r in 0..ROUNDS {
        let mut weir = start_zone(&origin, dir.path(), extra);
        let mut paths = vec![
            format!("/r{r}/a?size=1m&body_delay=20"),
            format!("/r{r}/b?size=2m&body_delay=20"),
            format!("/r{r}/b?size=2m&body_delay=20"), // the same object twice: the lock
            format!("/r{r}/c?size=256k&body_delay=20"), // done around the kill
            "/rep/x?size=1m&cc=max-age%3D1&body_delay=20".to_string(), // refreshed when expired
            "/rep/y?size=512k&body_delay=10".to_string(),
        ];
        if r > 0 {
            paths.push(format!("/r{}/a?size=1m&body_delay=20", r - 1)); // a HIT read mid-way
        }
        let mut tasks = Vec::new();
        for p in &paths {
            seen.insert(without_body_delay(p), size_of(p));
            let (client, url, len) = (client.clone(), weir.url(p), size_of(p));
            tasks.push(tokio::spawn(async move {
                // Errors are expected: weir dies under these requests.
                let resp = tokio::time::timeout(Duration::from_secs(20), async {
                    let resp = client.get(&url).send().await.ok()?;
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.ok()?;
                    Some((status, body))
                })
                .await
                .ok()
                .flatten();
                if let Some((status, body)) = resp {
                    assert_eq!(status, 200, "{url}");
                    assert!(body.len() == len && body == pattern(len), "{url}");
                }
            }));
        }
        let delay = 20 + (r * 149 + 7) % 281;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        weir.signal("KILL");
        assert!(
            weir.wait_exit(Duration::from_secs(5)).is_some(),
            "not killed"
        );
        for t in tasks {
            t.await.unwrap();
        }
        // On disk, only complete objects: never a file a kill cut short.
        let files = zone_files(dir.path());
        assert!(files.other.is_empty(), "round {r}: {:?}", files.other);
        cut_short += files.temp.len();
        for (p, _) in &files.objects {
            if let Err(e) = check_object(p) {
                panic!("round {r} (killed after {delay} ms): {e}");
            }
        }
        drop(weir);

        // A new weir on the same directory: every path is served intact, HIT or not.
        let weir = start_zone(&origin, dir.path(), extra);
        let (mut hits, mut misses, mut others) = (0, 0, 0);
        let list: Vec<(String, usize)> = seen.iter().map(|(p, l)| (p.clone(), *l)).collect();
        for batch in list.chunks(16) {
            let mut tasks = Vec::new();
            for (p, len) in batch {
                let (client, url, len) = (client.clone(), weir.url(p), *len);
                tasks.push(tokio::spawn(async move {
                    let got = get_url(&client, url.clone()).await;
                    assert_intact(&got, len, &url);
                    got.cache
                }));
            }
            for t in tasks {
                match t.await.unwrap().as_str() {
                    "HIT" => hits += 1,
                    "MISS" => misses += 1,
                    _ => others += 1,
                }
            }
        }
        // Every complete object left by the kill is found (a HIT, or EXPIRED for `/rep/x`),
        // and only those: one file per path (keyed by `$uri`, no max_size, no inactive).
        assert_eq!(
            hits + others,
            files.objects.len(),
            "round {r}: {hits} HIT, {others} other, {} objects on disk before the restart",
            files.objects.len()
        );
        assert_eq!(misses, seen.len() - files.objects.len(), "round {r}");
        last = (hits, misses, others);
        assert!(
            weir.stderr().matches("removing").count() == 0,
            "round {r}: weir found corrupt files:\n{}",
            weir.stderr()
        );
        // Objects written by the verification are complete too.
        for (p, _) in &zone_files(dir.path()).objects {
            if let Err(e) = check_object(p) {
                panic!("round {r}, after the verification: {e}");
            }
        }
    }
    eprintln!(
        "kill -9: {ROUNDS} rounds, {} paths, {cut_short} temp files left by kills, {:?}; \
         last pass: {} HIT, {} MISS, {} other",
        seen.len(),
        started.elapsed(),
        last.0,
        last.1,
        last.2
    );
    assert!(last.0 > 0, "objects stored before a kill are HITs after it");
    assert!(cut_short > 0, "no kill ever interrupted a write");
}

#[tokio::test]
async fn eviction_keeps_disk_use_at_or_below_max_size() {
    const MAX: u64 = 200 * 1024;
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start_zone(&origin, dir.path(), "    max_size: 200k\n");
    let client = common::client();
    let path = |i: usize| format!("/e{i}?size=20k");
    // Stores object i and waits (bounded) until it is a HIT.
    let store = |i: usize| {
        let (client, weir) = (&client, &weir);
        async move {
            let got = get(client, weir, &path(i)).await;
            assert_intact(&got, 20 * 1024, &path(i));
            assert_eq!(got.cache, "MISS", "{}", path(i));
            for _ in 0..40 {
                if get(client, weir, &path(i)).await.cache == "HIT" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("{} never became a HIT", path(i));
        }
    };
    let check_disk = |after: &str| {
        let files = zone_files(dir.path());
        assert!(files.other.is_empty(), "{after}: {:?}", files.other);
        assert!(files.temp.is_empty(), "{after}: {:?}", files.temp);
        assert!(
            files.bytes() <= MAX,
            "{after}: {} bytes in {} objects",
            files.bytes(),
            files.objects.len()
        );
        for (p, _) in &files.objects {
            check_object(p).unwrap();
        }
        files
    };
    for i in 0..5 {
        store(i).await;
        check_disk(&path(i));
    }
    // 0 and 1 are read again between every few stores; 2, 3, 4 never are.
    let mut most = 0;
    for i in 5..40 {
        if i % 3 == 0 {
            for early in [0, 1] {
                let got = get(&client, &weir, &path(early)).await;
                assert_eq!(got.cache, "HIT", "{} before storing {i}", path(early));
                assert_intact(&got, 20 * 1024, &path(early));
            }
        }
        store(i).await;
        most = most.max(check_disk(&path(i)).objects.len());
    }
    assert!((5..=10).contains(&most), "{most} objects of ~20 KiB kept");
    for early in [0, 1] {
        assert_eq!(get(&client, &weir, &path(early)).await.cache, "HIT");
    }
    for i in [39, 38] {
        assert_eq!(get(&client, &weir, &path(i)).await.cache, "HIT", "{i}");
    }
    for early in [2, 3, 4] {
        let got = get(&client, &weir, &path(early)).await;
        assert_eq!(got.cache, "MISS", "{} was evicted", path(early));
        assert_intact(&got, 20 * 1024, &path(early));
    }
    check_disk("the end");
    assert_eq!(origin.hits("/e0"), 1);
    assert_eq!(origin.hits("/e2"), 2);
}

#[tokio::test]
async fn inactive_removes_unread_objects() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let weir = start_zone(&origin, dir.path(), "    inactive: 2s\n");
    let client = common::client();
    let (unread, read) = ("/i/unread?size=10k", "/i/read?size=10k");
    assert_eq!(get(&client, &weir, unread).await.cache, "MISS");
    let got = get(&client, &weir, read).await;
    assert_eq!(got.cache, "MISS");
    let files = zone_files(dir.path());
    assert_eq!(files.objects.len(), 2, "{files:?}");
    // Which file is the unread one: the one that goes (the other one is read every 500 ms).
    let last_read = Instant::now();
    let got = get(&client, &weir, unread).await;
    assert_eq!(got.cache, "HIT");
    assert_intact(&got, 10 * 1024, unread);
    let before: BTreeSet<PathBuf> = files.objects.into_iter().map(|o| o.0).collect();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut polls = 0;
    let gone = loop {
        assert!(Instant::now() < deadline, "nothing removed in 8 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        polls += 1;
        if polls % 5 == 0 {
            let got = get(&client, &weir, read).await;
            assert_eq!(got.cache, "HIT", "the object read every 500 ms stays");
        }
        let now: BTreeSet<PathBuf> = zone_files(dir.path())
            .objects
            .into_iter()
            .map(|o| o.0)
            .collect();
        if now.len() < before.len() {
            assert_eq!(now.len(), 1, "only the unread object goes");
            break before.difference(&now).next().unwrap().clone();
        }
    };
    let after = last_read.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "removed {after:?} after its last read"
    );
    assert!(!gone.exists());
    let got = get(&client, &weir, unread).await;
    assert_eq!(got.cache, "MISS", "removed after {after:?}");
    assert_intact(&got, 10 * 1024, unread);
    assert_eq!(get(&client, &weir, read).await.cache, "HIT");
    assert_eq!(origin.hits("/i/unread"), 2);
    assert_eq!(origin.hits("/i/read"), 1);
}

/// Unmounts a mount point on drop (`umount -l` when it is busy).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test]
async fn disk_full_keeps_serving_uncached() {
    if !is_root() {
        eprintln!("skipping: disk_full_keeps_serving_uncached needs root to mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("cache");
    std::fs::create_dir(&zone).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&zone)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipping: disk_full_keeps_serving_uncached: mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipping: disk_full_keeps_serving_uncached: cannot run mount: {e}");
            return;
        }
    }
    // Dropped after weir (declared later), before the temp dir (declared earlier).
    let _unmount = Unmount(zone.clone());
    let origin = Origin::start("o");
    let weir = start_zone(&origin, &zone, "");
    let client = common::client();
    let len = 100 * 1024;
    let paths: Vec<String> = (0..10).map(|i| format!("/full{i}?size=100k")).collect();
    let mut first = Vec::new();
    for p in &paths {
        let got = get(&client, &weir, p).await;
        assert_intact(&got, len, p);
        first.push(got.cache);
    }
    assert!(first.iter().all(|s| s == "MISS"), "{first:?}");
    // Again, and chunked (the length unknown until the end).
    let mut second = Vec::new();
    for p in &paths {
        let got = get(&client, &weir, p).await;
        assert_intact(&got, len, p);
        second.push(got.cache);
        let chunked = format!("{p}&chunked=1");
        let got = get(&client, &weir, &chunked).await;
        assert_intact(&got, len, &chunked);
    }
    let stored = second.iter().filter(|s| *s == "HIT").count();
    assert!(
        (1..=2).contains(&stored),
        "256 KiB hold one or two 100 KiB objects: {second:?}"
    );
    eprintln!("disk full: {stored} of 10 objects stored on the 256 KiB tmpfs: {second:?}");
    assert!(weir.wait_log("cannot store objects"), "{}", weir.stderr());
    // More failures, still one line: it is logged at most once a minute.
    for i in 0..5 {
        let p = format!("/more{i}?size=100k");
        assert_intact(&get(&client, &weir, &p).await, len, &p);
    }
    let log = weir.stderr();
    assert_eq!(log.matches("cannot store objects").count(), 1, "{log}");
    let files = zone_files(&zone);
    assert!(files.temp.is_empty(), "failed writes left {:?}", files.temp);
    assert!(files.other.is_empty(), "{:?}", files.other);
    assert_eq!(files.objects.len(), stored, "{files:?}");
    for (p, _) in &files.objects {
        check_object(p).unwrap();
    }
    drop(weir);
}

#[tokio::test]
async fn nothing_is_written_outside_the_zone_path() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("sibling"), "x").unwrap();
    std::fs::create_dir(parent.path().join("sibling-dir")).unwrap();
    let zone = parent.path().join("zone");
    let before = tree(parent.path());
    let origin = Origin::start("o");
    let extra = "    max_size: 300k\n    max_object_size: 200k\n";
    let mut weir = start_zone(&origin, &zone, extra);
    let client = common::client();
    // Misses, hits, eviction, objects over max_object_size, a revalidation (a meta rewrite).
    for i in 0..20 {
        let p = format!("/n{i}?size=30k");
        assert_intact(&get(&client, &weir, &p).await, 30 << 10, &p);
    }
    for p in [
        "/n19?size=30k",
        "/big?size=250k",
        "/big?size=250k&chunked=1",
    ] {
        let got = get(&client, &weir, p).await;
        assert_intact(&got, size_of(p), p);
    }
    let reval = "/rv?size=5k&cc=max-age%3D1&etag=%22v%22";
    assert_eq!(get(&client, &weir, reval).await.cache, "MISS");
    // A client that goes away mid-body: the miss's temp file is dropped.
    let resp = client
        .get(weir.url("/gone?size=1m&body_delay=20"))
        .send()
        .await
        .unwrap();
    drop(resp);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = get(&client, &weir, reval).await;
    assert_eq!(got.cache, "REVALIDATED");
    assert_intact(&got, 5 << 10, reval);
    // Writes cut short by kill -9, then a restart that cleans them up.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (client, url) = (
            client.clone(),
            weir.url(&format!("/k{i}?size=1m&body_delay=20")),
        );
        tasks.push(tokio::spawn(async move {
            if let Ok(r) = client.get(url).send().await {
                let _ = r.bytes().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    weir.signal("KILL");
    assert!(weir.wait_exit(Duration::from_secs(5)).is_some());
    for t in tasks {
        t.await.unwrap();
    }
    drop(weir);
    let weir = start_zone(&origin, &zone, extra);
    let p = "/n19?size=30k";
    assert_eq!(get(&client, &weir, p).await.cache, "HIT");
    drop(weir);

    let after = tree(parent.path());
    let new: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(
        new.iter().all(|p| p.starts_with("zone")),
        "written outside the zone: {new:?}"
    );
    assert!(before.is_subset(&after), "something was removed");
    assert_eq!(
        std::fs::read(parent.path().join("sibling")).unwrap(),
        b"x".to_vec()
    );
    let files = zone_files(&zone);
    assert!(files.other.is_empty(), "{:?}", files.other);
    for (p, _) in &files.objects {
        check_object(p).unwrap();
    }
}
