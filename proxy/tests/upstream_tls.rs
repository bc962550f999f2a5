//! TLS upstreams through real processes: weir A proxies over TLS to weir B (a TLS listener
//! with a certificate signed by a test CA), which proxies to a weir-origin. Covers `sni`,
//! `host`, `tls_ca`, IP-literal and host-name addresses, `http2` by ALPN, and a `tls_ca`
//! that is not PEM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, Origin, Weir};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A test CA and a leaf it signed for `origin.test`, `localhost` and 127.0.0.1, as PEM files
/// in a temp dir (which also holds weir B's access log).
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weir test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let mut leaf_params = CertificateParams::new(vec![
        "origin.test".to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ])
    .unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "origin.test");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("leaf.pem"),
        dir.path().join("leaf.key"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca: ca_path,
        cert,
        key,
    }
}

/// Weir B: a TLS listener (HTTP/2 offered by ALPN) with the test leaf in front of `origin`,
/// writing a JSON access log to `<pki dir>/b-access.log`.
fn weir_b(pki: &Pki, origin: &Origin) -> Weir {
    let port = free_port();
    let yaml = format!(
        "server:\n  listen:\n    - {{addr: '127.0.0.1:{port}', tls: {{cert: '{}', key: '{}'}}, http2: true}}\n\
         \x20 threads: 1\n  grace_period: 1s\n\
         \x20 access_log: {{path: '{}', format: json}}\n\
         upstreams: {{o: {{tiers: [{{name: origin, servers: ['{}']}}]}}}}\n\
         routes: [{{upstream: o}}]\n",
        pki.cert.display(),
        pki.key.display(),
        b_access_log(pki).display(),
        origin.addr()
    );
    Weir::start(&yaml, port)
}

fn b_access_log(pki: &Pki) -> PathBuf {
    pki.dir.path().join("b-access.log")
}

/// Weir A: one upstream `o` with the single server `server` (a YAML flow value) and, when
/// given, `tls_ca`; one catch-all route.
fn weir_a(server: &str, tls_ca: Option<&Path>) -> Weir {
    let port = free_port();
    let ca = tls_ca.map_or(String::new(), |p| {
        format!("    tls_ca: '{}'\n", p.display())
    });
    let yaml = format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  threads: 1\n  grace_period: 1s\n\
         upstreams:\n  o:\n    tiers: [{{name: origin, servers: [{server}]}}]\n{ca}\
         \x20   connect_timeout: 3s\n    read_timeout: 10s\n\
         routes: [{{upstream: o}}]\n"
    );
    Weir::start(&yaml, port)
}

/// A client with a short overall timeout, so every test is bounded.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// GET `path` through `weir`: the status and the body.
async fn get(weir: &Weir, path: &str) -> (u16, String) {
    let r = client().get(weir.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// GET /__echo through `weir`, expecting 200: the origin's description of the request.
async fn echo(weir: &Weir) -> serde_json::Value {
    let (status, body) = get(weir, "/__echo").await;
    assert_eq!(
        status,
        200,
        "body: {body}\nweir A stderr:\n{}",
        weir.stderr()
    );
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to 10 s) for weir B's access log line for `uri` and returns it parsed.
fn access_line(pki: &Pki, uri: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(b_access_log(pki)).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["uri"] == uri);
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {uri} in weir B's log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn verified_tls_upstream_with_sni_and_host_override() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test, host: bucket.s3.example}}",
            b.port
        ),
        Some(&pki.ca),
    );
    let echo = echo(&a).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["headers"]["host"][0], "bucket.s3.example");
    assert_eq!(
        echo["headers"]["host"].as_array().map(Vec::len),
        Some(1),
        "exactly one Host: {echo}"
    );
    // Weir B saw it over TLS, so its own hop says https.
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(access_line(&pki, "/__echo")["host"], "bucket.s3.example");
}

#[tokio::test]
async fn wrong_sni_fails() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: wrong.test}}",
            b.port
        ),
        Some(&pki.ca),
    );
    let (status, body) = get(&a, "/__echo").await;
    assert_eq!(status, 502, "certificate name mismatch; body: {body}");
    assert_eq!(origin.hits("/__echo"), 0, "never reached the origin");
    let needle = format!(
        "upstream o: 127.0.0.1:{} (origin) failed for /__echo",
        b.port
    );
    assert!(a.wait_log(&needle), "{}", a.stderr());
}

#[tokio::test]
async fn system_roots_do_not_trust_the_test_ca() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test}}",
            b.port
        ),
        None,
    );
    let (status, body) = get(&a, "/__echo").await;
    assert_eq!(status, 502, "unknown issuer; body: {body}");
    assert_eq!(origin.hits("/__echo"), 0, "never reached the origin");
    let needle = format!(
        "upstream o: 127.0.0.1:{} (origin) failed for /__echo",
        b.port
    );
    assert!(a.wait_log(&needle), "{}", a.stderr());
}

#[tokio::test]
async fn ip_literal_is_verified_against_ip_san() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!("{{addr: '127.0.0.1:{}', tls: true}}", b.port),
        Some(&pki.ca),
    );
    let echo = echo(&a).await;
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
}

