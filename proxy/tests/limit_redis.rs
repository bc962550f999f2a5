//! Fleet mode: `limits.NAME.store: redis://…` through two real weir processes sharing one
//! zone in a real `redis-server` (found on PATH, or installed with `apt-get install
//! redis-server` when missing and root), started by each test on a free port.
//!
//! * The NGINX.md limit_req traces, with the requests alternated between the two nodes, give
//!   what one nginx gives (statuses, and the delays of the 200s within 250 ms).
//! * Redis killed mid-test: requests keep flowing under each node's local limits, each node
//!   logs `redis unreachable (…); deciding locally` once and `/metrics` shows
//!   `weir_limit_store_fallback{zone} 1`; after Redis restarts on the same port the nodes share
//!   again (logged once, gauge 0). A Redis that stops answering (DEBUG SLEEP) never delays a
//!   request by more than `store_timeout`.
//! * `rediss://` with a password from `${VAR}`, verified against a test CA (SSL_CERT_FILE).
//!
//! Everything is bounded: every wait has a deadline, every client socket a read timeout.
//! Tests run one at a time (a lock): they time delays on a small machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, is_root, wait_listening, Origin, Weir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The 200s' completion times may differ from nginx's by this much (as limit_req_nginx.rs).
const DELAY_TOLERANCE_MS: f64 = 250.0;

/// "At once": well before the first 500 ms step.
const AT_ONCE_MS: f64 = 300.0;

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// redis-server

fn find_redis() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("redis-server"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/bin/redis-server")])
        .find(|p| p.is_file())
}

/// The redis-server binary: found, or installed with apt when running as root.
fn redis_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(found) = find_redis() {
            return found;
        }
        assert!(
            is_root(),
            "redis-server is not installed and this test is not root: install it with \
             `apt-get install redis-server` (the fleet limit tests need a real Redis)"
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(
                "apt-get update -qq && \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server",
            )
            .stdin(Stdio::null())
            .status()
            .expect("run apt-get");
        assert!(
            status.success(),
            "`apt-get install redis-server` failed ({status}): the fleet limit tests need a \
             real Redis"
        );
        find_redis().expect("redis-server installed but no redis-server binary found")
    })
}

