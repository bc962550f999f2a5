//! Differential test of the disk cache against the real nginx: every scenario offers the
//! same request schedule to a fresh nginx (`proxy_cache`, installed with
//! `apt-get install nginx-light` when missing) and to a fresh weir (a cache zone with the
//! same settings), each in front of its own in-process origin, and asserts that the traces
//! — status, `X-Cache-Status`, body length and checksum of every response, and the origin's
//! hit counts — are identical.
//!
//! The zone compared with nginx's `proxy_cache`:
//!
//! | nginx | weir |
//! | --- | --- |
//! | `proxy_cache_key $scheme$host$request_uri` | `key` (the default) |
//! | `proxy_cache_valid 200 10m` | `valid: {"200": 10m}` |
//! | `proxy_cache_lock on; proxy_cache_lock_timeout 5s` | `lock_timeout: 5s` |
//! | `proxy_cache_use_stale error timeout updating http_500 … http_504` | `use_stale: […]` |
//! | `proxy_cache_revalidate on` | (weir always revalidates with the stored validators) |
//! | `add_header X-Cache-Status $upstream_cache_status always` | `status_header` (default) |
//!
//! Where NGINX.md says weir deliberately differs (lock waiters woken at once instead of
//! polled every 500 ms; Range answered from any complete cached object), only what should be
//! equal is compared: the statuses of lock waiters, not their timing; the cache statuses of
//! Range requests, not the 200/206.
//!
//! Every scenario also checks nginx's own sequence against the one NGINX.md (and the nginx
//! source) describes, so that another nginx version changing the reference is reported as
//! such and not as a weir bug. The reference here is Debian's nginx-light 1.22.1.
//!
//! weir also sends `Age` on cached responses (RFC 9111; nginx never does): that deliberate
//! difference is asserted in `cache.rs`, not here.
//!
//! weir runs the YAML that `weir import nginx` makes of the very nginx.conf nginx runs (the
//! round trip of the importer); `WEIR_DIFF_CONFIG=handwritten` runs the hand-written zone
//! above instead.
//!
//! Scenarios run one at a time (a lock), nginx first, then weir, so neither is timed against
//! the other's load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, import_nginx, nginx_conf, use_imported_config, Nginx, Origin, Weir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Long enough for `max-age=1` to be over: expiry is kept in whole seconds, so it lasts 1–2 s.
const EXPIRE: Duration = Duration::from_millis(2100);

/// The Host of every request (it is part of both cache keys).
const HOST: &str = "img.test";

// ---------------------------------------------------------------------------------------
// nginx (found, or installed with apt when running as root)
// ---------------------------------------------------------------------------------------

/// The cache zone of every scenario, the twin of weir's `caches.c`.
const NGINX_CACHE: &str =
    "proxy_cache_path {dir}/cache levels=1:2 keys_zone=c:1m inactive=10m use_temp_path=off;";

/// The location of every scenario: the twin of weir's route with `cache: {zone: c}`.
fn nginx_location(origin: SocketAddr) -> String {
    format!(
        "proxy_pass http://{origin};\n\
         proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n\
         proxy_cache c;\n\
         proxy_cache_key $scheme$host$request_uri;\n\
         proxy_cache_valid 200 10m;\n\
         proxy_cache_lock on;\n\
         proxy_cache_lock_timeout 5s;\n\
         proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;\n\
         proxy_cache_revalidate on;\n\
         add_header X-Cache-Status $upstream_cache_status always;"
    )
}

// ---------------------------------------------------------------------------------------
// weir with the equivalent zone
// ---------------------------------------------------------------------------------------

