//! The admin API (SPEC §8) through the real binary, on real sockets: every endpoint, the
//! token on every mutating call, JSON errors, `/metrics` read with a Prometheus text parser,
//! `/traffic` and registrations across a reload and a restart, registered servers taking
//! traffic until their TTL, redirect mode to a registered node, and admin paths on a proxy
//! listener being proxied like any other path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, wait_listening, Origin, Weir};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "adm1n-t0ken";

/// A weir with an admin listener and a client for both sides.
struct Node {
    weir: Weir,
    admin: u16,
    client: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
    }

    /// `X-Origin` of a proxied response.
    fn origin(&self) -> String {
        self.header("x-origin")
    }

    /// `X-Cache-Status` of a proxied response.
    fn cache(&self) -> String {
        self.header("x-cache-status")
    }
}

/// The YAML of a weir listening on `port` with the admin API on `admin`; `rest` holds the
/// other top-level sections.
fn config(port: u16, admin: u16, state_dir: Option<&Path>, rest: &str) -> String {
    let state = state_dir.map_or(String::new(), |d| format!("  state_dir: {}\n", d.display()));
    format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n{state}\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: \"{TOKEN}\" }}\n{rest}"
    )
}

/// `upstreams: o` with `tiers` (a list of `(name, [addr…])`), plus `extra` keys (indent 4).
fn upstream(tiers: &[(&str, Vec<String>)], extra: &str) -> String {
    let mut s = "upstreams:\n  o:\n    tiers:\n".to_string();
    for (name, servers) in tiers {
        let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
        s += &format!(
            "      - {{ name: {name}, servers: [{}] }}\n",
            servers.join(", ")
        );
    }
    s + extra
}

/// An address where nothing listens: a socket bound there and never listening, so that
/// connections are refused and no other test can take the port while it is kept.
fn dead() -> (String, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (format!("127.0.0.1:{port}"), s)
}

impl Node {
    fn start(rest: &str) -> Node {
        Node::start_in(None, rest)
    }

    /// With `server.state_dir` set to `state_dir` when given (else the harness's own).
    fn start_in(state_dir: Option<&Path>, rest: &str) -> Node {
        let (port, admin) = (free_port(), free_port());
        let weir = Weir::start(&config(port, admin, state_dir, rest), port);
        wait_listening(("127.0.0.1", admin));
        Node {
            weir,
            admin,
            client: common::client(),
        }
    }