/// A redis-server on 127.0.0.1:`port` in a temp dir, nothing persisted, killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Plain TCP on a free port (DEBUG enabled, for DEBUG SLEEP).
    fn start() -> Redis {
        let port = free_port();
        Redis::start_with(
            port,
            &["--port", &port.to_string(), "--enable-debug-command", "yes"],
        )
    }

    fn start_with(port: u16, args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.restart();
        redis
    }

    /// (Re)starts it on the same port with the same arguments.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new(redis_bin())
            .args(&self.args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: gone at once, as a crashed Redis.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Sends one plain-TCP command without waiting for its answer (DEBUG SLEEP).
    fn send(&self, args: &[&str]) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(cmd.as_bytes()).unwrap();
        s
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// two weir nodes

/// Two weir nodes (one worker thread each, like the single nginx worker of the traces) with
/// the same `zones` and `plugins`, in front of one origin; the first has an admin listener.
struct Fleet {
    nodes: Vec<Weir>,
    admin: u16,
    _origin: Origin,
}

impl Fleet {
    fn start(zones: &str, plugins: &str) -> Fleet {
        Fleet::start_with_env(zones, plugins, &[])
    }

    fn start_with_env(zones: &str, plugins: &str, env: &[(&str, &str)]) -> Fleet {
        let origin = Origin::start("o");
        let admin = free_port();
        let nodes: Vec<Weir> = (0..2)
            .map(|i| {
                let port = free_port();
                let admin = if i == 0 {
                    format!("admin: {{listen: '127.0.0.1:{admin}', token: t0ken}}\n")
                } else {
                    String::new()
                };
                let yaml = format!(
                    "server:\n  listen: ['127.0.0.1:{port}']\n  threads: 1\n  grace_period: 1s\n  \
                     access_log: {{path: 'off'}}\n{admin}\
                     limits: {{{zones}}}\n\
                     upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
                     routes: [{{upstream: o, plugins: [{plugins}]}}]\n",
                    origin.addr()
                );
                Weir::start_with_env(&yaml, port, env)
            })
            .collect();
        wait_listening(("127.0.0.1", admin));
        Fleet {
            nodes,
            admin,
            _origin: origin,
        }
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Waits until every node logged `needle` (10 s at most each).
    fn wait_logs(&self, needle: &str) {
        for (i, n) in self.nodes.iter().enumerate() {
            assert!(
                n.wait_log(needle),
                "node {i} never logged {needle:?}:\n{}",
                n.stderr()
            );
        }
    }

    /// Asserts that no node fell back to local state: the trace was the fleet's.
    fn assert_shared(&self, name: &str) {
        assert_eq!(
            self.log_counts("redis unreachable"),
            [0, 0],
            "{name}: a node fell back to local state\n{}",
            self.stderr()
        );
    }

    /// How often each node logged `needle`.
    fn log_counts(&self, needle: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| n.stderr().matches(needle).count())
            .collect()
    }

    fn stderr(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i}:\n{}", n.stderr()))
            .collect()
    }

    /// `weir_limit_store_fallback{zone="ZONE"}` on the first node's `/metrics`.
    fn fallback_gauge(&self, zone: &str) -> Option<f64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let series = format!("weir_limit_store_fallback{{zone=\"{zone}\"}} ");
        out.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `limits.ZONE.fallback` in the first node's `/status`.
    fn status_fallback(&self, zone: &str) -> Option<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let body = out.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
        v["limits"][zone]["fallback"].as_bool()
    }

    /// Waits until the gauge reads `want` and `/status` agrees (10 s at most).
    fn wait_gauge(&self, zone: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.fallback_gauge(zone);
            if got == Some(want) && self.status_fallback(zone) == Some(want == 1.0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weir_limit_store_fallback{{zone=\"{zone}\"}} is {got:?}, not {want}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------
// schedules (as limit_req_nginx.rs, alternating between the nodes)

/// What one request got: its status (0 when the connection failed), when its response was
/// complete (ms after the first request was sent), how long it took itself, and Retry-After.
#[derive(Debug, Clone)]
struct Outcome {
    status: u16,
    done_ms: f64,
    took_ms: f64,
    retry_after: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Schedule {
    Parallel(usize),
    Every { count: usize, gap_ms: u64 },
}

/// Sends the schedule, request `i` to `ports[i % ports.len()]`, one connection each (all
/// connected first), and returns the outcomes in send order.
fn run(ports: &[u16], schedule: Schedule) -> Vec<Outcome> {
    let (count, gap_ms) = match schedule {
        Schedule::Parallel(n) => (n, 0),
        Schedule::Every { count, gap_ms } => (count, gap_ms),
    };
    let connected = Arc::new(Barrier::new(count + 1));
    let go = Arc::new(Barrier::new(count + 1));
    let start = Arc::new(OnceLock::<Instant>::new());
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let (connected, go, start) = (connected.clone(), go.clone(), start.clone());
            let port = ports[i % ports.len()];
            std::thread::spawn(move || {
                let conn = TcpStream::connect(("127.0.0.1", port));
                connected.wait();
                go.wait();
                let t0 = *start.get().expect("start set before go");
                wait_until(t0 + Duration::from_millis(gap_ms * i as u64));
                let sent = Instant::now();
                let (status, retry_after) = conn.map_or((0, None), |s| exchange(s, i));
                Outcome {
                    status,
                    done_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    took_ms: sent.elapsed().as_secs_f64() * 1000.0,
                    retry_after,
                }
            })
        })
        .collect();
    connected.wait();
    std::thread::sleep(Duration::from_millis(200));
    let _ = start.set(Instant::now());
    go.wait();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

fn wait_until(when: Instant) {
    if let Some(wait) = when.checked_duration_since(Instant::now() + Duration::from_millis(2)) {
        std::thread::sleep(wait);
    }
    while Instant::now() < when {
        std::hint::spin_loop();
    }
}

/// One `GET` with `Connection: close`, read to the end (10 s at most): status, Retry-After.
fn exchange(mut s: TcpStream, i: usize) -> (u16, Option<String>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET /r{i} HTTP/1.1\r\nHost: limit.test\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, None);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let retry = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after")
                .then(|| v.trim().to_string())
        });
    (common::status_of(&text), retry)
}

fn trace(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}:{}@{:.0}", i % 2, o.status, o.done_ms))
        .collect::<Vec<_>>()
        .join(" ")
}

