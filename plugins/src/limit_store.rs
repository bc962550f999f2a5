//! A `limits:` zone kept in Redis (`store: "redis://host:port/db"`), so a fleet of weir nodes
//! enforces one limit: nginx Plus `zone_sync`, without the Plus.
//!
//! * **One decision, one script.** A request runs [`CHECK`] (EVALSHA) on the zone's one
//!   multiplexed connection: it reads the key's bucket, applies SPEC §5 (the arithmetic of
//!   [`crate::leaky_bucket::decide`]) with Redis' own clock (`TIME` inside the script, so nodes
//!   with skewed clocks agree) and writes the charged bucket back, atomically. A bucket is the
//!   string `"excess:last"` (milli-requests, ms of Redis' clock) under
//!   `weir:limit_req:{zone}:{key}`, expiring when it would be empty (`excess + 1000` drained)
//!   plus [`EXPIRY_MARGIN_MS`]: a key that expired is then exactly a key never seen.
//! * **Undo.** When a later `limit_req` of the same request rejects, [`UNDO`] puts the bucket
//!   back as it was if nobody charged it since, else takes back only this request's 1000 (as the
//!   local zone does).
//! * **Fallback.** Redis is given `store_timeout` (default 50 ms) per request, counted from the
//!   moment the zone is asked. Past it, or on any error, the zone decides on its local state
//!   (requests are never failed because of Redis), logs `limit zone X: redis unreachable (…);
//!   deciding locally` once, and sets `weir_limit_store_fallback{zone}` to 1. A background
//!   task on the store's own thread then probes (a fresh connection running the same script on
//!   a probe key, which must answer within `store_timeout`) every [`PROBE_INTERVAL`]; when it
//!   answers, the zone shares again (logged once, gauge 0). While falling back, requests do
//!   not wait for Redis at all.

use crate::leaky_bucket::{retry_after_ms, wait_ms, BucketLimits, BucketState, Verdict};
use crate::metrics;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// `store_timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// How often an unreachable Redis is tried again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A bucket is kept this long after it would be empty (clock steps, slow scripts).
pub const EXPIRY_MARGIN_MS: u64 = 1000;

/// A new connection (TCP, TLS, AUTH, SELECT) may take this long; it happens in the
/// background, never on a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The decision script. `KEYS[1]` the bucket; `ARGV` rate (milli-requests/s), burst * 1000,
/// expiry margin (ms). Returns `{passed, excess, last, previous excess (-1: none), previous
/// last}`. Lua numbers are doubles: every value stays an integer below 2^53 (burst is a u32,
/// rates are checked at load), and `rate * ms / 1000` is divided exactly (fmod), so the
/// result is nginx's integer arithmetic bit for bit.
pub static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local e, last, pe, pl = 0, now, -1, -1
local cur = redis.call('GET', KEYS[1])
if cur then
  local ce, cl = string.match(cur, '^(%d+):(%d+)$')
  if ce then
    pe, pl = tonumber(ce), tonumber(cl)
    local ms = now - pl
    if ms < 0 then ms = 0 end
    local x = rate * ms
    local drained = x / 1000
    if x < 9007199254740992 then drained = (x - math.fmod(x, 1000)) / 1000 end
    e = pe - drained + 1000
    if e < 0 then e = 0 end
    if e > burst then return {0, e, pl, pe, pl} end
    if ms == 0 then last = pl end
  end
end
local ttl = last - now + math.ceil((e + 1000) * 1000 / rate) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%d:%d', e, last), 'PX', ttl)
return {1, e, last, pe, pl}
",
    )
});

/// The undo script. `KEYS[1]` the bucket; `ARGV` the bucket this request left (`e:l`), the
/// bucket before it (`""`: the key was new), rate, expiry margin. Returns 1 when the bucket
/// was put back, 2 when someone charged it since and only this request's 1000 was taken back,
/// 0 when it is gone.
pub static UNDO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
    return 1
  end
  local pe, pl = string.match(ARGV[2], '^(%d+):(%d+)$')
  if not pe then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = tonumber(pl) - now + math.ceil((tonumber(pe) + 1000) * 1000 / tonumber(ARGV[3]))
    + tonumber(ARGV[4])
  if ttl <= 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  end
  return 1
end
local ce, cl = string.match(cur, '^(%d+):(%d+)$')
if not ce then return 0 end
local e = tonumber(ce) - 1000
if e < 0 then e = 0 end
redis.call('SET', KEYS[1], string.format('%d:%s', e, cl), 'KEEPTTL')
return 2
",
    )
});

/// Largest rate (milli-requests/s) a Redis zone takes: Lua computes in doubles.
pub const MAX_RATE: u64 = (1 << 53) - 1;

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
    conn: Mutex<Option<MultiplexedConnection>>,
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

    /// A request saw Redis fail: decide locally until the prober finds it again.
    fn fail(&self, why: &str) {
        if self
            .state
            .compare_exchange(SHARED, FALLBACK, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
                *inner.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
                let was = inner.state.swap(SHARED, Ordering::AcqRel);
                inner.set_gauge(0);
                inner.ready.notify_waiters();
                if was == FALLBACK {
                    log::warn!(
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

/// What Redis decided: the verdict and the bucket before it (to undo).
pub type SharedDecision = (Verdict, Option<BucketState>);

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
        let mut conn = inner
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
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
                    inner.fail(&format!("unexpected script answer {v:?}"));
                    None
                }
            },
            Ok(Err(e)) => {
                inner.fail(&e.to_string());
                None
            }
            Err(_) => {
                inner.fail(&format!(
                    "no answer within store_timeout {:?}",
                    inner.timeout
                ));
                None
            }
        }
    }

    /// Takes back a charge made in Redis (see [`UNDO`]). False when Redis did not answer
    /// within `store_timeout`: the charge stays and drains like any other.
    pub async fn take_back(
        &self,
        key: &[u8],
        prev: Option<BucketState>,
        charged: BucketState,
        rate: u64,
    ) -> bool {
        let inner = &*self.inner;
        if inner.state() != SHARED {
            return false;
        }
        let Some(mut conn) = inner.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return false;
        };
        let prev = prev.map_or_else(String::new, |p| format!("{}:{}", p.excess, p.last));
        let answer = tokio::time::timeout(
            inner.timeout,
            UNDO.key(inner.key(key))
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
                inner.fail(&e.to_string());
                false
            }
            Err(_) => {
                inner.fail(&format!(
                    "no answer within store_timeout {:?}",
                    inner.timeout
                ));
                false
            }
        }
    }
}

/// `{passed, excess, last, previous excess, previous last}` → the verdict.
fn parse_check(v: &[i64], limits: BucketLimits) -> Option<SharedDecision> {
    let [passed, excess, last, pe, pl] = v else {
        return None;
    };
    let excess = u64::try_from(*excess).ok()?;
    let last = u64::try_from(*last).ok()?;
    let prev = match (u64::try_from(*pe), u64::try_from(*pl)) {
        (Ok(excess), Ok(last)) => Some(BucketState { excess, last }),
        _ => None,
    };
    let verdict = if *passed == 1 {
        Verdict::Pass {
            state: BucketState { excess, last },
            delay_ms: wait_ms(excess, limits),
        }
    } else {
        Verdict::Reject {
            retry_after_ms: retry_after_ms(excess, limits),
        }
    };
    Some((verdict, prev))
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
}