    /// Rewrites the config file with `rest` (same ports, same state_dir line).
    fn rewrite(&self, state_dir: Option<&Path>, rest: &str) {
        let yaml = config(self.weir.port, self.admin, state_dir, rest);
        let yaml = common::with_state_dir(&yaml, &self.weir.dir.path().join("state"));
        std::fs::write(self.weir.config_path(), yaml).unwrap();
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    /// An admin call; `auth` is the whole `Authorization` value.
    async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> Resp {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        let mut req = self.client.request(method.parse().unwrap(), url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.send(req).await
    }

    /// A mutating admin call with the right token.
    async fn authed(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call(method, path, Some(&format!("Bearer {TOKEN}")), body)
            .await
    }

    /// `GET path` on the admin listener, JSON, 200.
    async fn json(&self, path: &str) -> Value {
        let r = self.call("GET", path, None, None).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert!(
            r.header("content-type").starts_with("application/json"),
            "{r:?}"
        );
        r.json()
    }

    /// Registers `addr` in `tier` of upstream `o`; returns the SERVER answered.
    async fn register(&self, tier: &str, addr: &str, ttl: &str) -> Value {
        let body = json!({ "tier": tier, "addr": addr, "ttl": ttl }).to_string();
        let r = self
            .authed("POST", "/upstreams/o/servers", Some(&body))
            .await;
        assert_eq!(r.status, 200, "register {addr}: {}", r.body);
        r.json()
    }

    /// `GET /upstreams/o`, by address.
    async fn servers(&self) -> Vec<Value> {
        self.json("/upstreams/o")
            .await
            .as_array()
            .unwrap_or_else(|| panic!("not an array"))
            .clone()
    }

    async fn server(&self, addr: &str) -> Option<Value> {
        self.servers().await.into_iter().find(|s| s["addr"] == addr)
    }

    /// A request through the proxy listener.
    async fn proxy(&self, method: &str, path: &str) -> Resp {
        let req = self
            .client
            .request(method.parse().unwrap(), self.weir.url(path));
        self.send(req).await
    }

    /// `/metrics`, parsed as Prometheus text.
    async fn scrape(&self) -> Scrape {
        let r = self.call("GET", "/metrics", None, None).await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").starts_with("text/plain"), "{r:?}");
        let lines = r.body.lines().map(|l| Ok(l.to_string()));
        Scrape::parse(lines).expect("Prometheus text")
    }

    /// `/status` once it counts `requests` (a request is counted when it is logged, just
    /// after its response went out; waits up to 5 s).
    async fn status_after(&self, requests: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.json("/status").await;
            if s["requests"].as_u64().unwrap() >= requests || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Today's `/traffic` entry once it counts `requests` (waits up to 5 s).
    async fn today_after(&self, requests: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let t = self.today().await;
            if t["requests"].as_u64().unwrap() >= requests || Instant::now() > deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/metrics` once `weir_requests_total` adds up to `requests` (waits up to 5 s).
    async fn scrape_after(&self, requests: f64) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.scrape().await;
            if metric(&m, "weir_requests_total", &[]) >= requests || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Today's `/traffic` entry.
    async fn today(&self) -> Value {
        let t = self.json("/traffic").await;
        let days = t["days"].as_array().unwrap().clone();
        let last = days.last().cloned().unwrap_or(Value::Null);
        assert_eq!(last["date"], today(), "{t}");
        last
    }
}

/// The value of the sample `name` whose labels include `labels` (summed over the others);
/// a histogram counts its `+Inf` bucket. 0 when absent (a counter never incremented).
fn metric(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(h) => h
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Metric::Summary(_) => 0.0,
        })
        .sum()
}

/// Is there a sample `name` with exactly these labels?
fn has_sample(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    s.samples.iter().any(|x| {
        x.metric == name
            && x.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
    })
}

/// `YYYY-MM-DD` of today, UTC.
fn today() -> String {
    date_of(day_number())
}

/// Days since 1970-01-01, UTC, now.
fn day_number() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
}

/// `YYYY-MM-DD` of a day number (civil from days, proleptic Gregorian).
fn date_of(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-29T23:52:05Z` (optionally with fractions or a `+HH:MM` offset).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4)
            && digits(5..7)
            && digits(8..10)
            && digits(11..13)
            && digits(14..16)
            && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':')
}

/// Checks one `SERVER` object of the contract; returns its address.
fn check_server(s: &Value) -> String {
    let keys: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "addr",
        "tier",
        "state",
        "registered",
        "expires_in_s",
        "last_change",
        "reason",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want, "{s}");
    assert!(s["addr"].is_string() && s["tier"].is_string(), "{s}");
    assert!(s["state"] == "up" || s["state"] == "down", "{s}");
    let registered = s["registered"].as_bool().unwrap();
    assert_eq!(s["expires_in_s"].is_u64(), registered, "{s}");
    assert!(registered || s["expires_in_s"].is_null(), "{s}");
    if let Some(t) = s["last_change"].as_str() {
        assert!(is_rfc3339(t), "{s}");
        assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
    }
    s["addr"].as_str().unwrap().to_string()
}

/// A 4xx `{"error": "…"}` with exactly that key.
fn assert_error(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert!(
        r.header("content-type").starts_with("application/json"),
        "{what}: {r:?}"
    );
    let v = r.json();
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
    assert_eq!(obj.len(), 1, "{what}: {v}");
    assert!(
        obj["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
}

/// Polls `cond` every 50 ms for up to `limit`.
async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cache zone `c` under `dir`, with a memory tier: purges, cleans and reloads must reach the
/// copies in memory too.
fn cache_zone(dir: &Path) -> String {
    format!(
        "caches:\n  c: {{ path: {}, valid: {{ \"200\": 10m }}, memory: 1MiB }}\n",
        dir.display()
    )
}

/// Routes: `/c/` cached in zone `c`, anything else proxied, both to upstream `o`.
const CACHED_AND_PLAIN: &str = "routes:\n\
     \x20 - { name: cached, match: { path_prefix: /c/ }, upstream: o, plugins: [{ cache: { zone: c } }] }\n\
     \x20 - { name: plain, upstream: o }\n";

#[tokio::test]
async fn read_endpoints_answer_with_every_contract_field() {
    let a = Origin::start("a");
    let (d, _d_port) = dead();
    let cache = tempfile::tempdir().unwrap();
    let rest = format!(
        "{}{}{CACHED_AND_PLAIN}",
        cache_zone(cache.path()),
        upstream(
            &[
                ("nodes", vec![]),
                ("edge", vec![d.clone()]),
                ("origin", vec![a.addr().to_string()])
            ],
            "    fail_timeout: 60s\n"
        )
    );
    let n = Node::start(&rest);

    // healthz, also as HEAD.
    let h = n.call("GET", "/healthz", None, None).await;
    assert_eq!((h.status, h.body.trim()), (200, "ok"));
    assert!(h.header("content-type").starts_with("text/plain"), "{h:?}");
    let h = n.call("HEAD", "/healthz", None, None).await;
    assert_eq!((h.status, h.body.as_str()), (200, ""));

    let before = n.json("/status").await;
    assert_eq!(before["requests"], 0, "{before}");

    // Three requests: one failing over from the dead edge server, a miss and a hit.
    let p = n.proxy("GET", "/p/1").await;
    assert_eq!((p.status, p.origin().as_str()), (200, "a"), "{p:?}");
    let miss = n.proxy("GET", "/c/a").await;
    assert_eq!((miss.status, miss.cache().as_str()), (200, "MISS"));
    let hit = n.proxy("GET", "/c/a").await;
    assert_eq!((hit.status, hit.cache().as_str()), (200, "HIT"));
    assert_eq!(miss.body, hit.body);
    let to_clients = (p.body.len() + miss.body.len() + hit.body.len()) as u64;
    let from_upstreams = (p.body.len() + miss.body.len()) as u64;

    let s = n.status_after(3).await;
    let keys: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "version",
        "uptime_s",
        "requests",
        "bytes_to_clients",
        "bytes_from_upstreams",
        "caches",
        "upstreams",
    ] {
        assert!(keys.contains(k), "{k} missing: {s}");
    }
    // `version` is what `weir --version` prints (`weir X.Y.Z`).
    let out = std::process::Command::new(common::weir_bin())
        .arg("--version")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = s["version"].as_str().unwrap();
    assert!(
        !version.is_empty() && printed.split_whitespace().last() == Some(version),
        "--version printed {printed:?}, /status says {version:?}"
    );
    assert!(s["uptime_s"].is_u64(), "{s}");
    assert_eq!(s["requests"], 3, "{s}");
    assert_eq!(s["bytes_to_clients"], to_clients, "{s}");
    assert_eq!(s["bytes_from_upstreams"], from_upstreams, "{s}");
    let c = &s["caches"]["c"];
    assert_eq!(c["objects"], 1, "{s}");
    assert!(c["bytes"].as_u64().unwrap() >= hit.body.len() as u64, "{s}");
    assert_eq!(c["hit_ratio"].as_f64(), Some(0.5), "{s}");
    assert_eq!(c["origin_bytes_saved"], hit.body.len() as u64, "{s}");
    // The HIT was read from the file and is now in the memory tier too.
    let (mem, len) = (c["memory_bytes"].as_u64().unwrap(), hit.body.len() as u64);
    assert!((len..len + 4096).contains(&mem), "{s}");
    assert_eq!(s["caches"].as_object().unwrap().len(), 1, "{s}");

    let servers = s["upstreams"]["o"].as_array().unwrap();
    let addrs: Vec<String> = servers.iter().map(check_server).collect();
    assert_eq!(addrs, [d.clone(), a.addr().to_string()], "{s}");
    let (dead_s, live) = (&servers[0], &servers[1]);
    assert_eq!(
        (&dead_s["tier"], &dead_s["state"], &dead_s["registered"]),
        (&json!("edge"), &json!("down"), &json!(false)),
        "{s}"
    );
    let change = dead_s["last_change"].as_str().unwrap();
    assert!(change.starts_with(&today()), "{s}");
    assert!(
        dead_s["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{s}"
    );
    assert_eq!(
        (&live["tier"], &live["state"], &live["registered"]),
        (&json!("origin"), &json!("up"), &json!(false)),
        "{s}"
    );

    // /upstreams/{name}: the same list.
    assert_eq!(&n.json("/upstreams/o").await, &s["upstreams"]["o"]);

    // /traffic: UTC days, oldest first, today last.
    n.today_after(3).await;
    let t = n.json("/traffic").await;
    let days = t["days"].as_array().unwrap();
    assert!((1..=14).contains(&days.len()), "{t}");
    for day in days {
        let keys: BTreeSet<&str> = day
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "date",
                "requests",
                "bytes_to_clients",
                "bytes_from_upstreams",
                "cache_hits"
            ]
            .into_iter()
            .collect(),
            "{t}"
        );
    }
    assert!(days
        .windows(2)
        .all(|w| w[0]["date"].as_str() < w[1]["date"].as_str()));
    let last = days.last().unwrap();
    assert_eq!(last["date"], today(), "{t}");
    assert_eq!(last["requests"], 3, "{t}");
    assert_eq!(last["bytes_to_clients"], to_clients, "{t}");
    assert_eq!(last["bytes_from_upstreams"], from_upstreams, "{t}");
    assert_eq!(last["cache_hits"], 1, "{t}");

    // /metrics: Prometheus text with the build info.
    let m = n.scrape().await;
    assert!(
        has_sample(&m, "weir_build_info", &[("version", version)]),
        "{:?}",
        m.samples
    );
    assert_eq!(metric(&m, "weir_build_info", &[("version", version)]), 1.0);
    let head = n.call("HEAD", "/metrics", None, None).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    // Unknown upstream on a read: 404 JSON.
    assert_error(
        &n.call("GET", "/upstreams/nope", None, None).await,
        404,
        "GET unknown upstream",
    );
}

#[tokio::test]
async fn metrics_move_by_exactly_the_requests_made() {
    let a = Origin::start("a");
    let (d, _d_port) = dead();
    let cache = tempfile::tempdir().unwrap();
    let rest = format!(
        "limits:\n  per: {{ key: client_ip, rate: 1r/m }}\n{}{}routes:\n\
         \x20 - {{ name: limited, match: {{ path_prefix: /l/ }}, upstream: o, plugins: [{{ limit_req: {{ zone: per, nodelay: true, status: 429 }} }}] }}\n\
         \x20 - {{ name: cached, match: {{ path_prefix: /c/ }}, upstream: o, plugins: [{{ cache: {{ zone: c }} }}] }}\n\
         \x20 - {{ name: plain, upstream: o }}\n",
        cache_zone(cache.path()),
        upstream(
            &[("edge", vec![d.clone()]), ("origin", vec![a.addr().to_string()])],
            "    max_fails: 1\n    fail_timeout: 60s\n"
        )
    );
    let n = Node::start(&rest);
    let live = a.addr().to_string();
    let m0 = n.scrape().await;
    assert!(
        has_sample(
            &m0,
            "weir_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        "{:?}",
        m0.samples
    );

    // The first request tries the dead edge server, then the origin.
    let mut sent_bytes = 0u64;
    let first = n.proxy("GET", "/p/0").await;
    assert_eq!((first.status, first.origin().as_str()), (200, "a"));
    sent_bytes += first.body.len() as u64;
    let m1 = n
        .scrape_after(metric(&m0, "weir_requests_total", &[]) + 1.0)
        .await;
    let attempts = |m: &Scrape, server: &str| {
        metric(
            m,
            "weir_upstream_attempts_total",
            &[("upstream", "o"), ("server", server)],
        )
    };
    let failures = |m: &Scrape, server: &str| {
        metric(
            m,
            "weir_upstream_failures_total",
            &[("upstream", "o"), ("server", server)],
        )
    };
    assert_eq!(attempts(&m1, &d) - attempts(&m0, &d), 1.0);
    assert_eq!(attempts(&m1, &live) - attempts(&m0, &live), 1.0);
    assert_eq!(failures(&m1, &d) - failures(&m0, &d), 1.0);
    assert_eq!(
        metric(
            &m1,
            "weir_upstream_failures_total",
            &[
                ("upstream", "o"),
                ("server", &d),
                ("reason", "connection refused")
            ]
        ),
        1.0,
        "{:?}",
        m1.samples
    );
    assert_eq!(failures(&m1, &live), 0.0);
    assert!(
        has_sample(
            &m1,
            "weir_upstream_server_up",
            &[("upstream", "o"), ("tier", "edge"), ("server", &d)]
        ),
        "{:?}",
        m1.samples
    );
    assert_eq!(
        metric(
            &m1,
            "weir_upstream_server_up",
            &[("upstream", "o"), ("tier", "edge"), ("server", &d)]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &m1,
            "weir_upstream_server_up",
            &[("upstream", "o"), ("tier", "origin"), ("server", &live)]
        ),
        1.0
    );

    // N more plain requests: the dead server is down now and not tried again.
    const N: u64 = 7;
    for i in 1..=N {
        let r = n.proxy("GET", &format!("/p/{i}")).await;
        assert_eq!((r.status, r.origin().as_str()), (200, "a"));
        sent_bytes += r.body.len() as u64;
    }
    // One miss and two hits on the cached route.
    let mut cache_statuses = Vec::new();
    for _ in 0..3 {
        let r = n.proxy("GET", "/c/obj").await;
        assert_eq!(r.status, 200);
        sent_bytes += r.body.len() as u64;
        cache_statuses.push(r.cache());
    }
    assert_eq!(cache_statuses, ["MISS", "HIT", "HIT"]);
    // 1r/m with no burst: one passes, three are rejected with 429.
    let mut limited = Vec::new();
    for _ in 0..4 {
        let r = n.proxy("GET", "/l/x").await;
        sent_bytes += r.body.len() as u64;
        limited.push(r.status);
    }
    assert_eq!(limited, [200, 429, 429, 429]);

    let m2 = n
        .scrape_after(metric(&m0, "weir_requests_total", &[]) + (N + 1 + 3 + 4) as f64)
        .await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| metric(&m2, name, labels) - metric(&m0, name, labels);
    let req = "weir_requests_total";
    assert_eq!(
        delta(req, &[("route", "plain"), ("status", "200")]),
        (N + 1) as f64
    );
    assert_eq!(delta(req, &[("route", "cached"), ("status", "200")]), 3.0);
    assert_eq!(delta(req, &[("route", "limited"), ("status", "200")]), 1.0);
    assert_eq!(delta(req, &[("route", "limited"), ("status", "429")]), 3.0);
    assert_eq!(delta(req, &[]), (N + 1 + 3 + 4) as f64, "{:?}", m2.samples);
    let cache = "weir_cache_requests_total";
    assert_eq!(delta(cache, &[("zone", "c"), ("status", "MISS")]), 1.0);
    assert_eq!(delta(cache, &[("zone", "c"), ("status", "HIT")]), 2.0);
    assert_eq!(delta(cache, &[("zone", "c")]), 3.0);
    let limit = "weir_limit_req_total";
    assert_eq!(delta(limit, &[("zone", "per"), ("result", "passed")]), 1.0);
    assert_eq!(
        delta(limit, &[("zone", "per"), ("result", "rejected")]),
        3.0
    );
    // The histogram: its +Inf bucket and its _count both moved by the requests of a route.
    let hist = "weir_request_duration_seconds";
    assert!(
        m2.samples
            .iter()
            .any(|s| s.metric == hist && matches!(s.value, Metric::Histogram(_))),
        "{:?}",
        m2.samples
    );
    assert_eq!(delta(hist, &[("route", "plain")]), (N + 1) as f64);
    assert_eq!(
        delta(&format!("{hist}_count"), &[("route", "plain")]),
        (N + 1) as f64
    );
    assert_eq!(
        delta(&format!("{hist}_count"), &[("route", "limited")]),
        4.0
    );
    assert!(delta(&format!("{hist}_sum"), &[("route", "plain")]) > 0.0);
    // Upstream attempts: the dead server once only; the origin for every proxied request
    // that was not a hit or rejected.
    assert_eq!(attempts(&m2, &d) - attempts(&m0, &d), 1.0);
    assert_eq!(
        attempts(&m2, &live) - attempts(&m0, &live),
        (N + 1 + 1 + 1) as f64
    );
    assert_eq!(delta("weir_bytes_sent_total", &[]), sent_bytes as f64);
    assert_eq!(delta("weir_bytes_received_total", &[]), 0.0);
}

#[tokio::test]
async fn a_registered_server_takes_traffic_until_it_is_deleted() {
    let (configured, node) = (Origin::start("configured"), Origin::start("node"));
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[
                ("nodes", vec![]),
                ("origin", vec![configured.addr().to_string()])
            ],
            ""
        )
    );
    let n = Node::start(&rest);
    assert_eq!(n.proxy("GET", "/x").await.origin(), "configured");
    let addr = node.addr().to_string();

