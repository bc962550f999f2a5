//! Daily traffic (UTC days: requests, bytes to clients, bytes from upstreams, cache hits) for
//! the last 14 days. The state file (`crate::state_file`) keeps it across restarts.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days kept.
pub const DAYS: usize = 14;

/// One UTC day's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Requests logged.
    pub requests: u64,
    /// Response body bytes sent to clients.
    pub bytes_to_clients: u64,
    /// Response body bytes received from upstreams.
    pub bytes_from_upstreams: u64,
    /// Responses served from the cache.
    pub cache_hits: u64,
}

/// The running totals: today's in atomics (the request path only adds), past days behind a
/// lock touched once a day.
#[derive(Debug, Default)]
pub struct Traffic {
    today: AtomicU64,
    requests: AtomicU64,
    to_clients: AtomicU64,
    from_upstreams: AtomicU64,
    cache_hits: AtomicU64,
    past: Mutex<Vec<Day>>,
    /// Since the process started (for `/status`).
    pub since_start: Totals,
}

/// Totals since the process started.
#[derive(Debug, Default)]
pub struct Totals {
    /// Requests.
    pub requests: AtomicU64,
    /// Response body bytes to clients.
    pub bytes_to_clients: AtomicU64,
    /// Response body bytes from upstreams.
    pub bytes_from_upstreams: AtomicU64,
}

/// Days since 1970-01-01 (UTC) of `t`.
fn day_number(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_of(day: u64) -> String {
    let (y, m, d) = crate::access_log::civil(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Traffic {
    /// Counts one finished request.
    pub fn record(&self, to_clients: u64, from_upstreams: u64, cache_hit: bool) {
        self.roll(day_number(SystemTime::now()));
        self.since_start.requests.fetch_add(1, Ordering::Relaxed);
        self.since_start
            .bytes_to_clients
            .fetch_add(to_clients, Ordering::Relaxed);
        self.since_start
            .bytes_from_upstreams
            .fetch_add(from_upstreams, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.to_clients.fetch_add(to_clients, Ordering::Relaxed);
        self.from_upstreams
            .fetch_add(from_upstreams, Ordering::Relaxed);
        if cache_hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes today when the UTC day changed.
    fn roll(&self, day: u64) {
        let today = self.today.load(Ordering::Relaxed);
        if today == day {
            return;
        }
        let mut past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have rolled while this one waited for the lock.
        if self.today.load(Ordering::Relaxed) != today {
            return;
        }
        if today != 0 {
            past.push(self.take_today(today));
            let excess = past.len().saturating_sub(DAYS - 1);
            past.drain(..excess);
        }
        self.today.store(day, Ordering::Relaxed);
    }

    fn take_today(&self, day: u64) -> Day {
        Day {
            date: date_of(day),
            requests: self.requests.swap(0, Ordering::Relaxed),
            bytes_to_clients: self.to_clients.swap(0, Ordering::Relaxed),
            bytes_from_upstreams: self.from_upstreams.swap(0, Ordering::Relaxed),
            cache_hits: self.cache_hits.swap(0, Ordering::Relaxed),
        }
    }

    /// The last 14 days, oldest first, today last.
    pub fn days(&self) -> Vec<Day> {
        let day = day_number(SystemTime::now());
        self.roll(day);
        let past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        let mut days: Vec<Day> = past.clone();
        days.push(Day {
            date: date_of(day),
            requests: self.requests.load(Ordering::Relaxed),
            bytes_to_clients: self.to_clients.load(Ordering::Relaxed),
            bytes_from_upstreams: self.from_upstreams.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        });
        let excess = days.len().saturating_sub(DAYS);
        days.drain(..excess);
        days
    }

    /// Takes over saved days (at start): today's saved totals continue today's counters.
    pub fn restore(&self, days: Vec<Day>) {
        let today = date_of(day_number(SystemTime::now()));
        let mut past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        for d in days {
            if d.date == today {
                self.requests.fetch_add(d.requests, Ordering::Relaxed);
                self.to_clients
                    .fetch_add(d.bytes_to_clients, Ordering::Relaxed);
                self.from_upstreams
                    .fetch_add(d.bytes_from_upstreams, Ordering::Relaxed);
                self.cache_hits.fetch_add(d.cache_hits, Ordering::Relaxed);
            } else if d.date < today {
                past.push(d);
            }
        }
        past.sort_by(|a, b| a.date.cmp(&b.date));
        past.dedup_by(|a, b| a.date == b.date);
        let excess = past.len().saturating_sub(DAYS - 1);
        past.drain(..excess);
        self.today
            .store(day_number(SystemTime::now()), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_416), "2025-11-24");
        assert_eq!(date_of(11_016), "2000-02-29");
    }

    #[test]
    fn days_roll_and_keep_fourteen() {
        let t = Traffic::default();
        let today = day_number(SystemTime::now());
        let old: Vec<Day> = (1..=20)
            .map(|i| Day {
                date: date_of(today - i),
                requests: i,
                ..Day::default()
            })
            .collect();
        t.restore(old);
        t.record(10, 5, true);
        let days = t.days();
        assert_eq!(days.len(), DAYS);
        assert_eq!(days.last().unwrap().requests, 1);
        assert_eq!(days.last().unwrap().cache_hits, 1);
        assert_eq!(days[0].date, date_of(today - 13));
        assert!(days.windows(2).all(|w| w[0].date < w[1].date));
    }
}