/// weir with zone `c` (the equivalent of the nginx config above) on one catch-all route.
fn start_weir(origin: SocketAddr, dir: &std::path::Path) -> Weir {
    let port = free_port();
    if use_imported_config() {
        // The cache lives in `dir/cache`, as nginx's in its `{dir}/cache`.
        let conf = nginx_conf(NGINX_CACHE, &nginx_location(origin), port, dir);
        return Weir::start(&import_nginx(&conf, dir), port);
    }
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         caches:\n  c:\n    path: {}\n    valid: {{ \"200\": 10m }}\n    \
         use_stale: [error, timeout, updating, http_500, http_502, http_503, http_504]\n    \
         lock_timeout: 5s\n\
         upstreams:\n  o: {{ tiers: [{{ name: a, servers: [\"{origin}\"] }}] }}\n\
         routes:\n  - {{ upstream: o, plugins: [{{ cache: {{ zone: c }} }}] }}\n",
        dir.display(),
    );
    Weir::start(&yaml, port)
}

// ---------------------------------------------------------------------------------------
// The client: one raw HTTP/1.1 request per connection
// ---------------------------------------------------------------------------------------

/// One response.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    /// `X-Cache-Status`, `-` when absent.
    cache: String,
    headers: Vec<(String, String)>,
    /// The body, de-chunked.
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with `Host: img.test`, `Connection: close` and `headers` on a new
/// connection to `port` and reads the response to its end.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {HOST}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw, method == "HEAD")
        .unwrap_or_else(|| panic!("bad response to {method} {path}: {raw:?}"))
}

fn parse(raw: &[u8], head: bool) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    let cache = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-cache-status"))
        .map_or("-".to_string(), |(_, v)| v.clone());
    Some(Resp {
        status,
        cache,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Short FNV-1a of a body, so traces show when bodies differ.
fn checksum(body: &[u8]) -> String {
    format!("{:08x}", weir_origin::fnv1a(body) as u32)
}

// ---------------------------------------------------------------------------------------
// Scenarios: the same schedule on either server, recorded as a trace
// ---------------------------------------------------------------------------------------

/// One server under test, its origin, and the trace of what it answered.
struct Target {
    /// `nginx` or `weir`.
    who: &'static str,
    port: u16,
    origin: Origin,
    /// Steps compared between the servers.
    trace: Vec<String>,
    /// Steps only printed (deliberate differences).
    notes: Vec<String>,
}

impl Target {
    /// Sends a request and records `label: status cache len#checksum`.
    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let r = request(self.port, method, path, headers);
        self.record(method, path, headers, &r);
        r
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[])
    }

    fn record(&mut self, method: &str, path: &str, headers: &[(&str, &str)], r: &Resp) {
        let hs: String = headers
            .iter()
            .map(|(k, v)| format!(" [{k}: {v}]"))
            .collect();
        self.trace.push(format!(
            "{method} {path}{hs} → {} {} {}B#{}",
            r.status,
            r.cache,
            r.body.len(),
            checksum(&r.body)
        ));
    }

    /// Records the origin's hit count for `path`.
    fn hits(&mut self, path: &str) {
        let n = self.origin.hits(path);
        self.trace.push(format!("origin hits {path} = {n}"));
    }

    /// Records a free-form step compared between the servers.
    fn step(&mut self, s: String) {
        self.trace.push(s);
    }

    /// Records a step that is only printed.
    fn note(&mut self, s: String) {
        self.notes.push(s);
    }
}

