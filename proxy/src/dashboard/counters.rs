//! The counters the dashboard shows that only `/metrics` has: `limit_req` decisions per zone
//! and failed upstream attempts per server and reason, read from the same gathered metric
//! families `GET /metrics` encodes (nothing is counted twice).

use prometheus::proto::MetricFamily;
use std::collections::BTreeMap;

/// `weir_limit_req_total{zone,result}` of one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounts {
    /// Passed at once.
    pub passed: u64,
    /// Passed after a delay.
    pub delayed: u64,
    /// Rejected.
    pub rejected: u64,
    /// Would have been rejected (`dry_run`).
    pub dry_run_rejected: u64,
}

/// The dashboard's counters from `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// `limit_req` decisions by zone.
    pub limits: BTreeMap<String, LimitCounts>,
    /// Failed attempts by (upstream, server), then by reason.
    pub failures: BTreeMap<(String, String), BTreeMap<String, u64>>,
}

impl Counters {
    /// Reads the counters out of gathered metric families.
    pub fn from_families(families: &[MetricFamily]) -> Counters {
        let mut c = Counters::default();
        for family in families {
            match family.name() {
                "weir_limit_req_total" => {
                    for m in family.get_metric() {
                        let zone = label(m, "zone");
                        let n = m.get_counter().get_value() as u64;
                        let e = c.limits.entry(zone.to_string()).or_default();
                        match label(m, "result") {
                            "passed" => e.passed += n,
                            "delayed" => e.delayed += n,
                            "rejected" => e.rejected += n,
                            "dry_run_rejected" => e.dry_run_rejected += n,
                            _ => {}
                        }
                    }
                }
                "weir_upstream_failures_total" => {
                    for m in family.get_metric() {
                        let key = (
                            label(m, "upstream").to_string(),
                            label(m, "server").to_string(),
                        );
                        let n = m.get_counter().get_value() as u64;
                        if n > 0 {
                            *c.failures
                                .entry(key)
                                .or_default()
                                .entry(label(m, "reason").to_string())
                                .or_default() += n;
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// The failures of one server, by reason (empty when none).
    pub fn failures_of(&self, upstream: &str, server: &str) -> Option<&BTreeMap<String, u64>> {
        self.failures
            .get(&(upstream.to_string(), server.to_string()))
    }
}

/// The value of label `name`, or "".
fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts, Registry};

    #[test]
    fn reads_limits_and_failures() {
        let r = Registry::new();
        let limits =
            IntCounterVec::new(Opts::new("weir_limit_req_total", "x"), &["zone", "result"])
                .unwrap();
        let fails = IntCounterVec::new(
            Opts::new("weir_upstream_failures_total", "x"),
            &["upstream", "server", "reason"],
        )
        .unwrap();
        r.register(Box::new(limits.clone())).unwrap();
        r.register(Box::new(fails.clone())).unwrap();
        limits.with_label_values(&["per_ip", "passed"]).inc_by(5);
        limits.with_label_values(&["per_ip", "rejected"]).inc_by(2);
        fails
            .with_label_values(&["o", "127.0.0.1:1", "connect"])
            .inc_by(3);
        let c = Counters::from_families(&r.gather());
        assert_eq!(
            c.limits["per_ip"],
            LimitCounts {
                passed: 5,
                rejected: 2,
                ..LimitCounts::default()
            }
        );
        assert_eq!(c.failures_of("o", "127.0.0.1:1").unwrap()["connect"], 3);
        assert!(c.failures_of("o", "127.0.0.1:2").is_none());
    }
}
