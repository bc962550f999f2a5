//! The proxy's Prometheus metrics (all in the plugins' registry, so `/metrics` shows the
//! limiters' counters next to these): requests, durations, bytes, cache results, upstream
//! attempts and failures, server states and build info.
//!
//! The names and labels are fixed, so building them cannot fail; a registration error (which
//! would need a second registry user of the same name) is logged and the metric is missing
//! from `/metrics` rather than failing a request.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};
use std::sync::OnceLock;
use weir_plugins::metrics::registry;

/// Every proxy metric.
pub struct Metrics {
    /// `weir_requests_total{route,status}`.
    pub requests: IntCounterVec,
    /// `weir_request_duration_seconds{route}`.
    pub duration: HistogramVec,
    /// `weir_bytes_received_total`: request bodies from clients.
    pub bytes_received: IntCounter,
    /// `weir_bytes_sent_total`: response bodies to clients.
    pub bytes_sent: IntCounter,
    /// `weir_cache_requests_total{zone,status}`.
    pub cache: IntCounterVec,
    /// `weir_upstream_attempts_total{upstream,server}`.
    pub attempts: IntCounterVec,
    /// `weir_upstream_failures_total{upstream,server,reason}`.
    pub failures: IntCounterVec,
    /// `weir_upstream_server_up{upstream,tier,server}`, set when `/metrics` is read.
    pub server_up: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = registry().register(Box::new(c.clone())) {
        log::error!("cannot register a metric: {e}");
    }
    c
}

// The definitions below are static (valid names, fixed labels), so building them cannot
// fail; `server::run` builds them before the first request.
#[allow(clippy::expect_used)]
fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric"))
}

#[allow(clippy::expect_used)]
fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric"))
}

#[allow(clippy::expect_used)]
fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).expect("static metric"))
}

/// The metrics, built on first use (at start-up).
#[allow(clippy::expect_used)]
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let buckets = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let duration = register(
            HistogramVec::new(
                HistogramOpts::new(
                    "weir_request_duration_seconds",
                    "time from the request's start to its logging, by route",
                )
                .buckets(buckets),
                &["route"],
            )
            .expect("static metric"),
        );
        // `weir_build_info{version}` = 1: registered once, never changed.
        let build_info = gauges("weir_build_info", "weir's version", &["version"]);
        build_info.with_label_values(&[crate::VERSION]).set(1);
        Metrics {
            requests: counters(
                "weir_requests_total",
                "requests by route and status",
                &["route", "status"],
            ),
            duration,
            bytes_received: counter(
                "weir_bytes_received_total",
                "request body bytes received from clients",
            ),
            bytes_sent: counter(
                "weir_bytes_sent_total",
                "response body bytes sent to clients",
            ),
            cache: counters(
                "weir_cache_requests_total",
                "cache results by zone and X-Cache-Status",
                &["zone", "status"],
            ),
            attempts: counters(
                "weir_upstream_attempts_total",
                "attempts on upstream servers",
                &["upstream", "server"],
            ),
            failures: counters(
                "weir_upstream_failures_total",
                "failed attempts on upstream servers, by reason",
                &["upstream", "server", "reason"],
            ),
            server_up: gauges(
                "weir_upstream_server_up",
                "1 when the server is usable (active checks and passive accounting)",
                &["upstream", "tier", "server"],
            ),
        }
    })
}

/// A short, bounded label for a failure reason (`connection refused`, `status 502` …): the
/// free text of TLS errors would make one series per message.
pub fn reason_label(reason: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "connection refused",
        "connect timed out",
        "read timed out",
        "write timed out",
        "connection closed",
        "status 500",
        "status 502",
        "status 503",
        "status 504",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == reason) {
        return k;
    }
    if reason.starts_with("TLS") {
        "tls"
    } else if reason.starts_with("status ") {
        "status other"
    } else {
        "error"
    }
}

/// One route's series of `weir_requests_total` and `weir_request_duration_seconds`, each
/// resolved on its first use and kept: a lookup by label values hashes the labels and takes
/// the vector's lock, once per request otherwise. A series appears in `/metrics` when its
/// first request is counted, as before.
pub struct RouteMetrics {
    duration: OnceLock<Histogram>,
    /// `weir_requests_total{status}` for [`COMMON_STATUSES`], in that order.
    requests: [OnceLock<IntCounter>; COMMON_STATUSES.len()],
}

/// The statuses whose counters a route keeps; others are looked up per request.
const COMMON_STATUSES: [u16; 16] = [
    200, 204, 206, 301, 302, 304, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504,
];

/// The series of requests that matched no route (`route="-"`).
pub static NO_ROUTE: RouteMetrics = RouteMetrics::new();

impl RouteMetrics {
    /// Nothing resolved yet.
    pub const fn new() -> Self {
        RouteMetrics {
            duration: OnceLock::new(),
            requests: [const { OnceLock::new() }; COMMON_STATUSES.len()],
        }
    }

    /// Counts one request of `route` (this route's name) answered with `status` (0: none).
    pub fn count(&self, route: &str, status: u16) {
        let resolve = || {
            let text = http::StatusCode::from_u16(status).ok();
            // A valid code's text is a static table entry: no allocation.
            let text = text.as_ref().map_or("0", |c| c.as_str());
            metrics()
                .requests
                .get_metric_with_label_values(&[route, text])
                .ok()
        };
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => {
                if let Some(c) = self.requests.get(i).and_then(|cell| kept(cell, resolve)) {
                    c.inc();
                }
            }
            None => {
                if let Some(c) = resolve() {
                    c.inc();
                }
            }
        }
    }

    /// Observes one request of `route` that took `seconds`.
    pub fn observe_duration(&self, route: &str, seconds: f64) {
        let resolve = || {
            metrics()
                .duration
                .get_metric_with_label_values(&[route])
                .ok()
        };
        if let Some(h) = kept(&self.duration, resolve) {
            h.observe(seconds);
        }
    }
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The handle in `cell`, resolving it on first use; `None` when it cannot be resolved.
fn kept<T>(cell: &OnceLock<T>, resolve: impl FnOnce() -> Option<T>) -> Option<&T> {
    if let Some(v) = cell.get() {
        return Some(v);
    }
    let v = resolve()?;
    Some(cell.get_or_init(|| v))
}
