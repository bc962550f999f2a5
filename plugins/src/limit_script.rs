//! The Lua scripts a Redis-backed `limits:` zone runs (`super::limit_store`): [`CHECK`]
//! decides exactly as [`crate::leaky_bucket::decide`] does, in Redis and with Redis' clock;
//! [`UNDO`] gives a charge back. Kept apart from the connection handling so the arithmetic can
//! be read (and tested bit for bit against `decide`) on its own.

use crate::leaky_bucket::{retry_after_ms, wait_ms, BucketLimits, BucketState, Verdict};
use redis::Script;
use std::sync::LazyLock;

/// A bucket is kept this long after it would be empty (clock steps, slow scripts).
pub const EXPIRY_MARGIN_MS: u64 = 1000;

/// The decision script. `KEYS[1]` the bucket; `ARGV` rate (milli-requests/s), burst * 1000,
/// expiry margin (ms), and (tests only: weir never sends it) a time in ms to use instead of
/// `TIME`. Returns `{passed, excess, last, previous excess (-1: none), previous
/// last}`. Lua numbers are doubles: every value stays an integer below 2^53 (burst is a u32,
/// rates are checked at load), and `rate * ms / 1000` is divided exactly (fmod), so the
/// result is nginx's integer arithmetic bit for bit.
pub static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
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

/// What Redis decided: the verdict and the bucket before it (to undo).
pub type SharedDecision = (Verdict, Option<BucketState>);

/// `{passed, excess, last, previous excess, previous last}` → the verdict.
pub fn parse_check(v: &[i64], limits: BucketLimits) -> Option<SharedDecision> {
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