    let s = n.register("nodes", &addr, "10m").await;
    check_server(&s);
    assert_eq!(
        (&s["addr"], &s["tier"], &s["registered"], &s["state"]),
        (&json!(addr), &json!("nodes"), &json!(true), &json!("up")),
        "{s}"
    );
    let left = s["expires_in_s"].as_u64().unwrap();
    assert!((598..=600).contains(&left), "{s}");
    for i in 0..4 {
        let r = n.proxy("GET", &format!("/y{i}")).await;
        assert_eq!((r.status, r.origin().as_str()), (200, "node"), "{r:?}");
    }
    assert_eq!(configured.hits("/y0"), 0);
    let listed = n.server(&addr).await.expect("listed");
    assert_eq!(listed["registered"], true);
    assert_eq!(check_server(&listed), addr);
    let status = n.json("/status").await;
    assert!(
        status["upstreams"]["o"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["addr"] == addr.as_str() && s["registered"] == true),
        "{status}"
    );

    // The same POST again renews (a heartbeat): still one entry, a new TTL.
    // In /metrics under its own tier.
    let up = [
        ("upstream", "o"),
        ("tier", "nodes"),
        ("server", addr.as_str()),
    ];
    let m = n.scrape().await;
    assert!(
        has_sample(&m, "weir_upstream_server_up", &up),
        "{:?}",
        m.samples
    );
    assert_eq!(metric(&m, "weir_upstream_server_up", &up), 1.0);