#[tokio::test]
async fn host_name_addr_resolves_and_verifies() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!("{{addr: 'localhost:{}', tls: true}}", b.port),
        Some(&pki.ca),
    );
    let echo = echo(&a).await;
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    let line = access_line(&pki, "/__echo");
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn http2_to_the_upstream() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let h2 = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test, host: bucket.s3.example, http2: true}}",
            b.port
        ),
        Some(&pki.ca),
    );
    let h1 = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test}}",
            b.port
        ),
        Some(&pki.ca),
    );
    let (status, body) = get(&h2, "/__echo?via=h2").await;
    assert_eq!(status, 200, "{body}\n{}", h2.stderr());
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echo["headers"]["host"][0], "bucket.s3.example",
        "`host` becomes :authority over h2, and Host again at weir B"
    );
    let (status, body) = get(&h1, "/__echo?via=h1").await;
    assert_eq!(status, 200, "{body}\n{}", h1.stderr());

    assert_eq!(access_line(&pki, "/__echo?via=h2")["version"], "HTTP/2.0");
    assert_eq!(access_line(&pki, "/__echo?via=h1")["version"], "HTTP/1.1");
}

/// Request buffering over HTTP/2 both ways: weir A buffers each body and sends it to weir B
/// over h2 (the h2 upstream path), B reads it from an h2 stream, buffers it and sends it to
/// the origin over HTTP/1.1. Bodies kept in memory and in a temp file arrive intact.
#[tokio::test]
async fn buffered_bodies_over_http2_both_ways() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let a = weir_a(
        &format!(
            "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test, http2: true}}",
            b.port
        ),
        Some(&pki.ca),
    );
    for len in [10usize << 10, 300 << 10] {
        let body = weir_origin::pattern(0, len).to_vec();
        let r = client()
            .post(a.url(&format!("/__echo?len={len}")))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", a.stderr());
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["body_bytes"], len);
        assert_eq!(
            echo["body_fnv"],
            format!("{:016x}", weir_origin::fnv1a(&body))
        );
        let line = access_line(&pki, &format!("/__echo?len={len}"));
        assert_eq!(line["version"], "HTTP/2.0");
    }
}

/// Two upstreams reach the same server under the same SNI; only one trusts the test CA. A
/// connection the trusting one opened and pooled must not serve the other, which would
/// refuse that certificate on a handshake of its own.
#[tokio::test]
async fn pooled_connection_is_not_shared_across_tls_ca() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    let port = free_port();
    let server = format!(
        "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test}}",
        b.port
    );
    let yaml = format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  threads: 1\n  grace_period: 1s\n\
         upstreams:\n\
         \x20 private:\n    tiers: [{{name: origin, servers: [{server}]}}]\n    tls_ca: '{}'\n\
         \x20 public:\n    tiers: [{{name: origin, servers: [{server}]}}]\n\
         routes:\n\
         \x20 - {{match: {{path_prefix: /private/}}, upstream: private}}\n\
         \x20 - {{upstream: public}}\n",
        pki.ca.display()
    );
    let a = Weir::start(&yaml, port);
    assert_eq!(get(&a, "/private/x").await.0, 200, "{}", a.stderr());
    let (status, body) = get(&a, "/public/x").await;
    assert_eq!(
        status, 502,
        "`public` trusts only the system roots, yet it was served ({body}) over the \
         connection `private` verified with its own tls_ca"
    );
    assert_eq!(origin.hits("/public/x"), 0);
}

/// weir's own line for the failed attempt says why the handshake failed.
#[tokio::test]
async fn tls_failure_reason_is_logged() {
    let origin = Origin::start("o");
    let pki = pki();
    let b = weir_b(&pki, &origin);
    for (server, ca) in [
        (
            format!(
                "{{addr: '127.0.0.1:{}', tls: true, sni: wrong.test}}",
                b.port
            ),
            Some(pki.ca.as_path()),
        ),
        (
            format!(
                "{{addr: '127.0.0.1:{}', tls: true, sni: origin.test}}",
                b.port
            ),
            None,
        ),
    ] {
        let a = weir_a(&server, ca);
        assert_eq!(get(&a, "/__echo").await.0, 502);
        let needle = format!(
            "upstream o: 127.0.0.1:{} (origin) failed for /__echo",
            b.port
        );
        assert!(a.wait_log(&needle), "{}", a.stderr());
        let stderr = a.stderr();
        let line = stderr.lines().find(|l| l.contains(&needle)).unwrap();
        assert!(
            line.to_ascii_lowercase().contains("certificate"),
            "weir's line does not say what was wrong with the certificate: {line}"
        );
    }
}

#[test]
fn tls_ca_that_is_not_pem_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "this is not a certificate\n\x00\x01garbage\n").unwrap();
    let f = dir.path().join("weir.yaml");
    std::fs::write(
        &f,
        format!(
            "server: {{listen: ['127.0.0.1:8080']}}\n\
             upstreams: {{o: {{tls_ca: '{}', tiers: [{{name: a, servers: [{{addr: '127.0.0.1:8443', tls: true}}]}}]}}}}\n\
             routes: [{{upstream: o}}]\n",
            ca.display()
        ),
    )
    .unwrap();
    let (ok, out) = common::check_config(&f);
    assert!(!ok, "{out}");
    assert!(out.starts_with("upstreams.o.tls_ca:"), "{out}");
}
