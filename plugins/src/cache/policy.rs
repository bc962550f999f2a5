//! What may be stored, and for how long: nginx's `proxy_cache` rules.
//!
//! Precedence (nginx): `X-Accel-Expires` → `Cache-Control` → `Expires` → `valid` by status.
//! Never stored: `Set-Cookie`, `Vary: *`, `Cache-Control: no-store / no-cache / private`,
//! `max-age=0`, an `Expires` in the past, `X-Accel-Expires: 0`. Time is kept in whole
//! seconds like nginx: `max-age=1` stays fresh for 1–2 s.

use pingora::http::ResponseHeader;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `valid:` — a TTL per status, or for `any` status. Empty (the default) stores only what the
/// upstream's headers give a lifetime, as nginx without `proxy_cache_valid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Valid {
    by_status: Vec<(u16, u64)>,
    any: Option<u64>,
}

impl Valid {
    /// Adds `status` (`None` = any) with `ttl`.
    pub fn insert(&mut self, status: Option<u16>, ttl: Duration) {
        match status {
            Some(s) => self.by_status.push((s, ttl.as_secs())),
            None => self.any = Some(ttl.as_secs()),
        }
    }

    /// The TTL for `status`: its own entry first, then `any`.
    pub fn for_status(&self, status: u16) -> Option<u64> {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, t)| *t)
            .or(self.any)
    }
}

/// The decision on one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Store it, fresh for `ttl` seconds (whole seconds, see the module doc).
    Store {
        /// Seconds of freshness.
        ttl: u64,
        /// `stale-while-revalidate=` from Cache-Control, seconds.
        stale_while_revalidate: Option<u32>,
        /// `stale-if-error=` from Cache-Control, seconds.
        stale_if_error: Option<u32>,
    },
    /// Do not store it, and why (for the log).
    Skip(String),
}

/// Decides for `resp` at `now`.
pub fn decide(resp: &ResponseHeader, valid: &Valid, now: SystemTime) -> Verdict {
    let headers = &resp.headers;
    if headers.contains_key(http::header::SET_COOKIE) {
        return Verdict::Skip("the response sets a cookie".into());
    }
    let vary_star = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*");
    if vary_star {
        return Verdict::Skip("Vary: *".into());
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let store = |ttl: u64, swr: Option<u32>, sie: Option<u32>| Verdict::Store {
        ttl,
        stale_while_revalidate: swr,
        stale_if_error: sie,
    };

    // An X-Accel-Expires that is not a number is ignored, as nginx does.
    if let Some(v) = headers.get("x-accel-expires").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let ttl = match v.strip_prefix('@') {
            Some(at) => at.parse::<u64>().ok().map(|t| t.saturating_sub(now_secs)),
            None => v.parse::<u64>().ok(),
        };
        match ttl {
            Some(0) => return Verdict::Skip(format!("X-Accel-Expires: {v}")),
            Some(ttl) => return store(ttl, None, None),
            None => {}
        }
    }

    let mut max_age = None;
    let mut s_maxage = None;
    let mut swr = None;
    let mut sie = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (
                    n.trim().to_string(),
                    Some(a.trim().trim_matches('"').to_string()),
                ),
                None => (directive.clone(), None),
            };
            let secs = || arg.as_deref().and_then(|a| a.parse::<u64>().ok());
            match name.as_str() {
                "no-store" | "no-cache" | "private" => {
                    return Verdict::Skip(format!("Cache-Control: {name}"));
                }
                // nginx: a max-age that is not all digits makes the response uncacheable.
                "max-age" | "s-maxage" if directive_digits(&directive).is_none() => {
                    return Verdict::Skip(format!("invalid Cache-Control `{directive}`"));
                }
                "max-age" => max_age = secs(),
                "s-maxage" => s_maxage = secs(),
                "stale-while-revalidate" => swr = secs().map(|s| s.min(u64::from(u32::MAX)) as u32),
                "stale-if-error" => sie = secs().map(|s| s.min(u64::from(u32::MAX)) as u32),
                _ => {}
            }
        }
    }
    // nginx looks for s-maxage first.
    if let Some(age) = s_maxage.or(max_age) {
        return if age == 0 {
            Verdict::Skip("Cache-Control: max-age=0".into())
        } else {
            store(age, swr, sie)
        };
    }

    if let Some(expires) = headers.get(http::header::EXPIRES) {
        let at = expires
            .to_str()
            .ok()
            .and_then(|e| httpdate::parse_http_date(e).ok());
        return match at {
            Some(at) if at > now => {
                let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                store(secs.saturating_sub(now_secs).max(1), swr, sie)
            }
            _ => Verdict::Skip("Expires is in the past or invalid".into()),
        };
    }

    let status = resp.status.as_u16();
    match valid.for_status(status) {
        Some(ttl) if ttl > 0 => store(ttl, swr, sie),
        _ => Verdict::Skip(format!("status {status} has no `valid` time")),
    }
}