    let renewed = n.register("nodes", &addr, "20m").await;
    assert!(
        renewed["expires_in_s"].as_u64().unwrap() > 1000,
        "{renewed}"
    );
    let same: Vec<Value> = n
        .servers()
        .await
        .into_iter()
        .filter(|s| s["addr"] == addr.as_str())
        .collect();
    assert_eq!(same.len(), 1, "{same:?}");

    // DELETE with the address percent-encoded: 204, then 404.
    let path = format!("/upstreams/o/servers/{}", addr.replace(':', "%3A"));
    let del = n.authed("DELETE", &path, None).await;
    assert_eq!((del.status, del.body.as_str()), (204, ""), "{del:?}");
    assert!(n.server(&addr).await.is_none());
    let m = n.scrape().await;
    assert!(
        !has_sample(&m, "weir_upstream_server_up", &up),
        "{:?}",
        m.samples
    );
    assert_error(&n.authed("DELETE", &path, None).await, 404, "DELETE again");
    // A configured server cannot be deleted.
    let configured_path = format!(
        "/upstreams/o/servers/{}",
        configured.addr().to_string().replace(':', "%3a")
    );
    assert_error(
        &n.authed("DELETE", &configured_path, None).await,
        404,
        "DELETE a configured server",
    );
    assert!(n.server(&configured.addr().to_string()).await.is_some());
    let r = n.proxy("GET", "/z").await;
    assert_eq!((r.status, r.origin().as_str()), (200, "configured"));
}

#[tokio::test]
async fn a_tier_of_registered_servers_only_answers_502_when_empty() {
    let node = Origin::start("node");
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(&[("nodes", vec![])], "")
    );
    let n = Node::start(&rest);
    assert_eq!(n.proxy("GET", "/a").await.status, 502);
    n.register("nodes", &node.addr().to_string(), "1m").await;
    let r = n.proxy("GET", "/b").await;
    assert_eq!((r.status, r.origin().as_str()), (200, "node"));
    // A lower-case percent-encoding works as well.
    let path = format!(
        "/upstreams/o/servers/{}",
        node.addr().to_string().replace(':', "%3a")
    );
    assert_eq!(n.authed("DELETE", &path, None).await.status, 204);
    assert_eq!(n.proxy("GET", "/c").await.status, 502);
    assert_eq!(node.hits("/b"), 1);
    assert_eq!(node.hits("/c"), 0);
}

#[tokio::test]
async fn a_registration_expires_after_its_ttl() {
    let (configured, node) = (Origin::start("configured"), Origin::start("node"));
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[
                ("nodes", vec![]),
                ("origin", vec![configured.addr().to_string()])
            ],
            ""
        )
    );
    let n = Node::start(&rest);
    let addr = node.addr().to_string();
    let registered_at = Instant::now();
    let s = n.register("nodes", &addr, "2s").await;
    assert!(s["expires_in_s"].as_u64().unwrap() <= 2, "{s}");
    let r = n.proxy("GET", "/before").await;
    assert_eq!(r.origin(), "node");

    // Gone within a bounded time after the TTL, with a log line.
    let (node_ref, addr_ref) = (&n, addr.as_str());
    let gone = eventually(Duration::from_secs(8), move || async move {
        node_ref.server(addr_ref).await.is_none()
    })
    .await;
    assert!(gone, "{:?}", n.servers().await);
    assert!(registered_at.elapsed() >= Duration::from_millis(1500));
    assert!(
        n.weir
            .wait_log(&format!("{addr} (nodes) registration expired")),
        "{}",
        n.weir.stderr()
    );
    for i in 0..3 {
        let r = n.proxy("GET", &format!("/after{i}")).await;
        assert_eq!((r.status, r.origin().as_str()), (200, "configured"));
    }
    assert_eq!(node.hits("/after0"), 0);
}