/// Runs `scenario` against a fresh nginx and then a fresh weir, each with its own origin;
/// prints both traces and asserts that they are identical. Returns (nginx, weir) notes.
fn differential(name: &str, scenario: fn(&mut Target)) -> (Vec<String>, Vec<String>) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());

    let nginx = {
        let origin = Origin::start("o");
        let server = Nginx::start(NGINX_CACHE, &nginx_location(origin.addr()));
        let mut t = Target {
            who: "nginx",
            port: server.port,
            origin,
            trace: Vec::new(),
            notes: Vec::new(),
        };
        scenario(&mut t);
        t
    };

    let weir = {
        let origin = Origin::start("o");
        let dir = tempfile::tempdir().unwrap();
        let server = start_weir(origin.addr(), dir.path());
        let mut t = Target {
            who: "weir",
            port: server.port,
            origin,
            trace: Vec::new(),
            notes: Vec::new(),
        };
        scenario(&mut t);
        t
    };

    let show = |t: &Target| {
        let mut s = String::new();
        for step in &t.trace {
            s.push_str(&format!("\n     {step}"));
        }
        for note in &t.notes {
            s.push_str(&format!("\n     (not compared) {note}"));
        }
        s
    };
    eprintln!("== {name}");
    eprintln!("   nginx:{}", show(&nginx));
    eprintln!("   weir:{}", show(&weir));
    let first_difference = nginx
        .trace
        .iter()
        .zip(&weir.trace)
        .position(|(n, w)| n != w)
        .map_or(String::new(), |i| {
            format!(
                "\n first difference at step {i}:\n   nginx: {}\n   weir:  {}",
                nginx.trace[i], weir.trace[i]
            )
        });
    assert_eq!(
        weir.trace,
        nginx.trace,
        "{name}: weir differs from nginx{first_difference}\n nginx:{}\n weir:{}",
        show(&nginx),
        show(&weir)
    );
    (nginx.notes, weir.notes)
}

