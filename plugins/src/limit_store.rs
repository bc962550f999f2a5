//! A `limits:` zone kept in Redis (`store: "redis://host:port/db"`), so a fleet of weir nodes
//! enforces one limit: nginx Plus `zone_sync`, without the Plus.
//!
//! * **One decision, one script.** A request runs [`CHECK`] (EVALSHA) on the zone's one
//!   multiplexed connection: it reads the key's bucket, applies SPEC §5 (the arithmetic of
//!   [`crate::leaky_bucket::decide`]) with Redis' own clock (`TIME` inside the script, so nodes
//!   with skewed clocks agree) and writes the charged bucket back, atomically. A bucket is the
//!   string `"excess:last"` (milli-requests, ms of Redis' clock) under
//!   `weir:limit_req:{zone}:{key}`, expiring (`SET … PX`) when it would be empty (`excess +
//!   1000` drained) plus [`EXPIRY_MARGIN_MS`]: a key that expired is then exactly a key never
//!   seen. A rejection writes nothing.
//! * **Undo.** When a later `limit_req` of the same request rejects, [`UNDO`] puts the bucket
//!   back as it was if nobody charged it since, else takes back only this request's 1000 (as
//!   the local zone does). It is queued in the background: the rejection is not held up.
//! * **Fallback.** Redis is given `store_timeout` (default 50 ms) per decision, counted from
//!   the moment the zone is asked. Past it, or on any error, the zone decides on its local
//!   buckets (requests are never failed because of Redis), logs `limit zone X: redis
//!   unreachable (…); deciding locally` once (warn), and sets `weir_limit_store_fallback{zone}`
//!   to 1. While falling back, requests do not wait for Redis at all: a background task on the
//!   store's own thread probes every [`PROBE_INTERVAL`] (a new connection that must run the
//!   decision script on a probe key within `store_timeout`, so a Redis that answers PING but
//!   cannot write stays out); when it answers, the zone shares again (`limit zone X: redis
//!   reachable again; …`, info, once; gauge 0). A failure seen on a connection that was
//!   already replaced changes nothing.

use crate::leaky_bucket::{BucketLimits, BucketState};
use crate::limit_script::parse_check;
pub use crate::limit_script::{SharedDecision, CHECK, EXPIRY_MARGIN_MS, MAX_RATE, UNDO};
use crate::metrics;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// `store_timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// How often an unreachable Redis is tried again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A new connection (TCP, TLS, AUTH, SELECT) may take this long; it happens in the
/// background, never on a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `limits.NAME.store` and `store_timeout`, validated. Equal specs keep a zone (and its
/// connection) across reloads.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSpec {
    url: String,
    timeout: Duration,
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSpec")
            .field("url", &self.url_for_log())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StoreSpec {
    /// Checks `url` (`redis://[user:password@]host:port/db`, or `rediss://` for TLS against
    /// the system's roots) without connecting. `timeout` comes from [`StoreSpec::timeout_of`].
    pub fn parse(url: &str, timeout: Duration) -> Result<StoreSpec, String> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "`{}`: expected redis://host:port/db or rediss://host:port/db",
                redact(url)
            ));
        }
        if url.contains('#') {
            return Err(format!(
                "`{}`: no #fragment: rediss:// always verifies the server against the system's \
                 roots (SSL_CERT_FILE / SSL_CERT_DIR add a private CA)",
                redact(url)
            ));
        }
        Client::open(url).map_err(|e| format!("`{}`: {e}", redact(url)))?;
        Ok(StoreSpec {
            url: url.to_string(),
            timeout,
        })
    }

    /// `store_timeout`: [`DEFAULT_TIMEOUT`] when not given, else from 1 ms to 10 s.
    pub fn timeout_of(timeout: Option<Duration>) -> Result<Duration, String> {
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
            return Err("must be from 1ms to 10s".to_string());
        }
        Ok(timeout)
    }

    /// The URL without its user and password, for logs and `/status`.
    pub fn url_for_log(&self) -> String {
        redact(&self.url)
    }

    /// How long a request waits for Redis at most.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `scheme://user:password@host…` → `scheme://host…`.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// The zone shares through Redis.