#[tokio::test]
async fn registrations_and_traffic_survive_a_reload_and_a_restart() {
    let (configured, node) = (Origin::start("configured"), Origin::start("node"));
    let state = tempfile::tempdir().unwrap();
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[
                ("nodes", vec![]),
                ("origin", vec![configured.addr().to_string()])
            ],
            ""
        )
    );
    let mut first = Node::start_in(Some(state.path()), &rest);
    let addr = node.addr().to_string();
    let registered_at = Instant::now();
    first.register("nodes", &addr, "10m").await;
    // Another one with a TTL that runs out while weir is stopped.
    let (short, _short_port) = dead();
    first.register("nodes", &short, "2s").await;
    // And one deleted before the stop.
    let deleted = "127.0.0.1:7";
    first.register("nodes", deleted, "10m").await;
    let path = "/upstreams/o/servers/127.0.0.1%3A7";
    assert_eq!(first.authed("DELETE", path, None).await.status, 204);

    const N: u64 = 6;
    for i in 0..N {
        assert_eq!(first.proxy("GET", &format!("/r{i}")).await.status, 200);
    }
    let before = first.today_after(N).await;
    assert_eq!(before["requests"], N, "{before}");

    // A reload keeps the registration (and it keeps taking traffic).
    let r = first.authed("POST", "/reload", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    let kept = first.server(&addr).await.expect("kept across the reload");
    assert_eq!(kept["registered"], true);
    assert_eq!(first.proxy("GET", "/after-reload").await.origin(), "node");
    // SIGHUP too.
    assert_eq!(first.weir.stderr().matches("reload done").count(), 1);
    first.weir.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.weir.stderr().matches("reload done").count() < 2 {
        assert!(Instant::now() < deadline, "{}", first.weir.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first.server(&addr).await.is_some());
    let before = first.today_after(N + 1).await;
    assert_eq!(before["requests"], N + 1, "{before}");

    // Graceful stop: the state file is written.
    first.weir.signal("TERM");
    let exit = first.weir.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
    let saved = std::fs::read_to_string(state.path().join("state.json")).unwrap();
    assert!(saved.contains(&addr), "{saved}");

    // Past the short TTL, a new weir on the same state_dir.
    let wait = Duration::from_millis(2500).saturating_sub(registered_at.elapsed());
    tokio::time::sleep(wait).await;
    let second = Node::start_in(Some(state.path()), &rest);
    let after = second.today().await;
    assert!(
        after["requests"].as_u64().unwrap() >= before["requests"].as_u64().unwrap(),
        "before {before}, after {after}"
    );
    assert!(
        after["bytes_to_clients"].as_u64().unwrap() >= before["bytes_to_clients"].as_u64().unwrap()
    );
    // A restart's /status counts from its own start.
    assert_eq!(second.json("/status").await["requests"], 0);

    let restored = second
        .server(&addr)
        .await
        .expect("restored after a restart");
    check_server(&restored);
    assert_eq!(
        (&restored["tier"], &restored["registered"]),
        (&json!("nodes"), &json!(true))
    );
    // The TTL keeps running: not renewed to the full 10 minutes.
    let left = restored["expires_in_s"].as_u64().unwrap();
    let elapsed = registered_at.elapsed().as_secs();
    assert!(
        left <= 600 - elapsed && left + 10 >= 600 - elapsed,
        "{restored}"
    );
    let (node_ref, short_ref) = (&second, short.as_str());
    let gone = eventually(Duration::from_secs(3), move || async move {
        node_ref.server(short_ref).await.is_none()
    })
    .await;
    assert!(
        gone,
        "the expired registration is not restored: {:?}",
        second.servers().await
    );
    assert!(second.server(deleted).await.is_none());
    let r = second.proxy("GET", "/after-restart").await;
    assert_eq!((r.status, r.origin().as_str()), (200, "node"));
}

#[tokio::test]
async fn traffic_keeps_fourteen_utc_days_oldest_first_across_a_restart() {
    let a = Origin::start("a");
    let state = tempfile::tempdir().unwrap();
    // A state file with the 20 days before today, and today's totals so far.
    let now = day_number();
    let mut days: Vec<Value> = (1..=20u64)
        .rev()
        .map(|i| {
            json!({"date": date_of(now - i), "requests": i, "bytes_to_clients": 10 * i,
                   "bytes_from_upstreams": 5 * i, "cache_hits": 1})
        })
        .collect();
    days.push(
        json!({"date": today(), "requests": 100, "bytes_to_clients": 1000,
                     "bytes_from_upstreams": 500, "cache_hits": 7}),
    );
    let file = json!({"traffic": days, "registrations": {}});
    std::fs::write(state.path().join("state.json"), file.to_string()).unwrap();
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(&[("origin", vec![a.addr().to_string()])], "")
    );
    let n = Node::start_in(Some(state.path()), &rest);
    let r = n.proxy("GET", "/one").await;
    assert_eq!(r.status, 200);
    let today_entry = n.today_after(101).await;
    assert_eq!(today_entry["requests"], 101, "{today_entry}");
    assert_eq!(
        today_entry["bytes_to_clients"],
        1000 + r.body.len() as u64,
        "{today_entry}"
    );
    assert_eq!(today_entry["cache_hits"], 7, "{today_entry}");
    let t = n.json("/traffic").await;
    let days = t["days"].as_array().unwrap();
    assert_eq!(days.len(), 14, "{t}");
    let dates: Vec<String> = days
        .iter()
        .map(|d| d["date"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..14u64).rev().map(|i| date_of(now - i)).collect();
    assert_eq!(dates, want, "{t}");
    assert_eq!(days[0]["requests"], 13, "{t}");
    assert_eq!(days[12]["bytes_to_clients"], 10, "{t}");
}

#[tokio::test]
async fn a_broken_state_file_is_logged_and_replaced() {
    let a = Origin::start("a");
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("state.json"), "{\"traffic\": [ not json").unwrap();
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let mut n = Node::start_in(Some(state.path()), &rest);
    assert!(
        n.weir.wait_log("not a weir state file"),
        "{}",
        n.weir.stderr()
    );
    assert_eq!(n.proxy("GET", "/x").await.status, 200);
    let t = n.today_after(1).await;
    assert_eq!(t["requests"], 1, "{t}");
    n.register("nodes", "127.0.0.1:7", "10m").await;
    n.weir.signal("TERM");
    assert!(n.weir.wait_exit(Duration::from_secs(10)).is_some());
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("state.json")).unwrap())
            .expect("a valid state file after the stop");
    assert!(saved.to_string().contains("127.0.0.1:7"), "{saved}");
}

