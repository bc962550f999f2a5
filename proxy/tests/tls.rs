//! TLS listeners with a certificate the test generates: HTTP/1.1 and HTTP/2 by ALPN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};

fn cert(dir: &std::path::Path) -> (String, String, reqwest::Certificate) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let root = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap();
    (cert.display().to_string(), key.display().to_string(), root)
}

#[tokio::test]
async fn tls_listener_with_http2_and_plain_listener_side_by_side() {
    let origin = Origin::start("o");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, root) = cert(certs.path());
    let (plain, h2, h1) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "server:\n  listen:\n    - '127.0.0.1:{plain}'\n\
         \x20   - {{addr: '127.0.0.1:{h2}', tls: {{cert: '{cert}', key: '{key}'}}, http2: true}}\n\
         \x20   - {{addr: '127.0.0.1:{h1}', tls: {{cert: '{cert}', key: '{key}'}}}}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
         routes: [{{upstream: o}}]\n",
        origin.addr()
    );
    let weir = Weir::start(&yaml, plain);
    common::wait_listening(("127.0.0.1", h2));
    common::wait_listening(("127.0.0.1", h1));
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .no_proxy()
        .build()
        .unwrap();

    let r = client
        .get(format!("https://localhost:{h2}/__echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(
        echo["headers"]["host"][0],
        format!("localhost:{h2}"),
        "h2 :authority becomes Host upstream"
    );

    let r = client
        .get(format!("https://localhost:{h1}/__echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_11,
        "no http2: ALPN offers http/1.1 only"
    );
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    let r = client.get(weir.url("/__echo")).send().await.unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "http");
}

#[test]
fn unreadable_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tls.yaml");
    std::fs::write(
        &f,
        "server: {listen: [{addr: '127.0.0.1:8443', tls: {cert: /nonexistent/c.pem, key: /nonexistent/k.pem}}]}\n\
         upstreams: {o: {tiers: [{name: a, servers: ['127.0.0.1:1']}]}}\nroutes: [{upstream: o}]\n",
    )
    .unwrap();
    let (ok, out) = common::check_config(&f);
    assert!(!ok);
    assert!(
        out.starts_with("server.listen[0].tls: cannot load `/nonexistent/c.pem`"),
        "{out}"
    );
}
