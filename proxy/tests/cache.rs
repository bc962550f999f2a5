//! The disk cache through the real binary: X-Cache-Status sequences, nginx's storing rules,
//! HEAD and Range from the stored GET, Vary, the lock, stale serving, revalidation, bypass,
//! max_object_size, and objects surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};
use std::time::Duration;
use weir_origin::expected_byte;

struct Cached {
    weir: Weir,
    origin: Origin,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// weir with zone `c` (`zone_extra`: more zone keys, indented 4; `valid` is 200 for 10m
/// unless it names its own) on one catch-all route with `- cache: {zone: c <plugin_extra>}`.
fn start_with(zone_extra: &str, plugin_extra: &str, dir: Option<tempfile::TempDir>) -> Cached {
    let origin = Origin::start("o");
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let port = free_port();
    let valid = if zone_extra.contains("    valid:") {
        ""
    } else {
        "    valid: { \"200\": 10m }\n"
    };
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         caches:\n  c:\n    path: {}\n{valid}{zone_extra}\
         upstreams:\n  o: {{ tiers: [{{ name: a, servers: [\"{}\"] }}] }}\n\
         routes:\n  - {{ upstream: o, plugins: [{{ cache: {{ zone: c{plugin_extra} }} }}] }}\n",
        dir.path().display(),
        origin.addr()
    );
    Cached {
        weir: Weir::start(&yaml, port),
        origin,
        _dir: dir,
        client: common::client(),
    }
}

fn start(zone_extra: &str) -> Cached {
    start_with(zone_extra, "", None)
}

struct Got {
    status: u16,
    cache: String,
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl Cached {
    async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut r = self
            .client
            .request(method.parse().unwrap(), self.weir.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let cache = headers
            .get("x-cache-status")
            .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap().to_vec();
        Got {
            status,
            cache,
            body,
            headers,
        }
    }

    async fn get(&self, path: &str) -> Got {
        self.req("GET", path, &[]).await
    }

    /// The X-Cache-Status of each GET of `path`.
    async fn statuses(&self, path: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.get(path).await.cache);
        }
        out
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(expected_byte).collect()
}

#[tokio::test]
async fn miss_then_hit_with_one_origin_request() {
    let c = start("");
    let first = c.get("/a?size=5000").await;
    assert_eq!((first.status, first.cache.as_str()), (200, "MISS"));
    let second = c.get("/a?size=5000").await;
    assert_eq!((second.status, second.cache.as_str()), (200, "HIT"));
    assert_eq!(second.body, pattern(5000));
    // A cached response says how old it is (RFC 9111; nginx sends no Age).
    assert!(second.headers.contains_key("age"));
    assert!(!first.headers.contains_key("age"));
    assert_eq!(first.body, second.body);
    assert_eq!(c.origin.hits("/a"), 1);
}

#[tokio::test]
async fn max_age_expires_into_expired() {
    let c = start("");
    let path = "/e?cc=max-age%3D1";
    assert_eq!(c.statuses(path, 2).await, ["MISS", "HIT"]);
    // max-age=1 lasts 1-2 s (whole seconds, as nginx).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(c.statuses(path, 2).await, ["EXPIRED", "HIT"]);
    assert_eq!(c.origin.hits("/e"), 2);
}

#[tokio::test]
async fn no_store_private_no_cache_set_cookie_and_vary_star_are_not_stored() {
    let c = start("");
    for (i, q) in [
        "cc=no-store",
        "cc=private",
        "cc=no-cache",
        "set_cookie=a%3D1",
        "vary=%2A",
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/n{i}?{q}");
        assert_eq!(c.statuses(&path, 2).await, ["MISS", "MISS"], "{q}");
        assert_eq!(c.origin.hits(&format!("/n{i}")), 2, "{q}");
    }
    // The first decision is logged with its reason (then at most one line a second).
    assert!(c
        .weir
        .wait_log("cache c: not storing /n0?cc=no-store: Cache-Control: no-store"));
}

#[tokio::test]
async fn valid_by_status() {
    let c = start("");
    // Only 200 has a `valid` time: a 404 without Cache-Control is not stored.
    assert_eq!(c.statuses("/missing?status=404", 2).await, ["MISS", "MISS"]);
    let v = start_404();
    assert_eq!(v.statuses("/gone?status=404", 2).await, ["MISS", "HIT"]);
    assert_eq!(v.statuses("/err?status=500", 2).await, ["MISS", "MISS"]);
    assert_eq!(v.origin.hits("/gone"), 1);
}

/// A zone whose `valid` lists 200 and 404.
fn start_404() -> Cached {
    start("    valid: { \"200\": 10m, \"404\": 1m }\n")
}

#[tokio::test]
async fn head_after_get_is_a_hit_and_a_cold_head_is_stored_from_get() {
    let c = start("");
    assert_eq!(c.get("/h?size=3000").await.cache, "MISS");
    let head = c.req("HEAD", "/h?size=3000", &[]).await;
    assert_eq!((head.status, head.cache.as_str()), (200, "HIT"));
    assert!(head.body.is_empty());
    assert_eq!(head.headers["content-length"], "3000");
    // A cold HEAD goes upstream as GET and stores the object.
    let head = c.req("HEAD", "/h2?size=100", &[]).await;
    assert_eq!(
        (head.status, head.cache.as_str(), head.body.len()),
        (200, "MISS", 0)
    );
    let get = c.get("/h2?size=100").await;
    assert_eq!((get.cache.as_str(), get.body.len()), ("HIT", 100));
    assert_eq!(c.origin.hits("/h2"), 1);
}

#[tokio::test]
async fn vary_keeps_one_variant_per_request_header_value() {
    let c = start("");
    let path = "/v?vary=Accept-Encoding";
    let gz = [("Accept-Encoding", "gzip")];
    let br = [("Accept-Encoding", "br")];
    assert_eq!(c.req("GET", path, &gz).await.cache, "MISS");
    assert_eq!(c.req("GET", path, &gz).await.cache, "HIT");
    assert_eq!(c.req("GET", path, &br).await.cache, "MISS");
    assert_eq!(c.req("GET", path, &br).await.cache, "HIT");
    assert_eq!(c.req("GET", path, &gz).await.cache, "HIT");
    assert_eq!(c.origin.hits("/v"), 2);
}

#[tokio::test]
async fn fifty_cold_requests_make_one_origin_request_with_the_lock() {
    let c = start("");
    c.origin.state().set_fixed_delay(300);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = c.client.clone();
        let url = c.weir.url("/l?size=20000");
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.headers()["x-cache-status"].to_str().unwrap().to_string();
            let body = r.bytes().await.unwrap();
            (status, body.len())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, len) = t.await.unwrap();
        assert_eq!(len, 20000);
        statuses.push(status);
    }
    assert_eq!(c.origin.hits("/l"), 1, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "MISS").count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn use_stale_serves_the_old_copy_when_the_origin_fails() {
    let mut c = start("    use_stale: [error, timeout, http_502]\n");
    let path = "/s?cc=max-age%3D1&size=700";
    assert_eq!(c.get(path).await.cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.origin.state().set_fixed_status(502);
    let got = c.get(path).await;
    assert_eq!((got.status, got.cache.as_str()), (200, "STALE"));
    assert_eq!(got.body, pattern(700));
    c.origin.stop();
    let got = c.get(path).await;
    assert_eq!((got.status, got.cache.as_str()), (200, "STALE"));
}

#[tokio::test]
async fn updating_serves_stale_while_one_request_refreshes() {
    let c = start("    use_stale: [updating]\n");
    let path = "/u?cc=max-age%3D1";
    assert_eq!(c.get(path).await.cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.origin.state().set_fixed_delay(800);
    let client = c.client.clone();
    let url = c.weir.url(path);
    let refresh = tokio::spawn(async move {
        let r = client.get(url).send().await.unwrap();
        r.headers()["x-cache-status"].to_str().unwrap().to_string()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = c.get(path).await;
    assert_eq!((during.status, during.cache.as_str()), (200, "UPDATING"));
    assert_eq!(refresh.await.unwrap(), "EXPIRED");
    assert_eq!(c.origin.hits("/u"), 2);
}

#[tokio::test]
async fn a_304_from_the_origin_revalidates_the_stored_copy() {
    let c = start("");
    let path = "/r?cc=max-age%3D1&etag=%22v1%22&size=900";
    assert_eq!(c.get(path).await.cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = c.get(path).await;
    assert_eq!((got.status, got.cache.as_str()), (200, "REVALIDATED"));
    assert_eq!(got.body, pattern(900));
    assert_eq!(c.get(path).await.cache, "HIT");
    assert_eq!(c.origin.hits("/r"), 2);
}

#[tokio::test]
async fn range_is_served_206_from_the_cache() {
    let c = start("");
    assert_eq!(c.get("/g?size=10000").await.cache, "MISS");
    let got = c
        .req("GET", "/g?size=10000", &[("Range", "bytes=100-199")])
        .await;
    assert_eq!((got.status, got.cache.as_str()), (206, "HIT"));
    assert_eq!(got.body, pattern(10000)[100..200].to_vec());
    assert_eq!(got.headers["content-range"], "bytes 100-199/10000");
    // A cold Range request fetches the whole object, answers 206 and stores it.
    let got = c
        .req("GET", "/g2?size=5000", &[("Range", "bytes=-10")])
        .await;
    assert_eq!((got.status, got.body.len()), (206, 10));
    assert_eq!(got.body, pattern(5000)[4990..].to_vec());
    assert_eq!(c.get("/g2?size=5000").await.cache, "HIT");
}

#[tokio::test]
async fn zero_length_suffix_range_is_416() {
    let c = start("");
    assert_eq!(c.get("/z?size=10000").await.cache, "MISS");
    // nginx: a suffix of nothing selects nothing, 416; so does a set of only that.
    for range in ["bytes=-0", "bytes=-0,-0"] {
        let got = c.req("GET", "/z?size=10000", &[("Range", range)]).await;
        assert_eq!((got.status, got.cache.as_str()), (416, "HIT"), "{range}");
        assert_eq!(got.headers["content-range"], "bytes */10000", "{range}");
        assert!(got.body.is_empty());
    }
    // A zero-length suffix next to a real range is skipped, as nginx skips it.
    let got = c
        .req("GET", "/z?size=10000", &[("Range", "bytes=-0,0-9")])
        .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.headers["content-range"], "bytes 0-9/10000");
}

#[tokio::test]
async fn bypass_fetches_and_stores() {
    let c = start_with(
        "",
        ", bypass: [\"header:X-No-Cache\", \"cookie:nocache\"]",
        None,
    );
    let path = "/b?size=10";
    assert_eq!(c.get(path).await.cache, "MISS");
    assert_eq!(c.get(path).await.cache, "HIT");
    assert_eq!(
        c.req("GET", path, &[("X-No-Cache", "1")]).await.cache,
        "BYPASS"
    );
    assert_eq!(
        c.req("GET", path, &[("Cookie", "nocache=yes")]).await.cache,
        "BYPASS"
    );
    // "0" and empty values do not bypass, as nginx.
    assert_eq!(
        c.req("GET", path, &[("X-No-Cache", "0")]).await.cache,
        "HIT"
    );
    assert_eq!(c.origin.hits("/b"), 3);
}

#[tokio::test]
async fn objects_over_max_object_size_stream_through_uncached() {
    let c = start("    max_object_size: 1k\n");
    for path in ["/big?size=3000", "/big?size=3000&chunked=1"] {
        let got = c.get(path).await;
        assert_eq!((got.status, got.body.len()), (200, 3000), "{path}");
        assert_eq!(got.body, pattern(3000));
        assert_eq!(c.get(path).await.cache, "MISS", "{path}");
    }
    assert_eq!(c.origin.hits("/big"), 4);
    assert_eq!(c.statuses("/small?size=1000", 2).await, ["MISS", "HIT"]);
}

#[tokio::test]
async fn objects_stored_before_a_restart_are_hits_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().to_path_buf();
    let c = start_with("", "", Some(dir));
    assert_eq!(c.get("/p?size=4000").await.cache, "MISS");
    let Cached { weir, _dir, .. } = c;
    drop(weir);
    let c = start_with("", "", Some(_dir));
    assert_eq!(keep, c._dir.path());
    let got = c.get("/p?size=4000").await;
    assert_eq!((got.cache.as_str(), got.body), ("HIT", pattern(4000)));
    assert_eq!(c.origin.hits("/p"), 0, "a new origin: never asked");
}

#[test]
fn an_unwritable_cache_dir_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a dir").unwrap();
    let f = dir.path().join("weir.yaml");
    std::fs::write(
        &f,
        format!(
            "server: {{listen: ['127.0.0.1:8080']}}\ncaches: {{c: {{path: {}/sub}}}}\n\
             upstreams: {{o: {{tiers: [{{name: a, servers: ['127.0.0.1:1']}}]}}}}\n\
             routes: [{{upstream: o, plugins: [{{cache: {{zone: c}}}}]}}]\n",
            blocker.display()
        ),
    )
    .unwrap();
    let (ok, out) = common::check_config(&f);
    assert!(!ok);
    assert!(out.starts_with("caches.c.path: "), "{out}");
}

#[tokio::test]
async fn the_responses_own_stale_if_error_allows_a_stale_copy() {
    // No use_stale on the zone: the response's Cache-Control extension decides (nginx too).
    let c = start("");
    let path = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D60&size=300";
    assert_eq!(c.get(path).await.cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.origin.state().set_fixed_status(502);
    let got = c.get(path).await;
    assert_eq!((got.status, got.cache.as_str()), (200, "STALE"));
    assert_eq!(got.body, pattern(300));
    // Without the extension the failure goes to the client.
    let plain = "/nosie?cc=max-age%3D1&size=300";
    c.origin.state().set_fixed_status(0);
    assert_eq!(c.get(plain).await.cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.origin.state().set_fixed_status(502);
    assert_eq!(c.get(plain).await.status, 502);
}

#[test]
fn two_zones_cannot_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("weir.yaml");
    std::fs::write(
        &f,
        format!(
            "server: {{listen: ['127.0.0.1:8080']}}\n\
             caches: {{a: {{path: {0}/c}}, b: {{path: {0}/c}}}}\n\
             upstreams: {{o: {{tiers: [{{name: a, servers: ['127.0.0.1:1']}}]}}}}\n\
             routes: [{{upstream: o}}]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (ok, out) = common::check_config(&f);
    assert!(!ok);
    assert!(out.starts_with("caches.b.path: "), "{out}");
    assert!(
        out.contains("is already the directory of caches.a"),
        "{out}"
    );
}