/// The `X-Cache-Status` values of the last `n` recorded steps, as `[MISS, HIT]`…
fn last_caches(t: &Target, n: usize) -> Vec<String> {
    t.trace[t.trace.len() - n..]
        .iter()
        .map(|s| {
            s.rsplit(" → ")
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// Checks nginx's own `X-Cache-Status` values of the last `n` steps against the reference
/// (NGINX.md, the nginx source), so that a change of the reference (another nginx version)
/// is reported as such; a no-op for weir, which is compared with nginx's trace instead.
fn expect_nginx(t: &Target, n: usize, want: &[&str]) {
    if t.who == "nginx" {
        assert_eq!(
            last_caches(t, n),
            want,
            "nginx itself no longer answers as NGINX.md says:\n {}",
            t.trace.join("\n ")
        );
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------

#[test]
fn miss_then_hits() {
    differential("MISS then HITs", |t| {
        for _ in 0..3 {
            t.get("/a?size=5000");
        }
        expect_nginx(t, 3, &["MISS", "HIT", "HIT"]);
        t.hits("/a");
        // A chunked response (no Content-Length), a large one and an empty one.
        for path in ["/ch?size=70000&chunked=1", "/big?size=3m", "/empty?size=0"] {
            t.get(path);
            t.get(path);
            expect_nginx(t, 2, &["MISS", "HIT"]);
        }
        t.hits("/ch");
        t.hits("/big");
        t.hits("/empty");
    });
}

#[test]
fn other_methods_pass_through_without_a_cache_status() {
    differential(
        "POST / PUT / DELETE are not cached and do not touch the object",
        |t| {
            let body = [("Content-Length", "0")];
            t.send("POST", "/pm?size=50", &body);
            t.get("/pm?size=50");
            for m in ["POST", "PUT", "DELETE"] {
                t.send(m, "/pm?size=50", &body);
            }
            t.get("/pm?size=50");
            expect_nginx(t, 6, &["-", "MISS", "-", "-", "-", "HIT"]);
            t.hits("/pm");
        },
    );
}

#[test]
fn head_after_get_and_a_cold_head() {
    differential("HEAD after GET; a cold HEAD", |t| {
        t.get("/h?size=3000");
        let head = t.send("HEAD", "/h?size=3000", &[]);
        expect_nginx(t, 2, &["MISS", "HIT"]);
        t.step(format!(
            "HEAD /h content-length: {:?}",
            head.header("content-length")
        ));
        // A cold HEAD goes upstream as GET and stores the object.
        let head = t.send("HEAD", "/h2?size=100", &[]);
        t.step(format!(
            "HEAD /h2 content-length: {:?}",
            head.header("content-length")
        ));
        t.get("/h2?size=100");
        t.hits("/h2");
        // Which method the origin saw for the cold HEAD: the echo is cached from its GET.
        // (Its body lists the request headers, which differ between the proxies.)
        t.send("HEAD", "/__echo", &[]);
        let echo = request(t.port, "GET", "/__echo", &[]);
        let body = String::from_utf8_lossy(&echo.body);
        t.step(format!(
            "GET /__echo → {} {}, the cold HEAD went upstream as GET: {}",
            echo.status,
            echo.cache,
            body.contains("\"method\":\"GET\"")
        ));
        t.hits("/__echo");
    });
}

#[test]
fn max_age_expiry_then_hit() {
    differential("max-age=1 expiry → EXPIRED then HIT", |t| {
        let path = "/e?cc=max-age%3D1";
        let head_path = "/e2?cc=max-age%3D1&size=200";
        t.get(path);
        t.get(path);
        t.get(head_path);
        std::thread::sleep(EXPIRE);
        t.get(path);
        t.get(path);
        expect_nginx(t, 2, &["EXPIRED", "HIT"]);
        // A HEAD that finds the object expired refreshes it (upstream as GET).
        t.send("HEAD", head_path, &[]);
        t.get(head_path);
        expect_nginx(t, 2, &["EXPIRED", "HIT"]);
        t.hits("/e");
        t.hits("/e2");
    });
}

#[test]
fn uncacheable_responses_are_never_stored() {
    differential(
        "no-store / private / no-cache / Set-Cookie / Vary: * / max-age=0 / past Expires",
        |t| {
            for (i, q) in [
                "cc=no-store",
                "cc=private",
                "cc=no-cache",
                "cc=private%2C%20max-age%3D60",
                "set_cookie=a%3D1",
                "cc=max-age%3D60&set_cookie=a%3D1",
                "vary=%2A",
                "cc=max-age%3D0",
                "expires=Thu%2C%2001%20Jan%201970%2000%3A00%3A00%20GMT",
            ]
            .iter()
            .enumerate()
            {
                let path = format!("/n{i}?{q}");
                t.get(&path);
                t.get(&path);
                expect_nginx(t, 2, &["MISS", "MISS"]);
                t.hits(&format!("/n{i}"));
            }
        },
    );
}

#[test]
fn valid_by_status_and_cache_control_on_errors() {
    differential(
        "404 not in valid; Cache-Control / X-Accel-Expires on a 404",
        |t| {
            // Only 200 is in `valid`: a 404 without freshness headers is not stored.
            t.get("/missing?status=404");
            t.get("/missing?status=404");
            expect_nginx(t, 2, &["MISS", "MISS"]);
            // Explicit freshness makes any status cacheable.
            // Nor a redirect.
            t.get("/moved?status=301");
            t.get("/moved?status=301");
            expect_nginx(t, 2, &["MISS", "MISS"]);
            for path in [
                "/gone?status=404&cc=max-age%3D60",
                "/err?status=500&cc=max-age%3D60",
                "/perm?status=301&cc=max-age%3D60",
                "/xa?status=404&x_accel_expires=60",
                "/ex?status=404&expires=Thu%2C%2031%20Dec%202099%2023%3A59%3A59%20GMT",
            ] {
                t.get(path);
                t.get(path);
                expect_nginx(t, 2, &["MISS", "HIT"]);
            }
            t.hits("/missing");
            t.hits("/moved");
            t.hits("/gone");
            t.hits("/err");
            t.hits("/perm");
            t.hits("/xa");
            t.hits("/ex");
        },
    );
}

#[test]
fn freshness_precedence() {
    differential(
        "X-Accel-Expires over Cache-Control; s-maxage over max-age; Cache-Control over Expires",
        |t| {
            // (Each case is independent of the header order, which matters in nginx 1.22.)
            let paths = [
                // X-Accel-Expires: 60 wins over max-age=1 → still fresh after 2 s.
                "/p1?cc=max-age%3D1&x_accel_expires=60",
                "/p2?x_accel_expires=60&cc=max-age%3D1",
                // s-maxage=60 wins over max-age=1.
                "/p3?cc=max-age%3D1%2C%20s-maxage%3D60",
                // max-age=1 wins over a far Expires → expired after 2 s.
                "/p4?cc=max-age%3D1&expires=Thu%2C%2031%20Dec%202099%2023%3A59%3A59%20GMT",
                "/p5?expires=Thu%2C%2031%20Dec%202099%2023%3A59%3A59%20GMT&cc=max-age%3D1",
                // Expires alone.
                "/p6?expires=Thu%2C%2031%20Dec%202099%2023%3A59%3A59%20GMT",
                // The control: max-age=1 alone.
                "/p7?cc=max-age%3D1",
            ];
            for p in paths {
                t.get(p);
            }
            // X-Accel-Expires: 0 wins over max-age=60 → not stored.
            t.get("/p0?cc=max-age%3D60&x_accel_expires=0");
            t.get("/p0?cc=max-age%3D60&x_accel_expires=0");
            expect_nginx(t, 2, &["MISS", "MISS"]);
            std::thread::sleep(EXPIRE);
            for p in paths {
                t.get(p);
            }
            expect_nginx(
                t,
                7,
                &["HIT", "HIT", "HIT", "EXPIRED", "EXPIRED", "HIT", "EXPIRED"],
            );
        },
    );
}

#[test]
fn stale_on_error() {
    differential(
        "stale on 5xx and on a refused connection; 404 is not in use_stale",
        |t| {
            let path = "/s?cc=max-age%3D1&size=700";
            let path404 = "/s4?cc=max-age%3D1&size=300";
            t.get(path);
            t.get(path404);
            std::thread::sleep(EXPIRE);
            for status in [502, 500, 503, 504] {
                t.origin.state().set_fixed_status(status);
                t.get(path);
            }
            expect_nginx(t, 4, &["STALE", "STALE", "STALE", "STALE"]);
            // 404 is not listed: the origin's 404 (max-age=1, so cacheable) replaces the object.
            t.origin.state().set_fixed_status(404);
            t.get(path404);
            t.get(path404);
            expect_nginx(t, 2, &["EXPIRED", "HIT"]);
            t.origin.state().set_fixed_status(0);
            t.hits("/s");
            t.hits("/s4");
            // A refused connection (`error`).
            t.origin.stop();
            t.get(path);
            expect_nginx(t, 1, &["STALE"]);
        },
    );
}

#[test]
fn updating_while_one_request_refreshes() {
    differential(
        "UPDATING: A refreshes an expired object, B 200 ms later",
        |t| {
            let path = "/u?cc=max-age%3D1&size=400";
            t.get(path);
            std::thread::sleep(EXPIRE);
            t.origin.state().set_fixed_delay(800);
            let port = t.port;
            let a = std::thread::spawn(move || request(port, "GET", path, &[]));
            std::thread::sleep(Duration::from_millis(200));
            let b = request(port, "GET", path, &[]);
            let a = a.join().expect("request A");
            t.record("GET", &format!("{path} (A)"), &[], &a);
            t.record("GET", &format!("{path} (B, 200 ms after A)"), &[], &b);
            expect_nginx(t, 2, &["EXPIRED", "UPDATING"]);
            t.origin.state().set_fixed_delay(0);
            t.get(path);
            expect_nginx(t, 1, &["HIT"]);
            t.hits("/u");
        },
    );
}

#[test]
fn revalidated_by_a_304() {
    differential(
        "REVALIDATED: expired object with validators, origin answers 304",
        |t| {
            let etag = "/r?cc=max-age%3D1&etag=%22v1%22&size=900";
            let lm = "/r2?cc=max-age%3D1&last_modified=Mon%2C%2001%20Jan%202024%2000%3A00%3A00%20GMT&size=800";
            t.get(etag);
            t.get(lm);
            std::thread::sleep(EXPIRE);
            t.get(etag);
            t.get(etag);
            t.get(lm);
            t.get(lm);
            expect_nginx(t, 4, &["REVALIDATED", "HIT", "REVALIDATED", "HIT"]);
            t.hits("/r");
            t.hits("/r2");
        },
    );
}

#[test]
fn vary_accept_encoding_variants() {
    differential("Vary: Accept-Encoding variants", |t| {
        let path = "/v?vary=Accept-Encoding&size=600";
        let gz = [("Accept-Encoding", "gzip")];
        let br = [("Accept-Encoding", "br")];
        t.send("GET", path, &gz);
        t.send("GET", path, &gz);
        t.send("GET", path, &br);
        t.send("GET", path, &br);
        t.send("GET", path, &gz);
        t.send("GET", path, &[]);
        t.send("GET", path, &[]);
        t.hits("/v");
    });
}

#[test]
fn lock_makes_one_origin_request_for_concurrent_misses() {
    // Waiters are woken in weir when the object is stored, and poll every 500 ms in nginx
    // (a deliberate difference): only their statuses and the origin's count are compared.
    differential("proxy_cache_lock: 20 concurrent cold requests", |t| {
        let path = "/l?size=20000";
        t.origin.state().set_fixed_delay(300);
        let port = t.port;
        let start = Instant::now();
        let threads: Vec<_> = (0..20)
            .map(|_| std::thread::spawn(move || request(port, "GET", path, &[])))
            .collect();
        let mut outcomes: Vec<(u16, String, usize)> = threads
            .into_iter()
            .map(|th| {
                let r = th.join().expect("client");
                (r.status, r.cache, r.body.len())
            })
            .collect();
        let elapsed = start.elapsed();
        outcomes.sort();
        let mut counts: Vec<String> = Vec::new();
        for o in &outcomes {
            let s = format!("{} {} {}B", o.0, o.1, o.2);
            match counts.iter_mut().find(|c| c.ends_with(&format!(" × {s}"))) {
                Some(c) => {
                    let (n, rest) = c.split_once(" × ").unwrap();
                    *c = format!("{} × {rest}", n.parse::<u32>().unwrap() + 1);
                }
                None => counts.push(format!("1 × {s}")),
            }
        }
        t.step(format!("20 concurrent GET {path} → {}", counts.join(", ")));
        t.note(format!("all done after {} ms", elapsed.as_millis()));
        t.hits("/l");
    });
}

#[test]
fn range_on_a_cached_object() {
    // nginx answers a Range on a cached object 206 only when the upstream sent
    // Accept-Ranges; weir always does (a deliberate difference): the cache statuses and the
    // origin's count are compared, the HTTP statuses only printed.
    let (n, w) = differential("Range on a cached object; a cold Range", |t| {
        let range = |t: &mut Target, path: &str, spec: &str| {
            let r = request(t.port, "GET", path, &[("Range", spec)]);
            t.step(format!("GET {path} [Range: {spec}] → {}", r.cache));
            t.note(format!(
                "GET {path} [Range: {spec}] → {} {} content-range {:?}",
                r.status,
                r.body.len(),
                r.header("content-range")
            ));
        };
        t.get("/g?size=10000");
        range(t, "/g?size=10000", "bytes=100-199");
        range(t, "/g2?size=5000", "bytes=-10");
        t.get("/g2?size=5000");
        t.hits("/g");
        t.hits("/g2");
    });
    assert_eq!(
        n,
        [
            "GET /g?size=10000 [Range: bytes=100-199] → 200 10000 content-range None",
            "GET /g2?size=5000 [Range: bytes=-10] → 200 5000 content-range None"
        ],
        "nginx without Accept-Ranges from the upstream: the whole object"
    );
    assert_eq!(
        w,
        [
            "GET /g?size=10000 [Range: bytes=100-199] → 206 100 content-range Some(\"bytes 100-199/10000\")",
            "GET /g2?size=5000 [Range: bytes=-10] → 206 10 content-range Some(\"bytes 4990-4999/5000\")"
        ],
        "weir: 206 from the cache (SPEC §7)"
    );
}

#[test]
fn an_unparsable_expires_is_not_cached() {
    differential("Expires: 0 / an unparsable date", |t| {
        // nginx: an Expires it cannot parse makes the response uncacheable (no fallback to
        // `valid`).
        for (i, q) in ["expires=0", "expires=soon"].iter().enumerate() {
            let path = format!("/m{i}?{q}");
            t.get(&path);
            t.get(&path);
            expect_nginx(t, 2, &["MISS", "MISS"]);
        }
    });
}

#[test]
fn a_malformed_max_age_is_not_cached() {
    differential("Cache-Control: max-age=abc / max-age=\"60\"", |t| {
        for (i, q) in ["cc=max-age%3Dabc", "cc=max-age%3D%2260%22"]
            .iter()
            .enumerate()
        {
            let path = format!("/ma{i}?{q}");
            t.get(&path);
            t.get(&path);
            expect_nginx(t, 2, &["MISS", "MISS"]);
        }
    });
}

#[test]
fn a_non_numeric_x_accel_expires_is_ignored() {
    differential("X-Accel-Expires: abc", |t| {
        t.get("/mx?x_accel_expires=abc");
        t.get("/mx?x_accel_expires=abc");
        expect_nginx(t, 2, &["MISS", "HIT"]);
    });
}

#[test]
fn x_accel_expires_at_an_absolute_time() {
    differential("X-Accel-Expires: @<unix time>", |t| {
        // 2099-12-31 23:59:59 UTC.
        let path = "/at?x_accel_expires=%404102444799&cc=max-age%3D1";
        t.get(path);
        t.get(path);
        expect_nginx(t, 2, &["MISS", "HIT"]);
    });
}

#[test]
fn request_cache_control_and_credentials_do_not_bypass() {
    differential(
        "client Cache-Control / Pragma / Authorization / Cookie do not bypass",
        |t| {
            let path = "/q?size=100";
            t.get(path);
            for h in [
                ("Cache-Control", "no-cache"),
                ("Cache-Control", "max-age=0"),
                ("Cache-Control", "no-store"),
                ("Pragma", "no-cache"),
                ("Authorization", "Basic dTpw"),
                ("Cookie", "session=1"),
            ] {
                t.send("GET", path, &[h]);
            }
            expect_nginx(t, 7, &["MISS", "HIT", "HIT", "HIT", "HIT", "HIT", "HIT"]);
            // A response to an authorized request is stored like any other.
            t.send("GET", "/q2?size=100", &[("Authorization", "Basic dTpw")]);
            t.get("/q2?size=100");
            expect_nginx(t, 2, &["MISS", "HIT"]);
            t.hits("/q");
            t.hits("/q2");
        },
    );
}

#[test]
fn key_uses_the_normalized_host_and_the_raw_request_uri() {
    differential(
        "key: $host (lower case, no port) and $request_uri (raw)",
        |t| {
            let path = "/k?a=1&b=2";
            t.get(path);
            for host in ["IMG.TEST", "img.test:80", "img.test:8080"] {
                t.send("GET", path, &[("Host", host)]);
            }
            expect_nginx(t, 4, &["MISS", "HIT", "HIT", "HIT"]);
            t.send("GET", path, &[("Host", "other.test")]);
            expect_nginx(t, 1, &["MISS"]);
            // The request URI as received: other query order, percent-encoding → other keys.
            t.get("/k?b=2&a=1");
            t.get("/%6B?a=1&b=2");
            t.get("/k?a=1&b=2&");
            expect_nginx(t, 3, &["MISS", "MISS", "MISS"]);
            t.hits("/k");
        },
    );
}

#[test]
fn a_trailing_dot_in_the_host_is_dropped_from_the_key() {
    differential("key: Host with a trailing dot", |t| {
        t.get("/kd");
        t.send("GET", "/kd", &[("Host", "img.test.")]);
        expect_nginx(t, 2, &["MISS", "HIT"]);
        t.hits("/kd");
    });
}

#[test]
fn client_conditional_requests_on_a_cached_object() {
    differential(
        "If-None-Match / If-Modified-Since on a cached object",
        |t| {
            let lm = "Mon%2C%2001%20Jan%202024%2000%3A00%3A00%20GMT";
            let path = format!("/c?etag=%22v1%22&last_modified={lm}&size=500");
            t.get(&path);
            for h in [
                ("If-None-Match", "\"v1\""),
                ("If-None-Match", "\"v2\""),
                ("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("If-Modified-Since", "Sun, 31 Dec 2023 00:00:00 GMT"),
            ] {
                t.send("GET", &path, &[h]);
            }
            expect_nginx(t, 5, &["MISS", "HIT", "HIT", "HIT", "HIT"]);
            // A cold conditional request: the whole object is fetched and stored.
            let cold = "/c2?etag=%22v1%22&size=500";
            t.send("GET", cold, &[("If-None-Match", "\"v1\"")]);
            t.get(cold);
            expect_nginx(t, 2, &["MISS", "HIT"]);
            t.hits("/c");
            t.hits("/c2");
        },
    );
}

#[test]
fn lock_timeout_sends_the_waiter_upstream_uncached() {
    // A holds the lock for 6 s; B, 200 ms later, waits 5 s (lock_timeout), then goes upstream
    // itself (the origin is fast again by then) and its response is not stored; A's is.
    differential("lock_timeout: a waiter goes upstream after 5 s", |t| {
        let path = "/lt?size=300";
        t.origin.state().set_fixed_delay(6000);
        let port = t.port;
        let a = std::thread::spawn(move || request(port, "GET", path, &[]));
        std::thread::sleep(Duration::from_millis(200));
        let b_sent = Instant::now();
        let b = std::thread::spawn(move || {
            let r = request(port, "GET", path, &[]);
            (r, b_sent.elapsed().as_millis())
        });
        std::thread::sleep(Duration::from_millis(1000));
        t.origin.state().set_fixed_delay(0);
        let (b, b_ms) = b.join().expect("request B");
        let a = a.join().expect("request A");
        t.record("GET", &format!("{path} (A)"), &[], &a);
        t.record("GET", &format!("{path} (B, 200 ms after A)"), &[], &b);
        expect_nginx(t, 2, &["MISS", "MISS"]);
        t.get(path);
        expect_nginx(t, 1, &["HIT"]);
        t.hits("/lt");
        // B answered when its wait ran out (≈5 s), not when A did (≈5.8 s after B).
        t.note(format!("B done {b_ms} ms after it was sent"));
        t.step(format!(
            "B answered after the lock timeout, before A: {}",
            (4500..5500).contains(&b_ms)
        ));
    });
}

#[test]
fn cached_responses_keep_the_origin_headers() {
    differential("headers of a MISS and a HIT", |t| {
        let path = "/hh?etag=%22x%22&cc=max-age%3D60\
                    &last_modified=Mon%2C%2001%20Jan%202024%2000%3A00%3A00%20GMT&size=10";
        for _ in 0..2 {
            let r = request(t.port, "GET", path, &[]);
            let mut kept: Vec<String> = [
                "content-type",
                "content-length",
                "etag",
                "last-modified",
                "cache-control",
                "x-origin",
            ]
            .iter()
            .map(|h| format!("{h}: {:?}", r.header(h)))
            .collect();
            kept.push(format!("date present: {}", r.header("date").is_some()));
            t.step(format!(
                "GET {path} → {} {} {}",
                r.status,
                r.cache,
                kept.join(", ")
            ));
            let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
            t.note(format!("{}: {}", r.cache, names.join(", ")));
        }
    });
}