const SHARED: u8 = 0;
/// Not connected yet: requests wait (within `store_timeout`) for the first connection.
const CONNECTING: u8 = 1;
/// Redis slow or unreachable: the zone decides locally, the prober tries again.
const FALLBACK: u8 = 2;

/// The thread every Redis store's connections and probes run on (a small current-thread
/// runtime of its own, so they live on whatever runtime asked, and across reloads).
fn runtime() -> Result<&'static tokio::runtime::Handle, String> {
    static RT: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the limit store runtime: {e}"))?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("weir-limit-store".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the limit store thread: {e}"))?;
        Ok(handle)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Which store owns `weir_limit_store_fallback{zone}` now: a reload may build the zone anew
/// while the old one still finishes its requests.
fn gauge_owners() -> &'static Mutex<HashMap<String, u64>> {
    static OWNERS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    OWNERS.get_or_init(Default::default)
}

struct Inner {
    zone: String,
    url_for_log: String,
    timeout: Duration,
    client: Client,
    /// `weir:limit_req:{zone}:`.
    prefix: Vec<u8>,
    /// The connection requests use while sharing, numbered: a request that fails on an
    /// older connection than the current one (replaced meanwhile) changes nothing.
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    state: AtomicU8,
    /// Wakes the prober (a request saw Redis fail, or the store is closed).
    wake: Notify,
    /// Wakes requests waiting for the first connection.
    ready: Notify,
    closed: AtomicBool,
    id: u64,
}

impl Inner {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn set_gauge(&self, value: i64) {
        let owners = gauge_owners().lock().unwrap_or_else(|p| p.into_inner());
        if owners.get(&self.zone) == Some(&self.id) {
            if let Ok(vec) = metrics::limit_store_fallback() {
                if let Ok(g) = vec.get_metric_with_label_values(&[&self.zone]) {
                    g.set(value);
                }
            }
        }
    }

