//! Proxying through the real binary: forwarding headers, streaming both ways, 413, 502 and
//! 504 like nginx, keep-alive, the headers plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, simple_config, Origin, Weir};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn forwards_headers_and_host() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(&simple_config(port, origin.addr(), "", "", "headers: {request: {set: {X-Env: test}}, response: {set: {X-Served-By: weir}, remove: [X-Origin]}}"), port);
    let r = common::client()
        .get(weir.url("/__echo?a=1"))
        .header("Host", "img.example.com")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "weir");
    assert!(
        r.headers().get("x-origin").is_none(),
        "removed by the headers plugin"
    );
    let echo: serde_json::Value = r.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(h["host"][0], "img.example.com");
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-real-ip"][0], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-env"][0], "test");
    assert_eq!(echo["uri"], "/__echo?a=1");
}

#[tokio::test]
async fn streams_100_mib_each_way_with_flat_memory() {
    const SIZE: u64 = 100 << 20;
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(port, origin.addr(), "  max_request_body: 200MiB\n", "", ""),
        port,
    );
    let client = common::client();
    let rss_before = weir.proc_status_kib("VmRSS");

    // Download: hash as it arrives, never hold it.
    let r = client.get(weir.url("/big?size=100m")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(SIZE));
    let mut stream = r.bytes_stream();
    let (mut n, mut fnv) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        fnv = weir_origin::fnv1a_update(fnv, &chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(fnv, weir_origin::pattern_fnv(SIZE));

    // Upload: a generated stream of 100 MiB, hashed by the origin.
    let chunks = (0..(SIZE / (1 << 20)))
        .map(|i| Ok::<_, std::io::Error>(weir_origin::pattern(i << 20, 1 << 20)));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client
        .post(weir.url("/__echo"))
        .header("Content-Length", SIZE.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_bytes"], SIZE);
    assert_eq!(
        echo["body_fnv"],
        format!("{:016x}", weir_origin::pattern_fnv(SIZE))
    );

    // 200 MiB went through; a proxy that buffered would have grown by at least 100 MiB.
    let grown_mib = weir.proc_status_kib("VmHWM").saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while streaming"
    );
}

#[tokio::test]
async fn refused_connection_is_502() {
    let port = free_port();
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let weir = Weir::start(&simple_config(port, dead, "", "", ""), port);
    let r = common::client().get(weir.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("502 Bad Gateway"));
}

#[tokio::test]
async fn slow_upstream_is_504_after_read_timeout() {
    let origin = Origin::start("slow");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(port, origin.addr(), "", "    read_timeout: 500ms\n", ""),
        port,
    );
    let t = Instant::now();
    let r = common::client()
        .get(weir.url("/x?delay=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2900),
        "{took:?}"
    );
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A listener with a full backlog never completes the handshake: a blackhole on loopback.
    let port = free_port();
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blackhole.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..512 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let weir = Weir::start(
        &simple_config(
            port,
            addr,
            "",
            "    connect_timeout: 300ms\n    read_timeout: 1s\n",
            "",
        ),
        port,
    );
    let r = common::client().get(weir.url("/x")).send().await.unwrap();
    // When the kernel still completes the handshake the read times out instead (also 504).
    assert_eq!(r.status(), 504);
    drop(fillers);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(port, origin.addr(), "  max_request_body: 64KiB\n", "", ""),
        port,
    );
    let client = common::client();
    // Declared by Content-Length: refused before anything goes upstream.
    let r = client
        .post(weir.url("/__echo"))
        .body(vec![b'x'; 100 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(origin.hits("/__echo"), 0);
    // Chunked: refused when the count passes the limit.
    let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 32 << 10]));
    let r = client
        .post(weir.url("/__echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The connection may be closed while the client still sends; that is a refusal too.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // A body within the limit passes.
    let r = client
        .post(weir.url("/__echo"))
        .body(vec![b'z'; 60 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn upstream_keepalive_reuses_connections() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(port, origin.addr(), "", "    keepalive: 8\n", ""),
        port,
    );
    let client = common::client();
    for _ in 0..20 {
        assert_eq!(
            client.get(weir.url("/k")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(origin.hits("/k"), 20);
    assert!(
        // Without reuse this would be 20; a pooled connection on its way back between
        // weir's threads can make a few more.
        origin.connections() <= 5,
        "{} upstream connections for 20 sequential requests",
        origin.connections()
    );
}

#[tokio::test]
async fn status_and_reset_from_the_origin() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    let client = common::client();
    // An origin status passes through as is.
    assert_eq!(
        client
            .get(weir.url("/x?status=503"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // A reset mid-body: the client sees a truncated body, and weir keeps serving.
    let r = client
        .get(weir.url("/x?size=1m&reset_after=1000"))
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.is_err());
    assert_eq!(
        client
            .get(weir.url("/after"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn client_connection_close_does_not_close_the_upstream_connection() {
    let origin = Origin::start("o");
    let port = free_port();
    let _weir = Weir::start(&simple_config(port, origin.addr(), "", "", ""), port);
    for _ in 0..10 {
        let resp = common::raw_request(
            port,
            b"GET /__echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nKeep-Alive: 5\r\n\r\n",
        );
        assert_eq!(common::status_of(&resp), 200, "{resp}");
        assert!(
            !resp.contains("\"connection\""),
            "hop-by-hop header forwarded: {resp}"
        );
        assert!(
            !resp.contains("\"keep-alive\""),
            "hop-by-hop header forwarded: {resp}"
        );
        // The upstream connection returns to the pool just after the client has its
        // response; pace the next request so it finds it there.
        std::thread::sleep(Duration::from_millis(30));
    }
    // A forwarded `Connection: close` would make the origin close after each response: 10
    // connections. Reuse across weir's two threads is not perfect (a pooled connection can
    // still be on its way back), so allow a few.
    assert!(
        origin.connections() <= 5,
        "{} upstream connections for 10 requests",
        origin.connections()
    );
}

#[tokio::test]
async fn max_request_body_zero_means_no_limit() {
    let origin = Origin::start("o");
    let port = free_port();
    let weir = Weir::start(
        &simple_config(port, origin.addr(), "  max_request_body: 0\n", "", ""),
        port,
    );
    let r = common::client()
        .post(weir.url("/__echo"))
        .body(vec![b'x'; 3 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_bytes"], 3 << 20);
}
