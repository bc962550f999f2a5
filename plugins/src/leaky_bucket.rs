//! nginx's `limit_req` arithmetic, exactly: integer milli-requests and milliseconds.
//!
//! Per key a zone keeps `excess` (milli-requests above the rate) and `last` (ms). A request
//! arriving `ms` after `last` drains `rate * ms / 1000` and adds 1000; more than
//! `burst * 1000` rejects and leaves the state as it was; otherwise the state is charged
//! and the request waits `(excess - delay * 1000) * 1000 / rate` ms when that is positive.
//! See `ngx_http_limit_req_lookup` and `ngx_http_limit_req_account`.

/// A key's bucket: nginx's `excess` and `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// Milli-requests above the rate.
    pub excess: u64,
    /// Time of the last charged request, in the zone's milliseconds.
    pub last: u64,
}

/// The limits one `limit_req` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLimits {
    /// Milli-requests per second (`2r/s` → 2000, `30r/m` → 500).
    pub rate: u64,
    /// Requests allowed above the rate.
    pub burst: u64,
    /// Requests of the burst served without waiting: 0 by default, `burst` with `nodelay`,
    /// `N` with `delay: N`.
    pub delay: u64,
}

/// What the bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through after `delay_ms`; `state` is the bucket after charging it.
    Pass {
        /// The new state to store.
        state: BucketState,
        /// How long the request waits (0 = at once).
        delay_ms: u64,
    },
    /// Refuse it; the state is unchanged. `retry_after_ms` is when the same request would
    /// pass if nothing else arrived.
    Reject {
        /// Time until the bucket would accept this request.
        retry_after_ms: u64,
    },
}

/// Decides one request arriving at `now` (ms) for a bucket in `state` (`None`: the key's
/// first request).
pub fn decide(state: Option<BucketState>, now: u64, limits: BucketLimits) -> Verdict {
    let Some(prev) = state else {
        // A key seen for the first time passes with excess 0 (nginx adds the node so).
        let state = BucketState {
            excess: 0,
            last: now,
        };
        return Verdict::Pass {
            state,
            delay_ms: wait_ms(0, limits),
        };
    };
    // A clock that went backwards counts as no time passed.
    let ms = now.saturating_sub(prev.last);
    let drained = limits.rate.saturating_mul(ms) / 1000;
    let excess = (prev.excess + 1000).saturating_sub(drained);
    let burst = limits.burst.saturating_mul(1000);
    if excess > burst {
        return Verdict::Reject {
            retry_after_ms: retry_after_ms(excess, limits),
        };
    }
    let last = if ms != 0 { now } else { prev.last };
    Verdict::Pass {
        state: BucketState { excess, last },
        delay_ms: wait_ms(excess, limits),
    }
}

/// When a request that found `excess` (above `burst * 1000`) would pass if nothing else
/// arrived: once `excess - rate * t / 1000 <= burst * 1000`.
pub fn retry_after_ms(excess: u64, limits: BucketLimits) -> u64 {
    let over = excess.saturating_sub(limits.burst.saturating_mul(1000));
    over.saturating_mul(1000).div_ceil(limits.rate.max(1))
}