#[tokio::test]
async fn purge_by_key_and_by_url_and_clean_a_zone() {
    let a = Origin::start("a");
    let cache = tempfile::tempdir().unwrap();
    let rest = format!(
        "{}{}{CACHED_AND_PLAIN}",
        cache_zone(cache.path()),
        upstream(&[("origin", vec![a.addr().to_string()])], "")
    );
    let n = Node::start(&rest);
    let port = n.weir.port;
    let node = &n;
    let statuses = move |path: &'static str| async move {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(node.proxy("GET", path).await.cache());
        }
        v
    };
    assert_eq!(statuses("/c/k").await, ["MISS", "HIT"]);
    assert_eq!(statuses("/c/u?q=1").await, ["MISS", "HIT"]);

    // By key: the zone's key, `$scheme$host$request_uri` ($host without the port).
    let body = json!({"zone": "c", "key": "http127.0.0.1/c/k"}).to_string();
    let r = n.authed("POST", "/purge", Some(&body)).await;
    assert_eq!((r.status, r.json()), (200, json!({"purged": 1})), "{r:?}");
    assert_error(
        &n.authed("POST", "/purge", Some(&body)).await,
        404,
        "purge again",
    );
    assert_eq!(statuses("/c/k").await, ["MISS", "HIT"]);
    assert_eq!(a.hits("/c/k"), 2);

    // By URL: keyed like a GET of it.
    let body = json!({"zone": "c", "url": format!("http://127.0.0.1:{port}/c/u?q=1")}).to_string();
    let r = n.authed("POST", "/purge", Some(&body)).await;
    assert_eq!((r.status, r.json()), (200, json!({"purged": 1})), "{r:?}");
    assert_error(
        &n.authed("POST", "/purge", Some(&body)).await,
        404,
        "purge url again",
    );
    assert_eq!(statuses("/c/u?q=1").await, ["MISS", "HIT"]);
    let absent = json!({"zone": "c", "url": "http://127.0.0.1/never"}).to_string();
    assert_error(
        &n.authed("POST", "/purge", Some(&absent)).await,
        404,
        "absent url",
    );
    let absent = json!({"zone": "c", "key": "nothing"}).to_string();
    assert_error(
        &n.authed("POST", "/purge", Some(&absent)).await,
        404,
        "absent key",
    );

    // Clean: objects read just now are younger than a day; 0s removes all.
    assert_eq!(statuses("/c/third").await, ["MISS", "HIT"]);
    let status = n.json("/status").await;
    assert_eq!(status["caches"]["c"]["objects"], 3, "{status}");
    let bytes = status["caches"]["c"]["bytes"].as_u64().unwrap();
    let r = n
        .authed("POST", "/caches/c/clean?older_than=1d", None)
        .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"removed": 0, "bytes_freed": 0}))
    );
    let r = n
        .authed("POST", "/caches/c/clean?older_than=0s", None)
        .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"removed": 3, "bytes_freed": bytes})),
        "{r:?}"
    );
    let status = n.json("/status").await;
    assert_eq!(status["caches"]["c"]["objects"], 0, "{status}");
    assert_eq!(status["caches"]["c"]["bytes"], 0, "{status}");
    assert_eq!(n.proxy("GET", "/c/k").await.cache(), "MISS");
    let r = n
        .authed("POST", "/caches/c/clean?older_than=0s", None)
        .await;
    assert_eq!(r.json()["removed"], 1);
    let r = n
        .authed("POST", "/caches/c/clean?older_than=0s", None)
        .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"removed": 0, "bytes_freed": 0}))
    );
}

#[tokio::test]
async fn reload_applies_a_good_file_and_refuses_a_broken_one() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let with = |o: &Origin| {
        format!(
            "{}routes:\n  - {{ name: all, upstream: o }}\n",
            upstream(&[("origin", vec![o.addr().to_string()])], "")
        )
    };
    let n = Node::start(&with(&a));
    assert_eq!(n.proxy("GET", "/x").await.origin(), "a");

    // The same file: ok.
    let r = n.authed("POST", "/reload", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})), "{r:?}");
    assert!(r.header("content-type").starts_with("application/json"));

    // A new file: live at once.
    n.rewrite(None, &with(&b));
    let r = n.authed("POST", "/reload", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    assert_eq!(n.proxy("GET", "/x").await.origin(), "b");

    // Broken values: 422 with every error, each naming its YAML path; b still serves.
    let broken = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n  - {{ name: other, upstream: nope }}\n",
        upstream(
            &[("origin", vec![a.addr().to_string()])],
            "    max_fails: -1\n"
        )
    );
    n.rewrite(None, &broken);
    let r = n.authed("POST", "/reload", None).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.header("content-type").starts_with("application/json"));
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.starts_with("routes[1].upstream:")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("upstreams.o.max_fails:")),
        "{errors:?}"
    );
    assert!(n.weir.wait_log("reload rejected"));
    for _ in 0..3 {
        assert_eq!(n.proxy("GET", "/x").await.origin(), "b");
    }
    // Not YAML at all: 422 too.
    std::fs::write(n.weir.config_path(), "routes: [\n  {").unwrap();
    let r = n.authed("POST", "/reload", None).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(!r.json()["errors"].as_array().unwrap().is_empty(), "{r:?}");
    assert_eq!(n.proxy("GET", "/y").await.origin(), "b");
    assert_eq!(a.hits("/y"), 0);
    let h = n.call("GET", "/healthz", None, None).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn every_mutating_call_needs_the_token_and_changes_nothing_without_it() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let cache = tempfile::tempdir().unwrap();
    let with = |o: &Origin| {
        format!(
            "{}{}{CACHED_AND_PLAIN}",
            cache_zone(cache.path()),
            upstream(
                &[("nodes", vec![]), ("origin", vec![o.addr().to_string()])],
                ""
            )
        )
    };
    let n = Node::start(&with(&a));
    let port = n.weir.port;
    assert_eq!(n.proxy("GET", "/c/obj").await.cache(), "MISS");
    assert_eq!(n.proxy("GET", "/c/obj").await.cache(), "HIT");
    let (kept, _kept_port) = dead();
    n.register("nodes", &kept, "10m").await;
    // The next reload would point the routes at b.
    n.rewrite(None, &with(&b));

    let (newcomer, _newcomer_port) = dead();
    let register = json!({"tier": "nodes", "addr": newcomer, "ttl": "10m"}).to_string();
    let purge_key = json!({"zone": "c", "key": "http127.0.0.1/c/obj"}).to_string();
    let purge_url =
        json!({"zone": "c", "url": format!("http://127.0.0.1:{port}/c/obj")}).to_string();
    let delete = format!("/upstreams/o/servers/{}", kept.replace(':', "%3A"));
    let calls: Vec<(&str, &str, Option<&str>)> = vec![
        ("POST", "/upstreams/o/servers", Some(register.as_str())),
        ("DELETE", delete.as_str(), None),
        ("POST", "/purge", Some(purge_key.as_str())),
        ("POST", "/purge", Some(purge_url.as_str())),
        ("POST", "/caches/c/clean?older_than=0s", None),
        ("POST", "/reload", None),
        // Other methods need the token too, before anything else is looked at.
        ("PUT", "/status", None),
        ("PATCH", "/upstreams/o/servers", Some(register.as_str())),
        ("DELETE", "/caches/c", None),
        ("POST", "/no/such/endpoint", None),
    ];
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(format!("Token {TOKEN}")),
    ];
    let mut refused = 0;
    for (method, path, body) in &calls {
        for auth in &wrong {
            let r = n.call(method, path, auth.as_deref(), *body).await;
            assert_error(&r, 401, &format!("{method} {path} with {auth:?}"));
            refused += 1;
        }
    }
    assert_eq!(refused, calls.len() * wrong.len());

    // Nothing changed.
    assert!(
        n.server(&newcomer).await.is_none(),
        "registered without the token"
    );
    assert!(n.server(&kept).await.is_some(), "deleted without the token");
    let status = n.json("/status").await;
    assert_eq!(status["caches"]["c"]["objects"], 1, "{status}");
    assert_eq!(n.proxy("GET", "/c/obj").await.cache(), "HIT");
    assert_eq!(
        n.proxy("GET", "/p").await.origin(),
        "a",
        "reloaded without the token"
    );
    assert!(
        !n.weir.stderr().contains("reloading"),
        "{}",
        n.weir.stderr()
    );
    // Reads need no token, and a wrong one does not stop them.
    let r = n.call("GET", "/status", Some("Bearer wrong"), None).await;
    assert_eq!(r.status, 200);

    // The scheme is case-insensitive.
    let r = n
        .call("POST", "/reload", Some(&format!("bearer {TOKEN}")), None)
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})), "{r:?}");
    assert_eq!(n.proxy("GET", "/p2").await.origin(), "b");
    let r = n
        .call(
            "POST",
            "/upstreams/o/servers",
            Some(&format!("BEARER {TOKEN}")),
            Some(&register),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(n.server(&newcomer).await.is_some());
}