/// The digits of `max-age=N` (no quotes, nothing else), as nginx reads them.
fn directive_digits(directive: &str) -> Option<u64> {
    let (_, arg) = directive.split_once('=')?;
    let arg = arg.trim();
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    arg.parse().ok()
}

/// The instant a response stored at `now` with `ttl` seconds stops being fresh: the end of
/// the second `now + ttl`, as nginx compares whole seconds.
pub fn fresh_until(now: SystemTime, ttl: u64) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs.saturating_add(ttl).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), v.to_string()).unwrap();
        }
        r
    }

    fn ttl(v: Verdict) -> Option<u64> {
        match v {
            Verdict::Store { ttl, .. } => Some(ttl),
            Verdict::Skip(_) => None,
        }
    }

    #[test]
    fn nginx_precedence() {
        let now = SystemTime::now();
        let mut valid = Valid::default();
        for s in [200, 301, 302] {
            valid.insert(Some(s), Duration::from_secs(600));
        }
        let d = |s, h: &[(&str, &str)]| ttl(decide(&resp(s, h), &valid, now));
        assert_eq!(d(200, &[]), Some(600));
        assert_eq!(d(404, &[]), None, "404 is not in the default valid list");
        assert_eq!(d(200, &[("Cache-Control", "max-age=30")]), Some(30));
        assert_eq!(
            d(200, &[("Cache-Control", "max-age=30, s-maxage=60")]),
            Some(60)
        );
        assert_eq!(d(404, &[("Cache-Control", "public, max-age=5")]), Some(5));
        assert_eq!(d(200, &[("Cache-Control", "max-age=0")]), None);
        for cc in ["no-store", "private", "no-cache", "No-Store"] {
            assert_eq!(d(200, &[("Cache-Control", cc)]), None, "{cc}");
        }
        assert_eq!(d(200, &[("Set-Cookie", "a=1")]), None);
        assert_eq!(d(200, &[("Vary", "Accept, *")]), None);
        assert_eq!(d(200, &[("Vary", "Accept")]), Some(600));
        // nginx: a non-numeric X-Accel-Expires is ignored; a malformed max-age refuses.
        assert_eq!(d(200, &[("X-Accel-Expires", "abc")]), Some(600));
        assert_eq!(d(200, &[("Cache-Control", "max-age=abc")]), None);
        assert_eq!(d(200, &[("Cache-Control", "max-age=\"60\"")]), None);
        // X-Accel-Expires wins over Cache-Control.
        assert_eq!(
            d(
                200,
                &[("Cache-Control", "no-store"), ("X-Accel-Expires", "20")]
            ),
            Some(20)
        );
        assert_eq!(
            d(
                200,
                &[("X-Accel-Expires", "0"), ("Cache-Control", "max-age=60")]
            ),
            None
        );
        // Expires after Cache-Control.
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let t = d(200, &[("Expires", later.as_str())]).unwrap();
        assert!((119..=120).contains(&t), "{t}");
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(d(200, &[("Expires", past.as_str())]), None);
        assert_eq!(
            d(
                200,
                &[("Expires", past.as_str()), ("Cache-Control", "max-age=9")]
            ),
            Some(9)
        );
    }

    #[test]
    fn valid_any_and_exact() {
        let mut valid = Valid::default();
        valid.insert(Some(404), Duration::from_secs(60));
        valid.insert(None, Duration::from_secs(5));
        assert_eq!(valid.for_status(404), Some(60));
        assert_eq!(valid.for_status(500), Some(5));
    }

    #[test]
    fn whole_seconds() {
        let now = UNIX_EPOCH + Duration::from_millis(10_900);
        assert_eq!(fresh_until(now, 1), UNIX_EPOCH + Duration::from_secs(12));
    }
}
