//! Behaviour of the fixture origin over real sockets: default response,
//! pattern bodies across chunk boundaries, status and header parameters,
//! delays, mid-body resets, `/__echo` hashing and hit counting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{fetch, get, raw_exchange, send, split_head};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use weir_origin::{expected_byte, pattern, pattern_fnv, Origin};

#[tokio::test]
async fn default_response_names_origin_and_path() {
    let o = Origin::start("alpha");
    let r = get(o.addr(), "/some/path?x=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "alpha /some/path\n");
    assert_eq!(r.header("x-origin"), "alpha");
    assert_eq!(r.header("content-length"), "17");
    assert_eq!(r.header("content-type"), "text/plain");
    assert!(!r.header("date").is_empty());
}

#[tokio::test]
async fn three_mib_pattern_streams_correctly() {
    let o = Origin::start("big");
    for query in ["size=3m", "size=3m&chunked=1"] {
        let resp = send(
            o.addr(),
            Method::GET,
            &format!("/big?{query}"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/octet-stream");
        if query.contains("chunked") {
            assert!(h.get("content-length").is_none());
            assert_eq!(h["transfer-encoding"], "chunked");
        } else {
            assert_eq!(h["content-length"], (3u64 << 20).to_string().as_str());
        }
        let mut body = resp.into_body();
        let mut off = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for (i, &b) in data.iter().enumerate() {
                assert_eq!(
                    b,
                    expected_byte(off + i as u64),
                    "{query}: byte {}",
                    off + i as u64
                );
            }
            off += data.len() as u64;
        }
        assert_eq!(off, 3 << 20, "{query}");
    }
}

#[tokio::test]
async fn size_suffixes_and_hash_helper() {
    let o = Origin::start("s");
    let r = get(o.addr(), "/x?size=50k").await;
    assert_eq!(r.body.len(), 50 * 1024);
    assert_eq!(weir_origin::fnv1a(&r.body), pattern_fnv(50 * 1024));
    assert_eq!(get(o.addr(), "/x?size=0").await.body.len(), 0);
    assert_eq!(
        get(o.addr(), "/x?size=70000").await.body,
        pattern(0, 70_000)
    );
}

#[tokio::test]
async fn status_and_header_parameters() {
    let o = Origin::start("h");
    let q = "/h?status=404&cc=max-age%3D60&set_cookie=a%3Db%3B%20Path%3D%2F&vary=Accept-Encoding\
             &expires=Thu,%2001%20Dec%202044%2016:00:00%20GMT&x_accel_expires=30&etag=%22v1%22\
             &last_modified=Wed,%2021%20Oct%202015%2007:28:00%20GMT&ctype=text/html";
    let r = get(o.addr(), q).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("cache-control"), "max-age=60");
    assert_eq!(r.header("set-cookie"), "a=b; Path=/");
    assert_eq!(r.header("vary"), "Accept-Encoding");
    assert_eq!(r.header("expires"), "Thu, 01 Dec 2044 16:00:00 GMT");
    assert_eq!(r.header("x-accel-expires"), "30");
    assert_eq!(r.header("etag"), "\"v1\"");
    assert_eq!(r.header("last-modified"), "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(r.header("content-type"), "text/html");
    assert_eq!(r.header("x-origin"), "h");
    assert_eq!(r.text(), "h /h\n");

    let r = get(o.addr(), "/n?status=304&etag=%22v1%22").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());

    let r = get(o.addr(), "/bad?size=lots").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("size"), "{}", r.text());
}

#[tokio::test]
async fn delay_and_body_delay() {
    let o = Origin::start("d");
    let t = Instant::now();
    let r = get(o.addr(), "/d?delay=300").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    // 150 KiB = 3 chunks, 100 ms before each; the head comes before the wait.
    let t = Instant::now();
    let resp = send(
        o.addr(),
        Method::GET,
        "/d?size=150k&body_delay=100",
        &[],
        Bytes::new(),
    )
    .await;
    let head_at = t.elapsed();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 150 * 1024);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(
        head_at < Duration::from_millis(200),
        "head waited for the body: {head_at:?}"
    );
}

#[tokio::test]
async fn reset_after_aborts_with_rst() {
    let o = Origin::start("r");
    let req = "GET /r?size=1m&reset_after=1000 HTTP/1.1\r\nHost: x\r\n\r\n";
    let (raw, err) = raw_exchange(o.addr(), req).await;
    let (head, body) = split_head(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-length: 1048576"),
        "{head}"
    );
    assert_eq!(body.len(), 1000);
    assert_eq!(body, &pattern(0, 1000)[..]);
    let err = err.expect("connection should end with an error, not EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // A hyper client sees a body error.
    let resp = send(o.addr(), Method::GET, "/r?reset_after=3", &[], Bytes::new()).await;
    assert!(resp.into_body().collect().await.is_err());

    // The origin keeps serving afterwards.
    assert_eq!(get(o.addr(), "/after").await.status, StatusCode::OK);
}

#[tokio::test]
async fn echo_hashes_streamed_upload() {
    let o = Origin::start("e");
    let upload = pattern(123, 3 << 20);
    let r = fetch(
        o.addr(),
        Method::PUT,
        "/__echo?a=1&b=%20",
        &[("x-test", "one"), ("x-test", "two")],
        upload.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["name"], "e");
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["uri"], "/__echo?a=1&b=%20");
    assert_eq!(v["headers"]["x-test"], serde_json::json!(["one", "two"]));
    assert_eq!(
        v["headers"]["content-length"],
        serde_json::json!([(3u64 << 20).to_string()])
    );
    assert_eq!(v["body_bytes"], 3u64 << 20);
    assert_eq!(
        v["body_fnv"],
        format!("{:016x}", weir_origin::fnv1a(&upload))
    );

    // Uploads to ordinary paths are drained too.
    let r = fetch(o.addr(), Method::POST, "/up", &[], pattern(0, 1 << 20)).await;
    assert_eq!(r.text(), "e /up\n");
}

#[tokio::test]
async fn hits_are_counted_per_path() {
    let o = Origin::start("c");
    for pq in ["/a", "/a?x=1", "/b", "/__health"] {
        get(o.addr(), pq).await;
    }
    fetch(o.addr(), Method::POST, "/a", &[], Bytes::from_static(b"x")).await;
    assert_eq!(o.hits("/a"), 3);
    assert_eq!(o.hits("/b"), 1);
    assert_eq!(o.hits("/nope"), 0);
    assert_eq!(o.hits("/__health"), 1);
    assert_eq!(get(o.addr(), "/__hits?path=/a").await.text(), "3");
    assert_eq!(get(o.addr(), "/__hits?path=%2Fb").await.text(), "1");
    assert_eq!(get(o.addr(), "/__health").await.text(), "ok\n");
    assert_eq!(o.total_hits(), 6);
    assert_eq!(o.hits("/__hits"), 0);
}