    /// The connection to use now, with its number.
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A request saw Redis fail on connection number `generation`: decide locally until
    /// the prober finds Redis again (unless that connection was already replaced).
    fn fail(&self, generation: u64, why: &str) {
        {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            match &*conn {
                Some((current, _)) if *current == generation => *conn = None,
                _ => return,
            }
        }
        if self
            .state
            .compare_exchange(SHARED, FALLBACK, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.set_gauge(1);
            log::warn!(
                "limit zone {}: redis unreachable ({why}); deciding locally",
                self.zone
            );
            self.wake.notify_one();
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// A new connection that runs the decision script within `store_timeout`.
    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let mut conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        for script in [&*CHECK, &*UNDO] {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                script.prepare_invoke().load_async(&mut conn),
            )
            .await
            .map_err(|_| format!("SCRIPT LOAD took over {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        }
        // The probe is a real decision (on a key no request has), so a Redis that answers
        // PING but cannot run or write (OOM, read-only replica) stays on fallback.
        let mut probe_key = b"weir:limit_probe:".to_vec();
        probe_key.extend_from_slice(self.zone.as_bytes());
        let started = Instant::now();
        tokio::time::timeout(
            self.timeout,
            CHECK
                .key(probe_key)
                .arg(1_000_000u64)
                .arg(0u64)
                .arg(EXPIRY_MARGIN_MS)
                .invoke_async::<Vec<i64>>(&mut conn),
        )
        .await
        .map_err(|_| format!("no answer within store_timeout {:?}", self.timeout))?
        .map_err(|e| e.to_string())?;
        log::debug!(
            "limit zone {}: redis answered in {:?}",
            self.zone,
            started.elapsed()
        );
        Ok(conn)
    }

    /// Waits (until `deadline`) while the first connection is being made.
    async fn wait_connected(&self, deadline: Instant) {
        let notified = self.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.state() == CONNECTING {
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

/// The background task: connects, and after a failure probes until Redis answers again.
async fn run(inner: Arc<Inner>) {
    // weir builds its config before it sets up its logger: wait for the logger (1 s at most)
    // so the first line about the store is not lost. Requests meanwhile wait for the first
    // connection within `store_timeout`, as always.
    let logger_by = Instant::now() + Duration::from_secs(1);
    while log::max_level() == log::LevelFilter::Off
        && Instant::now() < logger_by
        && !inner.closed.load(Ordering::Acquire)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut generation = 0u64;
    loop {
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        if inner.state() == SHARED {
            inner.wake.notified().await;
            continue;
        }
        match inner.connect().await {
            Ok(conn) => {
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                generation += 1;
                let was = {
                    let mut current = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
                    *current = Some((generation, conn));
                    inner.state.swap(SHARED, Ordering::AcqRel)
                };
                inner.set_gauge(0);
                inner.ready.notify_waiters();
                if was == FALLBACK {
                    log::info!(
                        "limit zone {}: redis reachable again; sharing the zone through {}",
                        inner.zone,
                        inner.url_for_log
                    );
                } else {
                    log::info!(
                        "limit zone {}: sharing the zone through {}",
                        inner.zone,
                        inner.url_for_log
                    );
                }
            }
            Err(why) => {
                if inner
                    .state
                    .compare_exchange(CONNECTING, FALLBACK, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    inner.set_gauge(1);
                    inner.ready.notify_waiters();
                    log::warn!(
                        "limit zone {}: redis unreachable ({why}); deciding locally",
                        inner.zone
                    );
                }
                let _ = tokio::time::timeout(PROBE_INTERVAL, inner.wake.notified()).await;
            }
        }
    }
}

/// A zone's Redis store: the connection, the fallback state and its prober.
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("zone", &self.inner.zone)
            .field("url", &self.inner.url_for_log)
            .field("fallback", &self.on_local_fallback())
            .finish()
    }
}

impl RedisStore {
    /// Starts connecting to `spec` in the background; never blocks. Until the first
    /// connection is made, requests wait for it within `store_timeout`.
    pub fn start(zone: &str, spec: &StoreSpec) -> Result<RedisStore, String> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let client = Client::open(spec.url.as_str())
            .map_err(|e| format!("`{}`: {e}", spec.url_for_log()))?;
        let rt = runtime()?;
        metrics::limit_store_fallback()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        gauge_owners()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(zone.to_string(), id);
        let mut prefix = b"weir:limit_req:".to_vec();
        prefix.extend_from_slice(zone.as_bytes());
        prefix.push(b':');
        let inner = Arc::new(Inner {
            zone: zone.to_string(),
            url_for_log: spec.url_for_log(),
            timeout: spec.timeout,
            client,
            prefix,
            conn: Mutex::new(None),
            state: AtomicU8::new(CONNECTING),
            wake: Notify::new(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            id,
        });
        inner.set_gauge(0);
        rt.spawn(run(inner.clone()));
        Ok(RedisStore { inner })
    }

    /// True while the zone decides on local state: Redis slow or unreachable, or not
    /// connected yet.
    pub fn on_local_fallback(&self) -> bool {
        self.inner.state() != SHARED
    }

    /// The Redis URL without credentials.
    pub fn url_for_log(&self) -> &str {
        &self.inner.url_for_log
    }

    /// The Redis key of a request key.
    pub fn redis_key(&self, key: &[u8]) -> Vec<u8> {
        self.inner.key(key)
    }

    /// Decides a request in Redis. `None`: Redis could not answer within `store_timeout`
    /// (counted from this call) or is known to be down; decide locally.
    pub async fn check(&self, key: &[u8], limits: BucketLimits) -> Option<SharedDecision> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.timeout;
        match inner.state() {
            FALLBACK => return None,
            CONNECTING => {
                inner.wait_connected(deadline).await;
                if inner.state() != SHARED {
                    return None;
                }
            }
            _ => {}
        }
        let (generation, mut conn) = inner.current()?;
        let answer = tokio::time::timeout_at(
            deadline,
            CHECK
                .key(inner.key(key))
                .arg(limits.rate.clamp(1, MAX_RATE))
                .arg(limits.burst.saturating_mul(1000))
                .arg(EXPIRY_MARGIN_MS)
                .invoke_async::<Vec<i64>>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(v)) => match parse_check(&v, limits) {
                Some(decision) => Some(decision),
                None => {
                    inner.fail(generation, &format!("unexpected script answer {v:?}"));
                    None
                }
            },
            Ok(Err(e)) => {
                inner.fail(generation, &e.to_string());
                None
            }
            Err(_) => {
                let why = format!("no answer within store_timeout {:?}", inner.timeout);
                inner.fail(generation, &why);
                None
            }
        }
    }

    /// Takes back a charge made in Redis (see [`UNDO`]), in the background: the rejected
    /// request that asks does not wait for Redis. The undo is queued on the connection after
    /// the request's own decisions; when Redis does not answer it within `store_timeout`,
    /// the charge stays and drains like any other.
    pub fn take_back(
        &self,
        key: &[u8],
        prev: Option<BucketState>,
        charged: BucketState,
        rate: u64,
    ) {
        let inner = self.inner.clone();
        if inner.state() != SHARED {
            return;
        }
        let Some((generation, conn)) = inner.current() else {
            return;
        };
        let key = inner.key(key);
        if let Ok(rt) = runtime() {
            rt.spawn(async move {
                undo(&inner, generation, conn, key, prev, charged, rate).await;
            });
        }
    }
}

/// Runs [`UNDO`] on `conn` (number `generation`); true when Redis answered.
async fn undo(
    inner: &Inner,
    generation: u64,
    mut conn: MultiplexedConnection,
    key: Vec<u8>,
    prev: Option<BucketState>,
    charged: BucketState,
    rate: u64,
) -> bool {
    let prev = prev.map_or_else(String::new, |p| format!("{}:{}", p.excess, p.last));
    let answer = tokio::time::timeout(
        inner.timeout,
        UNDO.key(key)
            .arg(format!("{}:{}", charged.excess, charged.last))
            .arg(prev)
            .arg(rate.clamp(1, MAX_RATE))
            .arg(EXPIRY_MARGIN_MS)
            .invoke_async::<i64>(&mut conn),
    )
    .await;
    match answer {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            inner.fail(generation, &e.to_string());
            false
        }
        Err(_) => {
            let why = format!("no answer within store_timeout {:?}", inner.timeout);
            inner.fail(generation, &why);
            false
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.wake.notify_one();
        let mut owners = gauge_owners().lock().unwrap_or_else(|p| p.into_inner());
        if owners.get(&inner.zone) == Some(&inner.id) {
            owners.remove(&inner.zone);
            if let Ok(vec) = metrics::limit_store_fallback() {
                let _ = vec.remove_label_values(&[&inner.zone]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaky_bucket::{decide, Verdict};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    #[test]
    fn urls_are_checked_and_redacted() {
        let s = StoreSpec::parse("redis://:secret@127.0.0.1:6379/2", DEFAULT_TIMEOUT).unwrap();
        assert_eq!(s.url_for_log(), "redis://127.0.0.1:6379/2");
        assert_eq!(s.timeout(), DEFAULT_TIMEOUT);
        assert!(!format!("{s:?}").contains("secret"));
        let s =
            StoreSpec::parse("rediss://user:p%40ss@redis.example:6380/0", DEFAULT_TIMEOUT).unwrap();
        assert_eq!(s.url_for_log(), "rediss://redis.example:6380/0");
        let e = StoreSpec::parse("unix:///tmp/r.sock", DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.contains("expected redis://"), "{e}");
        let e = StoreSpec::parse("http://:pw@x/", DEFAULT_TIMEOUT).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
        let e = StoreSpec::parse("rediss://:pw@x:1/0#insecure", DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.contains("SSL_CERT_FILE") && !e.contains("pw"), "{e}");
        let e = StoreSpec::parse("redis://:pw@127.0.0.1/zero", DEFAULT_TIMEOUT).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(StoreSpec::timeout_of(None), Ok(DEFAULT_TIMEOUT));
        let ms = Duration::from_millis;
        assert_eq!(StoreSpec::timeout_of(Some(ms(5))), Ok(ms(5)));
        assert!(StoreSpec::timeout_of(Some(Duration::ZERO)).is_err());
        assert!(StoreSpec::timeout_of(Some(Duration::from_secs(60))).is_err());
    }

    #[test]
    fn script_answers_become_verdicts() {
        let l = BucketLimits {
            rate: 2000,
            burst: 4,
            delay: 0,
        };
        let (v, prev) = parse_check(&[1, 2000, 10, 1000, 10], l).unwrap();
        assert_eq!(
            v,
            Verdict::Pass {
                state: BucketState {
                    excess: 2000,
                    last: 10
                },
                delay_ms: 1000
            }
        );
        assert_eq!(
            prev,
            Some(BucketState {
                excess: 1000,
                last: 10
            })
        );
        let (v, prev) = parse_check(&[1, 0, 10, -1, -1], l).unwrap();
        assert!(matches!(v, Verdict::Pass { delay_ms: 0, .. }));
        assert_eq!(prev, None);
        let (v, _) = parse_check(&[0, 5000, 10, 4000, 10], l).unwrap();
        assert_eq!(
            v,
            Verdict::Reject {
                retry_after_ms: 500
            }
        );
        assert!(parse_check(&[1, 2], l).is_none());
    }

    /// A tiny deterministic generator (no dependency for a test).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    const RATES: [u64; 7] = [16, 500, 1000, 2000, 10_000, 1_000_000, 1_000_000_000];

    /// The key expires when it would be empty: from then on the bucket decides exactly as a
    /// key never seen (what the script's PEXPIRE relies on).
    #[test]
    fn an_expired_bucket_is_a_new_one() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let limits = BucketLimits {
                rate: rng.pick(&RATES),
                burst: rng.pick(&[0, 1, 4, 20, 1000, u64::from(u32::MAX)]),
                delay: 0,
            };
            let excess = rng.below(limits.burst * 1000 + 1);
            let last = rng.below(1 << 42);
            let empty_after = ((excess + 1000) * 1000).div_ceil(limits.rate);
            let at = last + empty_after;
            let state = Some(BucketState { excess, last });
            assert_eq!(
                decide(state, at, limits),
                decide(None, at, limits),
                "{excess} {last} {limits:?}"
            );
        }
    }

    /// `redis-server` for the tests that need one: found on PATH, or installed with apt when
    /// root (`scripts/test.sh` installs it too).
    fn redis_server() -> PathBuf {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| {
            let find = || {
                std::env::var_os("PATH")
                    .into_iter()
                    .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .map(|d| d.join("redis-server"))
                    .chain([PathBuf::from("/usr/bin/redis-server")])
                    .find(|p| p.is_file())
            };
            if let Some(found) = find() {
                return found;
            }
            let root = std::fs::read_to_string("/proc/self/status")
                .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
                .unwrap_or(false);
            assert!(
                root,
                "redis-server is not installed and this test is not root: install it with \
                 `apt-get install redis-server` (the Redis limit store tests need it)"
            );
            let ok = Command::new("sh")
                .arg("-c")
                .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server")
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "`apt-get install redis-server` failed");
            find().expect("redis-server installed but not found")
        })
        .clone()
    }

    fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// A redis-server on `port`, nothing saved, killed on drop.
    struct Server(Child);

    impl Server {
        fn start(port: u16) -> Server {
            let child = Command::new(redis_server())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "redis never listened");
                std::thread::sleep(Duration::from_millis(10));
            }
            Server(child)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn connection(port: u16) -> MultiplexedConnection {
        Client::open(format!("redis://127.0.0.1:{port}/0"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The script against `decide`, on random traffic with its clock given: the same
    /// verdicts, states and previous states, for rates from 1r/m to 1000000r/s, bursts up to
    /// u32::MAX, time standing still, stepping back and jumping far.
    #[tokio::test]
    async fn the_script_is_decide_bit_for_bit() {
        let port = free_port();
        let _server = Server::start(port);
        let mut conn = connection(port).await;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut model: HashMap<u64, Option<BucketState>> = HashMap::new();
        let mut limits_of: HashMap<u64, BucketLimits> = HashMap::new();
        let mut now: u64 = 1_700_000_000_000;
        for _ in 0..3000 {
            let key = rng.below(12);
            let limits = *limits_of.entry(key).or_insert_with(|| BucketLimits {
                rate: rng.pick(&RATES),
                burst: rng.pick(&[0, 1, 4, 20, u64::from(u32::MAX)]),
                delay: rng.pick(&[0, 1, 2]),
            });
            now = match rng.below(10) {
                0..=3 => now,
                4..=7 => now + rng.below(700),
                8 => now.saturating_sub(rng.below(300)),
                _ => now + rng.below(10_000_000_000),
            };
            let state = model.entry(key).or_insert(None);
            let want = decide(*state, now, limits);
            let answer: Vec<i64> = CHECK
                .key(format!("k{key}"))
                .arg(limits.rate)
                .arg(limits.burst * 1000)
                .arg(3_600_000u64)
                .arg(now)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            let (got, prev) = parse_check(&answer, limits).unwrap();
            assert_eq!(got, want, "key {key} at {now}, {limits:?}, from {state:?}");
            assert_eq!(prev, *state, "key {key}");
            if let Verdict::Pass { state: s, .. } = want {
                *state = Some(s);
            }
        }
    }

    #[tokio::test]
    async fn keys_expire_when_empty_and_undo_restores_or_takes_back_its_own() {
        let port = free_port();
        let _server = Server::start(port);
        let mut conn = connection(port).await;
        // The undo computes expiry on Redis' clock: work near it.
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let t = secs * 1000 + micros / 1000;
        let check = |key: &'static str, now: u64| {
            let mut inv = CHECK.key(key);
            inv.arg(2000u64).arg(4000u64).arg(EXPIRY_MARGIN_MS).arg(now);
            inv
        };
        let pttl = |key: &'static str| redis::cmd("PTTL").arg(key).clone();
        let get = |key: &'static str| redis::cmd("GET").arg(key).clone();
        // Empty after (0 + 1000) * 1000 / 2000 = 500 ms, plus the margin.
        let _: Vec<i64> = check("a", t).invoke_async(&mut conn).await.unwrap();
        let ttl: i64 = pttl("a").query_async(&mut conn).await.unwrap();
        assert!((1400..=1500).contains(&ttl), "{ttl}");
        let a: Vec<i64> = check("a", t).invoke_async(&mut conn).await.unwrap();
        assert_eq!(a, [1, 1000, t as i64, 0, t as i64]);
        let ttl: i64 = pttl("a").query_async(&mut conn).await.unwrap();
        assert!((1900..=2000).contains(&ttl), "{ttl}");

        let undo = |charged: String, prev: String| {
            let mut inv = UNDO.key("a");
            inv.arg(charged)
                .arg(prev)
                .arg(2000u64)
                .arg(EXPIRY_MARGIN_MS);
            inv
        };
        // Nobody charged since: put back exactly, expiring when that bucket would be empty.
        let r: i64 = undo(format!("1000:{t}"), format!("0:{t}"))
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(r, 1);
        let v: String = get("a").query_async(&mut conn).await.unwrap();
        assert_eq!(v, format!("0:{t}"));
        let ttl: i64 = pttl("a").query_async(&mut conn).await.unwrap();
        assert!((1000..=1500).contains(&ttl), "{ttl}");
        // A new key charged and taken back is gone.
        let r: i64 = undo(format!("0:{t}"), String::new())
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(r, 1);
        let v: Option<String> = get("a").query_async(&mut conn).await.unwrap();
        assert_eq!(v, None);
        // Someone charged since: only this request's 1000 is taken back, the expiry kept.
        for _ in 0..3 {
            let _: Vec<i64> = check("a", t).invoke_async(&mut conn).await.unwrap();
        }
        let r: i64 = undo(format!("1000:{t}"), format!("0:{t}"))
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(r, 2);
        let v: String = get("a").query_async(&mut conn).await.unwrap();
        assert_eq!(v, format!("1000:{t}"));
        let ttl: i64 = pttl("a").query_async(&mut conn).await.unwrap();
        assert!((2000..=2500).contains(&ttl), "{ttl}");
        // Gone meanwhile: nothing to do.
        let r: i64 = UNDO
            .key("gone")
            .arg("0:1")
            .arg("")
            .arg(2000u64)
            .arg(EXPIRY_MARGIN_MS)
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(r, 0);
    }

    fn gauge(zone: &str) -> Option<i64> {
        metrics::limit_store_fallback()
            .ok()?
            .get_metric_with_label_values(&[zone])
            .ok()
            .map(|g| g.get())
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const L: BucketLimits = BucketLimits {
        rate: 2000,
        burst: 0,
        delay: 0,
    };

    /// Two zones on one Redis (two nodes): one limit for both, a charge taken back by one is
    /// gone for the other, and a zone without Redis decides on its own buckets.
    #[tokio::test]
    async fn zones_decide_and_take_back_in_redis() {
        use crate::key::{KeyPart, RequestKey};
        use crate::limit_zone::{LimitZone, ZoneSpec};
        let port = free_port();
        let _server = Server::start(port);
        let spec = ZoneSpec {
            key: RequestKey(vec![KeyPart::ClientIp]),
            rate: 2000,
            capacity: 100,
        };
        let store = StoreSpec::parse(
            &format!("redis://127.0.0.1:{port}/0"),
            Duration::from_secs(1),
        )
        .unwrap();
        let a = LimitZone::with_store("undo_unit", spec.clone(), Some(store.clone())).unwrap();
        let b = LimitZone::with_store("undo_unit", spec, Some(store)).unwrap();
        eventually("both share", || {
            !a.on_local_fallback() && !b.on_local_fallback()
        })
        .await;
        assert_eq!(
            a.store_url(),
            Some(format!("redis://127.0.0.1:{port}/0").as_str())
        );
        let (v, charge) = a.decide(b"k", L).await;
        assert!(matches!(v, Verdict::Pass { .. }));
        let charge = charge.unwrap();
        assert!(charge.shared && charge.prev.is_none());
        assert!(matches!(
            b.decide(b"k", L).await,
            (Verdict::Reject { .. }, None)
        ));
        // Taken back (in the background): the key is new again for b.
        a.take_back(b"k", charge);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let (Verdict::Pass { .. }, Some(c)) = b.decide(b"k", L).await {
                assert!(c.prev.is_none(), "{c:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the charge was never taken back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.is_empty() && b.is_empty(), "nothing decided locally");
    }

    /// Two stores on one Redis are two nodes of a fleet; without Redis a store answers `None`
    /// (decide locally) within its timeout, and comes back when Redis does.
    #[tokio::test]
    async fn stores_share_fall_back_and_come_back() {
        let port = free_port();
        let spec = StoreSpec::parse(
            &format!("redis://127.0.0.1:{port}/0"),
            Duration::from_millis(50),
        )
        .unwrap();
        let a = RedisStore::start("fleet_unit", &spec).unwrap();
        let b = RedisStore::start("fleet_unit", &spec).unwrap();
        // Nothing listens: local decisions, never slower than the timeout.
        let started = Instant::now();
        assert!(a.check(b"k", L).await.is_none());
        assert!(started.elapsed() < Duration::from_millis(500));
        eventually("a falls back", || a.on_local_fallback()).await;
        // The newest store (b) owns the series.
        eventually("gauge 1", || gauge("fleet_unit") == Some(1)).await;
        let started = Instant::now();
        assert!(a.check(b"k", L).await.is_none());
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "no wait on fallback"
        );

        let server = Server::start(port);
        eventually("a shares", || !a.on_local_fallback()).await;
        eventually("b shares", || !b.on_local_fallback()).await;
        assert_eq!(gauge("fleet_unit"), Some(0));
        let (first, prev) = a.check(b"k", L).await.unwrap();
        assert!(matches!(first, Verdict::Pass { .. }) && prev.is_none());
        let (second, _) = b.check(b"k", L).await.unwrap();
        assert!(
            matches!(second, Verdict::Reject { .. }),
            "one limit for both"
        );

        drop(server);
        for store in [&a, &b] {
            let started = Instant::now();
            assert!(store.check(b"k", L).await.is_none());
            assert!(started.elapsed() < Duration::from_millis(500));
            assert!(store.on_local_fallback());
        }
        assert_eq!(gauge("fleet_unit"), Some(1));
        let _server = Server::start(port);
        eventually("a shares again", || !a.on_local_fallback()).await;
        eventually("gauge 0", || gauge("fleet_unit") == Some(0)).await;
        // The zone that owns the series (the newest) removes it; an older one leaves it.
        let has_series = || {
            crate::metrics::registry().gather().iter().any(|f| {
                f.name() == "weir_limit_store_fallback"
                    && f.get_metric()
                        .iter()
                        .any(|m| m.get_label().iter().any(|l| l.value() == "fleet_unit"))
            })
        };
        drop(a);
        assert!(has_series());
        drop(b);
        assert!(!has_series());
    }
}