/// How long a request that left the bucket at `excess` waits:
/// `(excess - delay * 1000) * 1000 / rate` when positive.
pub fn wait_ms(excess: u64, limits: BucketLimits) -> u64 {
    let free = limits.delay.saturating_mul(1000);
    excess.saturating_sub(free).saturating_mul(1000) / limits.rate.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `times` (ms) through one bucket; returns `Some(delay)` per pass, `None` per reject.
    fn trace(limits: BucketLimits, times: &[u64]) -> Vec<Option<u64>> {
        let mut state = None;
        times
            .iter()
            .map(|&t| match decide(state, t, limits) {
                Verdict::Pass { state: s, delay_ms } => {
                    state = Some(s);
                    Some(delay_ms)
                }
                Verdict::Reject { .. } => None,
            })
            .collect()
    }

    fn l(rate: u64, burst: u64, delay: u64) -> BucketLimits {
        BucketLimits { rate, burst, delay }
    }

    #[test]
    fn rate_only_six_parallel() {
        // NGINX.md: rate=2r/s, 6 parallel → 1×200, 5×503.
        assert_eq!(
            trace(l(2000, 0, 0), &[0; 6]),
            [Some(0), None, None, None, None, None]
        );
    }

    #[test]
    fn burst_delays_the_excess() {
        // rate=2r/s burst=4 → 200 at once, 4×200 at 500/1000/1500/2000 ms, 1×503.
        assert_eq!(
            trace(l(2000, 4, 0), &[0; 6]),
            [Some(0), Some(500), Some(1000), Some(1500), Some(2000), None]
        );
    }

    #[test]
    fn nodelay_serves_the_burst_at_once() {
        // burst=4 nodelay (delay = burst) → 5×200 at once, 1×503.
        assert_eq!(
            trace(l(2000, 4, 4), &[0; 6]),
            [Some(0), Some(0), Some(0), Some(0), Some(0), None]
        );
    }

    #[test]
    fn delay_n_serves_n_at_once_then_waits() {
        // burst=4 delay=2 → 3×200 at once, 2×200 at 500 and 1000 ms, 1×503.
        assert_eq!(
            trace(l(2000, 4, 2), &[0; 6]),
            [Some(0), Some(0), Some(0), Some(500), Some(1000), None]
        );
    }

    #[test]
    fn ten_per_second_probed_every_50ms_alternates() {
        // rate=10r/s, 60 requests one every 50 ms → pass/reject alternately: 30×200.
        let times: Vec<u64> = (0..60).map(|i| i * 50).collect();
        let out = trace(l(10_000, 0, 0), &times);
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 30);
        assert!(out.iter().step_by(2).all(|o| o.is_some()));
    }

    #[test]
    fn one_per_minute_rounds_like_nginx() {
        // 1r/m = 1000/60 = 16 milli-requests/s: the next request passes after 62.5 s.
        let rate = crate::units::parse_rate("1r/m").unwrap().milli_per_sec;
        assert_eq!(rate, 16);
        let first = decide(None, 0, l(rate, 0, 0));
        let Verdict::Pass { state, .. } = first else {
            panic!("first passes")
        };
        assert_eq!(
            decide(Some(state), 62_499, l(rate, 0, 0)),
            Verdict::Reject { retry_after_ms: 63 }
        );
        assert!(matches!(
            decide(Some(state), 62_500, l(rate, 0, 0)),
            Verdict::Pass { .. }
        ));
        assert_eq!(
            decide(Some(state), 1_000, l(rate, 0, 0)),
            Verdict::Reject {
                retry_after_ms: 61_500
            }
        );
    }

    #[test]
    fn rejection_leaves_state_and_zero_ms_keeps_last() {
        let s = BucketState {
            excess: 1000,
            last: 100,
        };
        assert!(matches!(
            decide(Some(s), 100, l(2000, 1, 0)),
            Verdict::Reject { .. }
        ));
        // ms = 0: excess grows, last stays.
        let Verdict::Pass { state, delay_ms } = decide(Some(s), 100, l(2000, 2, 0)) else {
            panic!()
        };
        assert_eq!(
            state,
            BucketState {
                excess: 2000,
                last: 100
            }
        );
        assert_eq!(delay_ms, 1000);
    }

    #[test]
    fn clock_going_backwards_counts_as_no_time() {
        let s = BucketState {
            excess: 0,
            last: 5_000,
        };
        let Verdict::Pass { state, .. } = decide(Some(s), 1_000, l(2000, 1, 0)) else {
            panic!()
        };
        assert_eq!(
            state,
            BucketState {
                excess: 1000,
                last: 5_000
            }
        );
    }

    #[test]
    fn draining_never_goes_below_zero() {
        let s = BucketState {
            excess: 3000,
            last: 0,
        };
        let Verdict::Pass { state, delay_ms } = decide(Some(s), 1_000_000, l(2000, 0, 0)) else {
            panic!()
        };
        assert_eq!(
            state,
            BucketState {
                excess: 0,
                last: 1_000_000
            }
        );
        assert_eq!(delay_ms, 0);
    }
}