fn count(outcomes: &[Outcome], status: u16) -> usize {
    outcomes.iter().filter(|o| o.status == status).count()
}

/// Sorted completion times of the 200s.
fn ok_times(outcomes: &[Outcome]) -> Vec<f64> {
    let mut t: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.status == 200)
        .map(|o| o.done_ms)
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

/// The statuses, as a sorted multiset, are `want` (status, how many); the 200s finish at
/// `times` (ms, sorted) within the tolerance; every other answer comes at once.
fn assert_trace(name: &str, out: &[Outcome], want: &[(u16, usize)], times: &[f64]) {
    eprintln!("== {name}\n   fleet: {}", trace(out));
    for (status, n) in want {
        assert_eq!(count(out, *status), *n, "{name}: {status}s: {}", trace(out));
    }
    assert_eq!(
        want.iter().map(|w| w.1).sum::<usize>(),
        out.len(),
        "{name}: unexpected statuses: {}",
        trace(out)
    );
    let got = ok_times(out);
    assert_eq!(got.len(), times.len(), "{name}: {}", trace(out));
    for (g, w) in got.iter().zip(times) {
        assert!(
            (g - w).abs() <= DELAY_TOLERANCE_MS,
            "{name}: a 200 done at {g:.0} ms, nginx at {w:.0} ms: {}",
            trace(out)
        );
    }
    for o in out.iter().filter(|o| o.status != 200) {
        assert!(
            o.done_ms < AT_ONCE_MS,
            "{name}: a {} took {:.0} ms: {}",
            o.status,
            o.done_ms,
            trace(out)
        );
    }
}

/// A fleet on a fresh Redis with the zones `z` (2r/s), `z1` (1r/s), `z10` (10r/s) and
/// `m` (1r/m), all stored in Redis, and `plugins` on the route; waits until both nodes share.
/// `store_timeout` is 1 s here, not the default 50 ms: a loaded 2-core CI machine can stall a
/// process that long, and a trace decided partly on local state would not be the fleet's.
/// (The 50 ms default is what `a_redis_that_stops_answering_costs_at_most_store_timeout`
/// measures.)
fn fleet_on(redis: &Redis, plugins: &str) -> Fleet {
    let url = redis.url();
    let zones = format!(
        "z: {{key: client_ip, rate: 2r/s, store: '{url}', store_timeout: 1s}}, \
         z1: {{key: client_ip, rate: 1r/s, store: '{url}', store_timeout: 1s}}, \
         z10: {{key: client_ip, rate: 10r/s, store: '{url}', store_timeout: 1s}}, \
         m: {{key: client_ip, rate: 1r/m, store: '{url}', store_timeout: 1s}}"
    );
    let fleet = Fleet::start(&zones, plugins);
    fleet.wait_logs(&format!("limit zone z: sharing the zone through {url}"));
    fleet
}

// ---------------------------------------------------------------------------------------
// the NGINX.md traces across two nodes

#[test]
fn rate_only_is_one_limit_for_the_fleet() {
    let _serial = serial();
    let redis = Redis::start();
    let fleet = fleet_on(&redis, "limit_req: {zone: z}");
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    fleet.assert_shared("rate only");
    // Two nodes on local zones would pass 2; one nginx (and the fleet) passes 1.
    assert_trace("rate=2r/s, 6 parallel", &out, &[(200, 1), (503, 5)], &[0.0]);
    assert!(
        out.iter()
            .filter(|o| o.status == 503)
            .all(|o| o.retry_after.as_deref() == Some("1")),
        "Retry-After: {out:?}"
    );
    // Both nodes answered.
    assert!(out.iter().step_by(2).any(|o| o.status == 503));
    assert!(out.iter().skip(1).step_by(2).any(|o| o.status == 503));
}