#[tokio::test]
async fn errors_are_json_with_a_4xx_status() {
    let a = Origin::start("a");
    let cache = tempfile::tempdir().unwrap();
    let rest = format!(
        "{}{}{CACHED_AND_PLAIN}",
        cache_zone(cache.path()),
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let n = Node::start(&rest);
    let reg = |v: Value| v.to_string();
    let ok = json!({"tier": "nodes", "addr": "127.0.0.1:9", "ttl": "1m"});
    let with = |k: &str, v: Value| {
        let mut o = ok.clone();
        o[k] = v;
        o.to_string()
    };
    let servers = "/upstreams/o/servers";
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "POST",
            "/upstreams/nope/servers".into(),
            Some(reg(ok.clone())),
            404,
            "unknown upstream",
        ),
        (
            "DELETE",
            "/upstreams/nope/servers/127.0.0.1%3A9".into(),
            None,
            404,
            "delete on unknown upstream",
        ),
        (
            "DELETE",
            format!("{servers}/127.0.0.1%3A9"),
            None,
            404,
            "delete unregistered",
        ),
        (
            "POST",
            servers.into(),
            Some(with("tier", json!("nope"))),
            400,
            "unknown tier",
        ),
        (
            "POST",
            servers.into(),
            Some(with("addr", json!("no-port"))),
            400,
            "addr without a port",
        ),
        (
            "POST",
            servers.into(),
            Some(with("addr", json!("127.0.0.1:99999"))),
            400,
            "port out of range",
        ),
        (
            "POST",
            servers.into(),
            Some(with("addr", json!("bad host:80"))),
            400,
            "not a host name",
        ),
        (
            "POST",
            servers.into(),
            Some(with("addr", json!(""))),
            400,
            "empty addr",
        ),
        (
            "POST",
            servers.into(),
            Some(with("ttl", json!("10 minutes"))),
            400,
            "bad ttl",
        ),
        (
            "POST",
            servers.into(),
            Some(with("ttl", json!("-5s"))),
            400,
            "negative ttl",
        ),
        (
            "POST",
            servers.into(),
            Some(with("ttl", json!("0s"))),
            400,
            "zero ttl",
        ),
        (
            "POST",
            servers.into(),
            Some(with("ttl", json!(60))),
            400,
            "ttl not a string",
        ),
        (
            "POST",
            servers.into(),
            Some(with("tls", json!("yes"))),
            400,
            "tls not a bool",
        ),
        (
            "POST",
            servers.into(),
            Some(with("extra", json!(1))),
            400,
            "unknown JSON field",
        ),
        (
            "POST",
            servers.into(),
            Some(r#"{"tier": "nodes", "addr": "#.into()),
            400,
            "malformed JSON",
        ),
        ("POST", servers.into(), Some("".into()), 400, "no body"),
        (
            "POST",
            servers.into(),
            Some("[1, 2]".into()),
            400,
            "not an object",
        ),
        (
            "POST",
            servers.into(),
            Some(r#"{"tier": "nodes", "ttl": "1m"}"#.into()),
            400,
            "addr missing",
        ),
        (
            "POST",
            "/purge".into(),
            Some(r#"{"zone": "nope", "key": "k"}"#.into()),
            404,
            "unknown zone",
        ),
        (
            "POST",
            "/purge".into(),
            Some(r#"{"zone": "c"}"#.into()),
            400,
            "neither key nor url",
        ),
        (
            "POST",
            "/purge".into(),
            Some(r#"{"zone": "c", "key": "k", "url": "http://h/"}"#.into()),
            400,
            "both key and url",
        ),
        (
            "POST",
            "/purge".into(),
            Some(r#"{"zone": "c", "url": "/relative"}"#.into()),
            400,
            "relative url",
        ),
        (
            "POST",
            "/purge".into(),
            Some(r#"{"zone": "c", "key": "k", "all": true}"#.into()),
            400,
            "unknown purge field",
        ),
        (
            "POST",
            "/purge".into(),
            Some("{".into()),
            400,
            "malformed purge",
        ),
        (
            "POST",
            "/caches/nope/clean?older_than=0s".into(),
            None,
            404,
            "unknown zone clean",
        ),
        (
            "POST",
            "/caches/c/clean".into(),
            None,
            400,
            "older_than missing",
        ),
        (
            "POST",
            "/caches/c/clean?older_than=soon".into(),
            None,
            400,
            "bad older_than",
        ),
        ("PUT", "/status".into(), None, 405, "PUT /status"),
        ("DELETE", "/reload".into(), None, 405, "DELETE /reload"),
        ("GET", "/purge".into(), None, 405, "GET /purge"),
        ("GET", "/reload".into(), None, 405, "GET /reload"),
        ("POST", "/healthz".into(), None, 405, "POST /healthz"),
        ("GET", "/nope".into(), None, 404, "unknown endpoint"),
        ("POST", "/".into(), None, 405, "POST / (the dashboard)"),
        (
            "POST",
            "/purge".into(),
            Some(format!(
                "{{\"zone\": \"c\", \"key\": \"{}\"}}",
                "k".repeat(70_000)
            )),
            413,
            "body over 64 KiB",
        ),
    ];
    for (method, path, body, status, what) in &cases {
        let auth = if *method == "GET" {
            None
        } else {
            Some(format!("Bearer {TOKEN}"))
        };
        let r = n.call(method, path, auth.as_deref(), body.as_deref()).await;
        assert_error(&r, *status, &format!("{what} ({method} {path})"));
    }
    // Exactly 64 KiB is not too large (it is just not valid).
    let (head, tail) = ("{\"zone\": \"c\", \"key\": \"", "\"}");
    let body = format!(
        "{head}{}{tail}",
        "k".repeat(65_536 - head.len() - tail.len())
    );
    assert_eq!(body.len(), 65_536);
    let r = n.authed("POST", "/purge", Some(&body)).await;
    assert_error(&r, 404, "a 64 KiB purge of an absent key");
    // Nothing was registered by any of these.
    let servers = n.servers().await;
    assert!(
        servers.iter().all(|s| s["registered"] == false),
        "{servers:?}"
    );
    assert_eq!(n.call("GET", "/healthz", None, None).await.status, 200);
}

#[tokio::test]
async fn redirect_mode_points_at_a_registered_node() {
    let a = Origin::start("a");
    let rest = format!(
        "{}routes:\n  - {{ name: jump, redirect: o }}\n",
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let n = Node::start(&rest);
    let location = |r: &Resp| r.header("location");
    let r = n.proxy("GET", "/img/cat.jpg?w=100").await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        location(&r),
        format!("http://{}/img/cat.jpg?w=100", a.addr())
    );

    let node = "127.0.0.1:8181";
    n.register("nodes", node, "5m").await;
    let r = n.proxy("GET", "/img/cat.jpg?w=100").await;
    assert_eq!(r.status, 302);
    assert_eq!(location(&r), format!("http://{node}/img/cat.jpg?w=100"));
    assert_eq!(r.header("cache-control"), "no-store");

    // A TLS node: https.
    let path = format!("/upstreams/o/servers/{}", node.replace(':', "%3A"));
    assert_eq!(n.authed("DELETE", &path, None).await.status, 204);
    let body =
        json!({"tier": "nodes", "addr": "127.0.0.1:8443", "ttl": "5m", "tls": true}).to_string();
    let r = n.authed("POST", "/upstreams/o/servers", Some(&body)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = n.proxy("GET", "/a/b").await;
    assert_eq!(location(&r), "https://127.0.0.1:8443/a/b");

    assert_eq!(
        n.authed("DELETE", "/upstreams/o/servers/127.0.0.1%3A8443", None)
            .await
            .status,
        204
    );
    let r = n.proxy("GET", "/back").await;
    assert_eq!(location(&r), format!("http://{}/back", a.addr()));
    assert_eq!(a.total_hits(), 0, "redirect mode does not proxy");
}

#[tokio::test]
async fn admin_paths_on_a_proxy_listener_are_proxied() {
    let a = Origin::start("a");
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let n = Node::start(&rest);
    for path in [
        "/healthz",
        "/metrics",
        "/status",
        "/traffic",
        "/upstreams/o",
    ] {
        let r = n.proxy("GET", path).await;
        assert_eq!((r.status, r.origin().as_str()), (200, "a"), "{path}: {r:?}");
        assert_eq!(a.hits(path), 1, "{path}");
    }
    let mutating = [
        ("POST", "/upstreams/o/servers"),
        ("DELETE", "/upstreams/o/servers/127.0.0.1%3A9"),
        ("POST", "/purge"),
        ("POST", "/caches/c/clean"),
        ("POST", "/reload"),
    ];
    for (method, path) in mutating {
        let r = n.proxy(method, path).await;
        assert_eq!(r.origin(), "a", "{method} {path}: {r:?}");
        assert_ne!(r.status, 401, "{method} {path}");
    }
    assert_eq!(a.hits("/reload"), 1);
    // The admin listener saw none of it.
    assert!(!n.weir.stderr().contains("reloading"));
    assert!(n.servers().await.iter().all(|s| s["registered"] == false));
}

/// SPEC §8: a bad ttl is a 400 with a JSON error, whatever its size.
#[tokio::test]
async fn a_huge_ttl_is_refused_with_400() {
    let a = Origin::start("a");
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let n = Node::start(&rest);
    for ttl in [
        "9223372036854775807s",
        "18446744073709551615s",
        "213503982334601d",
    ] {
        let body = json!({"tier": "nodes", "addr": "127.0.0.1:9", "ttl": ttl}).to_string();
        let url = format!("http://127.0.0.1:{}/upstreams/o/servers", n.admin);
        let sent = n
            .client
            .post(url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => panic!("ttl {ttl}: no answer ({e}); stderr:\n{}", n.weir.stderr()),
        };
        assert_eq!(r.status().as_u16(), 400, "ttl {ttl}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    assert!(!n.weir.stderr().contains("panicked"), "{}", n.weir.stderr());
}

/// SPEC §8 types `last_change` as an RFC 3339 time and `reason` as a string; only
/// `expires_in_s` may be null.
#[tokio::test]
async fn every_server_reports_last_change_and_reason() {
    let a = Origin::start("a");
    let rest = format!(
        "{}routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(
            &[("nodes", vec![]), ("origin", vec![a.addr().to_string()])],
            ""
        )
    );
    let n = Node::start(&rest);
    n.register("nodes", "127.0.0.1:9", "1m").await;
    let servers = n.servers().await;
    assert_eq!(servers.len(), 2);
    for s in &servers {
        check_server(s);
        assert!(s["last_change"].as_str().is_some_and(is_rfc3339), "{s}");
        assert!(s["reason"].is_string(), "{s}");
    }
}

#[tokio::test]
async fn the_token_may_come_from_the_environment() {
    let a = Origin::start("a");
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 1\n\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: \"${{WEIR_TEST_ADMIN_TOKEN}}\" }}\n{}\
         routes:\n  - {{ name: all, upstream: o }}\n",
        upstream(&[("origin", vec![a.addr().to_string()])], "")
    );
    let weir = Weir::start_with_env(&yaml, port, &[("WEIR_TEST_ADMIN_TOKEN", "from-env")]);
    wait_listening(("127.0.0.1", admin));
    let n = Node {
        weir,
        admin,
        client: common::client(),
    };
    let r = n
        .call("POST", "/reload", Some("Bearer from-env"), None)
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})), "{r:?}");
    let r = n
        .call(
            "POST",
            "/reload",
            Some("Bearer ${WEIR_TEST_ADMIN_TOKEN}"),
            None,
        )
        .await;
    assert_error(&r, 401, "the variable's name is not the token");
}
