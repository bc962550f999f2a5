//! The `return` route target through the real binary (status, `Location` for each variable,
//! body, content type, keep-alive, plugins before it, the access log, `match.scheme`), and
//! against the real nginx with the same `return` lines, comparing status and `Location` (and
//! the body and content type of a `return` with text). weir runs the import of nginx's own
//! configuration there (`WEIR_DIFF_CONFIG=handwritten`: the hand-written routes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{
    free_port, import_nginx, nginx_conf_with, raw_request, status_of, use_imported_config, Nginx,
    Weir,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One response: status, lower-cased header names with their values, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(raw: &str) -> Answer {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status: status_of(raw),
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `GET target` with `Host: host` (none when empty) on a new connection.
fn get(port: u16, host: &str, target: &str) -> Answer {
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    let raw = format!("GET {target} HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    Answer::parse(&raw_request(port, raw.as_bytes()))
}

const ROUTES: &str = "\
routes:
  - name: https
    match: { path_prefix: /a/ }
    return: { status: 301, location: \"https://$host$request_uri\" }
  - name: relative
    match: { path_prefix: /b/ }
    return: { status: 302, location: \"/new$uri$is_args$args\" }
  - name: parts
    match: { path_prefix: /c/ }
    return: { status: 308, location: \"$scheme://$host$uri?from=c\" }
  - name: forbidden
    match: { path_prefix: /d/ }
    return: { status: 403 }
  - name: text
    match: { path_prefix: /e/ }
    return: { status: 200, body: \"hi $host $args\" }
  - name: closed
    match: { path_prefix: /g/ }
    return: { status: 444 }
  - name: nothing
    match: { path_prefix: /h/ }
    return: { status: 204 }
";

/// Two `headers` plugins: one for every status, one as nginx's `add_header` without `always`.
const TAGS: &str = "[{ headers: { response: { set: { X-Every: '1' } } } }, \
                    { headers: { response: { set: { X-Only-Ok: '1' } }, always: false } }]";

#[test]
fn return_answers_status_location_and_body() {
    let port = free_port();
    let yaml = format!(
        "server: {{listen: ['127.0.0.1:{port}'], threads: 2}}\n{ROUTES}\
         \x20 - name: json\n    match: {{ path: /f }}\n    return: {{ status: 200, body: '{{\"ok\":true}}', content_type: application/json }}\n\
         \x20 - name: walled\n    match: {{ path_prefix: /private/ }}\n    return: {{ status: 302, location: 'https://login.test/' }}\n    plugins:\n      - access: {{ deny: ['127.0.0.0/8'] }}\n\
         \x20 - name: tagged-403\n    match: {{ path_prefix: /t403/ }}\n    return: {{ status: 403 }}\n    plugins: {TAGS}\n\
         \x20 - name: tagged\n    match: {{ path_prefix: / }}\n    return: {{ status: 307, location: 'https://$host$request_uri' }}\n    plugins: {TAGS}\n"
    );
    let weir = Weir::start(&yaml, port);

    // Each variable with nginx's meaning.
    let r = get(port, "IMG.Example.com:8080", "/a/x/../y?w=1&h=2");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        "https://img.example.com/a/x/../y?w=1&h=2"
    );
    assert_eq!(r.header("content-type"), "text/html");
    assert!(
        r.body.contains("<title>301 Moved Permanently</title>"),
        "{}",
        r.body
    );
    assert_eq!(r.header("content-length"), r.body.len().to_string());

    // A relative location is made absolute with the listener's port, as nginx does.
    let r = get(port, "img.example.com", "/b//x/%41?q=1");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        format!("http://img.example.com:{port}/new/b/x/A?q=1")
    );
    let r = get(port, "img.example.com", "/b/x?");
    assert_eq!(
        r.header("location"),
        format!("http://img.example.com:{port}/new/b/x")
    );
    let r = get(port, "h.test", "/c/%7e?x=1");
    assert_eq!(
        (r.status, r.header("location")),
        (308, "http://h.test/c/~?from=c")
    );

    // A status without a location: nginx's page, or the text given.
    let r = get(port, "h.test", "/d/");
    assert_eq!((r.status, r.header("content-type")), (403, "text/html"));
    assert!(r.body.contains("<h1>403 Forbidden</h1>"), "{}", r.body);
    assert_eq!(r.header("location"), "");
    let r = get(port, "H.test", "/e/?a=b");
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_str()),
        (200, "text/plain", "hi h.test a=b")
    );
    let r = get(port, "h.test", "/f");
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_str()),
        (200, "application/json", "{\"ok\":true}")
    );

    // 444: the connection is closed without an answer.
    assert_eq!(
        raw_request(port, b"GET /g/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        ""
    );

    // Access plugins run first; response plugins edit the answer, `always: false` ones
    // only on nginx's 2xx/3xx statuses.
    assert_eq!(get(port, "h.test", "/private/x").status, 403);
    let r = get(port, "h.test", "/z");
    assert_eq!(
        (r.status, r.header("x-every"), r.header("x-only-ok")),
        (307, "1", "1")
    );
    let r = get(port, "h.test", "/t403/");
    assert_eq!(
        (r.status, r.header("x-every"), r.header("x-only-ok")),
        (403, "1", "")
    );

    // HEAD: the head only.
    let raw = raw_request(
        port,
        b"HEAD /a/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let r = Answer::parse(&raw);
    assert_eq!(
        (r.status, r.header("location"), r.body.as_str()),
        (301, "https://h/a/", "")
    );

    // Keep-alive is kept: two answers on one connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /d/ HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 403);
    s.write_all(b"GET /e/ HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let n = s.read(&mut buf).unwrap();
    let second = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status_of(&second), 200, "{second}");

    // The access log records the status.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(weir.stdout().contains("\"GET /c/%7e?x=1 HTTP/1.1\" 308 ")
        && weir.stdout().contains("\"GET /g/ HTTP/1.1\" 444 "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "access log:\n{}",
            weir.stdout()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(request, host)` pairs sent to both.
const CASES: &[(&str, &str)] = &[
    ("/a/x?y=1", "img.example.com"),
    ("/a/x/../y?w=1", "IMG.Example.COM:8080"),
    ("/a/%7euser", "img.example.com."),
    ("/b/x", "img.example.com"),
    ("/b//x/%41?q=1&r", "Img.example.com:99"),
    ("/b/x?", "img.example.com"),
    ("/c/%7e?x=1", "h.test"),
    ("/c/./d", "h.test"),
    ("/d/", "h.test"),
    ("/e/?a=b", "H.Test"),
    ("/other", "h.test"),
    ("/g/x", "h.test"),
    ("/h/", "h.test"),
];

/// nginx sends a decoded `$uri` raw in `Location`; weir percent-encodes what a URL may not
/// hold raw (a decoded `%0d%0a` would otherwise split the header).
const DELIBERATE: &[(&str, &str, &str)] = &[("/b/a%20b", "/new/b/a b", "/new/b/a%20b")];

#[test]
fn return_matches_nginx() {
    let server = "\
        location /a/ { return 301 https://$host$request_uri; }\n\
        location /b/ { return 302 /new$uri$is_args$args; }\n\
        location /c/ { return 308 $scheme://$host$uri?from=c; }\n\
        location /d/ { return 403; }\n\
        location /e/ { return 200 \"hi $host $args\"; }\n\
        location /g/ { return 444; }\n\
        location /h/ { return 204; }\n";
    let nginx = Nginx::start_with("", server, "return 404;");
    let port = free_port();
    // weir runs `weir import nginx` of nginx's own configuration (the default), or the
    // hand-written ROUTES.
    let yaml = if use_imported_config() {
        let dir = tempfile::tempdir().unwrap();
        let conf = nginx_conf_with("", server, "return 404;", port, dir.path());
        import_nginx(&conf, dir.path())
    } else {
        format!(
            "server: {{listen: ['127.0.0.1:{port}'], threads: 2}}\n{ROUTES}\
             \x20 - {{name: rest, return: {{status: 404}}}}\n"
        )
    };
    let weir = Weir::start(&yaml, port);
    // The absolute form of a relative location carries each one's own port.
    let same = |s: &str, p: u16| s.replace(&format!(":{p}/"), ":PORT/");
    for (target, host) in CASES {
        let (n, w) = (get(nginx.port, host, target), get(weir.port, host, target));
        let what = format!("{host} {target}");
        assert_eq!(n.status, w.status, "{what}");
        assert_eq!(
            same(n.header("location"), nginx.port),
            same(w.header("location"), weir.port),
            "{what}"
        );
        if n.status == 200 {
            assert_eq!(
                (n.header("content-type"), n.body.as_str()),
                (w.header("content-type"), w.body.as_str()),
                "{what}"
            );
        }
        if n.status >= 300 {
            assert_eq!(n.header("content-type"), w.header("content-type"), "{what}");
        }
        if n.status == 204 {
            // No body, so no Content-Length, Transfer-Encoding or Content-Type either.
            for h in ["content-length", "transfer-encoding", "content-type"] {
                assert_eq!((n.header(h), w.header(h)), ("", ""), "{what}: {h}");
            }
        }
    }
    for (target, nginx_says, weir_says) in DELIBERATE {
        let (n, w) = (get(nginx.port, "h", target), get(weir.port, "h", target));
        assert_eq!(
            n.header("location"),
            format!("http://h:{}{nginx_says}", nginx.port)
        );
        assert_eq!(
            w.header("location"),
            format!("http://h:{}{weir_says}", weir.port)
        );
    }
}

/// A self-signed certificate for `localhost` in a temporary directory (kept while the
/// returned guard lives): the directory, the cert and key files, and a client that trusts it
/// and does not follow redirects.
fn self_signed_localhost() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    reqwest::Client,
) {
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let root = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (certs, cert, key, client)
}

/// nginx's `listen 80` server that only redirects, beside the TLS server that proxies:
/// `match.scheme` tells the two apart on one host.
#[tokio::test]
async fn http_to_https_by_scheme() {
    let origin = common::Origin::start("o");
    let (_certs, cert, key, client) = self_signed_localhost();
    let (plain, tls) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen:\n    - '127.0.0.1:{plain}'\n\
         \x20   - {{addr: '127.0.0.1:{tls}', tls: {{cert: '{}', key: '{}'}}}}\n\
         upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
         routes:\n\
         \x20 - {{match: {{host: localhost, scheme: http}}, return: {{status: 301, location: 'https://$host$request_uri'}}}}\n\
         \x20 - {{match: {{host: localhost, scheme: https}}, upstream: o}}\n",
        cert.display(),
        key.display(),
        origin.addr()
    );
    let _weir = Weir::start(&yaml, plain);
    common::wait_listening(("127.0.0.1", tls));
    let r = get(plain, "localhost:1", "/x?y=1");
    assert_eq!(
        (r.status, r.header("location")),
        (301, "https://localhost/x?y=1")
    );
    // A plain request for another host matches neither route.
    assert_eq!(get(plain, "other", "/x").status, 404);
    let r = client
        .get(format!("https://localhost:{tls}/__echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
}

/// The usual pair in nginx: a plain server that sends everything to https and the TLS
/// server with the same name that proxies. weir runs the import of the very file (with its
/// own ports) and must answer as nginx does on both listeners.
#[tokio::test]
async fn imported_http_to_https_pair_matches_nginx() {
    let origin = common::Origin::start("o");
    let (_certs, cert, key, client) = self_signed_localhost();
    // The TLS server goes in `http`; the helper's own server is the plain one.
    let tls_server = |port: u16| {
        format!(
            "server {{\n listen 127.0.0.1:{port} ssl;\n server_name localhost;\n\
             ssl_certificate {};\n ssl_certificate_key {};\n\
             location / {{ proxy_pass http://{}; proxy_set_header Host $host; }}\n}}\n",
            cert.display(),
            key.display(),
            origin.addr()
        )
    };
    let plain_server = "server_name localhost;\nreturn 301 https://$host$request_uri;";
    let nginx_tls = free_port();
    let nginx = Nginx::start_with(&tls_server(nginx_tls), plain_server, "return 404;");
    common::wait_listening(("127.0.0.1", nginx_tls));
    let (weir_plain, weir_tls) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf_with(
        &tls_server(weir_tls),
        plain_server,
        "return 404;",
        weir_plain,
        dir.path(),
    );
    let yaml = import_nginx(&conf, dir.path());
    assert!(yaml.contains("scheme: http"), "{yaml}");
    let weir = Weir::start(&yaml, weir_plain);
    common::wait_listening(("127.0.0.1", weir_tls));

    for (target, host) in [
        ("/x?y=1", "localhost"),
        ("/a/b", "LOCALHOST:80"),
        ("/", "other.test"),
    ] {
        let (n, w) = (get(nginx.port, host, target), get(weir.port, host, target));
        let what = format!("http {host} {target}");
        assert_eq!(
            (n.status, n.header("location")),
            (w.status, w.header("location")),
            "{what}"
        );
        assert_eq!(n.status, 301, "{what}");
    }
    for path in ["/__echo", "/img/a.jpg?w=1"] {
        let mut answers = Vec::new();
        for port in [nginx_tls, weir_tls] {
            let r = client
                .get(format!("https://localhost:{port}{path}"))
                .send()
                .await
                .unwrap();
            let from = r
                .headers()
                .get("x-origin")
                .map(|v| v.to_str().unwrap().to_string());
            answers.push((r.status().as_u16(), from));
        }
        assert_eq!(answers[0], answers[1], "https {path}");
        assert_eq!(answers[0].0, 200, "https {path}");
    }
    assert_eq!(origin.hits("/img/a.jpg"), 2);
}