#[test]
fn burst_nodelay_and_delay_across_nodes() {
    let _serial = serial();
    let redis = Redis::start();
    for (name, plugins, times) in [
        (
            "rate=2r/s burst=4, 6 parallel",
            "limit_req: {zone: z, burst: 4}",
            vec![0.0, 500.0, 1000.0, 1500.0, 2000.0],
        ),
        (
            "rate=2r/s burst=4 nodelay, 6 parallel",
            "limit_req: {zone: z, burst: 4, nodelay: true}",
            vec![0.0; 5],
        ),
        (
            "rate=2r/s burst=4 delay=2, 6 parallel",
            "limit_req: {zone: z, burst: 4, delay: 2}",
            vec![0.0, 0.0, 0.0, 500.0, 1000.0],
        ),
    ] {
        let fleet = fleet_on(&redis, plugins);
        let out = run(&fleet.ports(), Schedule::Parallel(6));
        fleet.assert_shared(name);
        assert_trace(name, &out, &[(200, 5), (503, 1)], &times);
        // The next scenario starts from an empty bucket: burst 4 at 2r/s drains in 2.5 s.
        drop(fleet);
        std::thread::sleep(Duration::from_millis(2600));
    }
}

#[test]
fn status_429_dry_run_and_one_per_minute() {
    let _serial = serial();
    let redis = Redis::start();
    let fleet = fleet_on(&redis, "limit_req: {zone: z, status: 429}");
    let out = run(&fleet.ports(), Schedule::Parallel(3));
    fleet.assert_shared("429");
    assert_trace(
        "rate=2r/s status=429, 3 parallel",
        &out,
        &[(200, 1), (429, 2)],
        &[0.0],
    );
    drop(fleet);

    std::thread::sleep(Duration::from_millis(600));
    let fleet = fleet_on(&redis, "limit_req: {zone: z, burst: 2, dry_run: true}");
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    fleet.assert_shared("dry_run");
    assert_trace(
        "rate=2r/s burst=2 dry_run, 6 parallel",
        &out,
        &[(200, 6)],
        &[0.0; 6],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fleet.stderr().contains("would reject (dry run)") {
        assert!(
            Instant::now() < deadline,
            "no dry-run log:\n{}",
            fleet.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(fleet);

    // 1r/m: the first node passes, the second says when to come back (62.5 s, see
    // limit_req.rs).
    let fleet = fleet_on(&redis, "limit_req: {zone: m}");
    let ports = fleet.ports();
    let first = run(&ports[..1], Schedule::Parallel(1));
    assert_eq!(first[0].status, 200, "{first:?}");
    let second = run(&ports[1..], Schedule::Parallel(1));
    fleet.assert_shared("1r/m");
    assert_eq!(second[0].status, 503, "{second:?}");
    let retry: u64 = second[0].retry_after.as_deref().unwrap().parse().unwrap();
    assert!((62..=63).contains(&retry), "Retry-After {retry}");
}

#[test]
fn two_zones_restore_across_nodes() {
    let _serial = serial();
    let redis = Redis::start();
    let fleet = fleet_on(
        &redis,
        "limit_req: {zone: z, burst: 4}, limit_req: {zone: z1, burst: 2, nodelay: true}",
    );
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    // nginx: 200 at 0, 0.5 and 1.0 s, 3×503 at once. Two nodes check the zones of their
    // requests concurrently, as nginx workers do, so which three of the five requests that
    // pass z also pass z1 is a race: the 200s wait 0, then two of 0.5 … 2.0 s.
    eprintln!("== two zones, 6 parallel\n   fleet: {}", trace(&out));
    fleet.assert_shared("two zones");
    assert_eq!(count(&out, 200), 3, "{}", trace(&out));
    assert_eq!(count(&out, 503), 3, "{}", trace(&out));
    // Even the first 200 may be one that waited (the race above), so only the 0.5 s grid of
    // the z delays is asserted.
    let times = ok_times(&out);
    for t in &times {
        let step = (t / 500.0).round();
        assert!(
            step <= 4.0 && (t - step * 500.0).abs() <= DELAY_TOLERANCE_MS,
            "{}",
            trace(&out)
        );
    }
    // The zones checked before the one that rejected were not charged: after the z1 bucket
    // drained (3 s at 1r/s), z holds only the three passes, which drained by then too, so
    // one request per node passes z at once and one of them z1.
    std::thread::sleep(Duration::from_millis(3100));
    let out = run(&fleet.ports(), Schedule::Parallel(2));
    assert_eq!(count(&out, 200), 2, "{}", trace(&out));
    assert!(ok_times(&out)[1] < 900.0, "{}", trace(&out));
}

/// Every second probe lands exactly on the 100 ms edge of 10r/s (see limit_req_nginx.rs):
/// nginx passes 26–30 of 60.
#[test]
fn ten_per_second_probed_every_50ms_alternating() {
    let _serial = serial();
    let redis = Redis::start();
    let fleet = fleet_on(&redis, "limit_req: {zone: z10}");
    let out = run(
        &fleet.ports(),
        Schedule::Every {
            count: 60,
            gap_ms: 50,
        },
    );
    eprintln!(
        "== rate=10r/s, 60 requests one every 50 ms\n   fleet: {}",
        trace(&out)
    );
    fleet.assert_shared("10r/s");
    let passed = count(&out, 200);
    assert_eq!(passed + count(&out, 503), 60, "{}", trace(&out));
    // nginx passes 26–30. Per node the gaps would be 100 ms and every request would pass
    // (60): the upper bound is what shows the limit is the fleet's. The lower bound is looser
    // than nginx's because a loaded 2-core machine delays some sends by 50–100 ms, bunching
    // them behind a pass.
    assert!(
        (20..=31).contains(&passed),
        "passed {passed}: {}",
        trace(&out)
    );
    // Both nodes passed some: the limit is the fleet's, not a node's.
    assert!(out.iter().step_by(2).any(|o| o.status == 200));
    assert!(out.iter().skip(1).step_by(2).any(|o| o.status == 200));
}

// ---------------------------------------------------------------------------------------
// Redis down, slow, back

const UNREACHABLE: &str = "limit zone z: redis unreachable (";
const BACK: &str = "limit zone z: redis reachable again";

#[test]
fn redis_killed_then_restarted() {
    let _serial = serial();
    let mut redis = Redis::start();
    let fleet = fleet_on(&redis, "limit_req: {zone: z}");
    fleet.wait_gauge("z", 0.0);
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    fleet.assert_shared("before the kill");
    assert_trace("shared", &out, &[(200, 1), (503, 5)], &[0.0]);

    redis.kill();
    std::thread::sleep(Duration::from_millis(600));
    // Each node decides on its own: one pass per node, none failed or held up.
    for round in 0..2 {
        let out = run(&fleet.ports(), Schedule::Parallel(6));
        assert_trace(
            &format!("redis down, round {round}"),
            &out,
            &[(200, 2), (503, 4)],
            &[0.0, 0.0],
        );
        assert!(
            out.iter().all(|o| o.took_ms < AT_ONCE_MS),
            "a request waited for the dead Redis: {}",
            trace(&out)
        );
        std::thread::sleep(Duration::from_millis(600));
    }
    fleet.wait_logs(UNREACHABLE);
    assert_eq!(fleet.log_counts(UNREACHABLE), [1, 1], "{}", fleet.stderr());
    assert!(
        fleet.nodes[0]
            .stderr()
            .lines()
            .any(|l| l.contains(UNREACHABLE) && l.ends_with("; deciding locally")),
        "{}",
        fleet.stderr()
    );
    fleet.wait_gauge("z", 1.0);

    redis.restart();
    fleet.wait_logs(BACK);
    fleet.wait_gauge("z", 0.0);
    std::thread::sleep(Duration::from_millis(600));
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    assert_trace("shared again", &out, &[(200, 1), (503, 5)], &[0.0]);
    assert_eq!(fleet.log_counts(UNREACHABLE), [1, 1], "{}", fleet.stderr());
    assert_eq!(fleet.log_counts(BACK), [1, 1], "{}", fleet.stderr());
}

#[test]
fn a_redis_that_stops_answering_costs_at_most_store_timeout() {
    let _serial = serial();
    let redis = Redis::start();
    let url = redis.url();
    let fleet = Fleet::start(
        &format!("z: {{key: client_ip, rate: 2r/s, store: '{url}', store_timeout: 100ms}}"),
        "limit_req: {zone: z}",
    );
    fleet.wait_logs("limit zone z: sharing the zone through");
    // Redis busy for 2 s: every request gives up on it after 100 ms and decides locally.
    let _busy = redis.send(&["DEBUG", "SLEEP", "2"]);
    std::thread::sleep(Duration::from_millis(50));
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    assert_trace("redis asleep", &out, &[(200, 2), (503, 4)], &[0.0, 0.0]);
    assert!(
        out.iter().all(|o| o.took_ms < 350.0),
        "a request waited past store_timeout: {out:?}"
    );
    fleet.wait_logs("limit zone z: redis unreachable (no answer within store_timeout 100ms)");
    fleet.wait_gauge("z", 1.0);
    // Awake again: the nodes share again.
    fleet.wait_logs(BACK);
    fleet.wait_gauge("z", 0.0);
    std::thread::sleep(Duration::from_millis(600));
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    assert_trace("awake", &out, &[(200, 1), (503, 5)], &[0.0]);
}

#[test]
fn a_zone_whose_redis_never_answered_decides_locally() {
    let _serial = serial();
    let port = free_port();
    let fleet = Fleet::start(
        &format!("z: {{key: client_ip, rate: 2r/s, store: 'redis://127.0.0.1:{port}/0'}}"),
        "limit_req: {zone: z}",
    );
    fleet.wait_logs(UNREACHABLE);
    fleet.wait_gauge("z", 1.0);
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    assert_trace("no redis", &out, &[(200, 2), (503, 4)], &[0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------
// rediss:// with a password

/// A test CA and a leaf for 127.0.0.1 and localhost, as PEM files in `dir`.
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weir redis test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

#[test]
fn rediss_with_a_password_from_the_environment() {
    let _serial = serial();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(certs.path());
    let port = free_port();
    let password = "s3cret-fleet-pw";
    let (ca, cert, key) = (
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let _redis = Redis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ],
    );
    let zones = format!(
        "z: {{key: client_ip, rate: 2r/s, store: 'rediss://:${{REDIS_PASSWORD}}@127.0.0.1:{port}/0', \
         store_timeout: 1s}}"
    );
    let fleet = Fleet::start_with_env(
        &zones,
        "limit_req: {zone: z}",
        &[("REDIS_PASSWORD", password), ("SSL_CERT_FILE", &ca)],
    );
    fleet.wait_logs(&format!(
        "limit zone z: sharing the zone through rediss://127.0.0.1:{port}/0"
    ));
    let out = run(&fleet.ports(), Schedule::Parallel(6));
    fleet.assert_shared("rediss");
    assert_trace("rediss", &out, &[(200, 1), (503, 5)], &[0.0]);
    assert!(!fleet.stderr().contains(password), "{}", fleet.stderr());

    // A wrong password: the zone decides locally and says why, without the password.
    let wrong = Fleet::start_with_env(
        &zones,
        "limit_req: {zone: z}",
        &[("REDIS_PASSWORD", "wrong-pw-123"), ("SSL_CERT_FILE", &ca)],
    );
    wrong.wait_logs(UNREACHABLE);
    let out = run(&wrong.ports(), Schedule::Parallel(2));
    assert_eq!(count(&out, 200), 2, "{}", trace(&out));
    assert!(
        !wrong.stderr().contains("wrong-pw-123"),
        "{}",
        wrong.stderr()
    );
    // No CA to verify the server with: refused too.
    let untrusted = Fleet::start_with_env(
        &zones,
        "limit_req: {zone: z}",
        &[
            ("REDIS_PASSWORD", password),
            ("SSL_CERT_FILE", "/nonexistent.pem"),
        ],
    );
    untrusted.wait_logs(UNREACHABLE);
}
