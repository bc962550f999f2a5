//! The process-wide metrics registry the admin API's `/metrics` will expose (Prometheus
//! text). Counters are resolved to their label values when the config is built, so the
//! request path only increments.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::OnceLock;

/// weir's registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, String> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| e.to_string())?;
    match registry().register(Box::new(vec.clone())) {
        Ok(()) => Ok(vec),
        Err(prometheus::Error::AlreadyReg) => Ok(vec),
        Err(e) => Err(e.to_string()),
    }
}

/// `weir_limit_req_total{zone,result}`: `passed`, `delayed`, `rejected`, `dry_run_rejected`.
pub fn limit_req_total() -> Result<&'static IntCounterVec, String> {
    static VEC: OnceLock<Result<IntCounterVec, String>> = OnceLock::new();
    VEC.get_or_init(|| {
        counter_vec(
            "weir_limit_req_total",
            "limit_req decisions by zone and result",
            &["zone", "result"],
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// `weir_limit_conn_rejected_total{route}`.
pub fn limit_conn_rejected_total() -> Result<&'static IntCounterVec, String> {
    static VEC: OnceLock<Result<IntCounterVec, String>> = OnceLock::new();
    VEC.get_or_init(|| {
        counter_vec(
            "weir_limit_conn_rejected_total",
            "requests refused by limit_conn, by route",
            &["route"],
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// `weir_limit_store_fallback{zone}`: 1 while a zone with a Redis `store` decides on its
/// local state (Redis slow or unreachable), 0 while it shares the zone through Redis.
pub fn limit_store_fallback() -> Result<&'static IntGaugeVec, String> {
    static VEC: OnceLock<Result<IntGaugeVec, String>> = OnceLock::new();
    VEC.get_or_init(|| {
        let opts = Opts::new(
            "weir_limit_store_fallback",
            "1 while a limit zone with a Redis store decides on local state",
        );
        let vec = IntGaugeVec::new(opts, &["zone"]).map_err(|e| e.to_string())?;
        match registry().register(Box::new(vec.clone())) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(vec),
            Err(e) => Err(e.to_string()),
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One labelled counter, resolved at load time.
pub fn labelled(vec: &IntCounterVec, labels: &[&str]) -> Result<IntCounter, String> {
    vec.get_metric_with_label_values(labels)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_land_in_the_registry() {
        let vec = limit_req_total().unwrap();
        labelled(vec, &["z", "passed"]).unwrap().inc();
        let families = registry().gather();
        let family = families
            .iter()
            .find(|f| f.name() == "weir_limit_req_total")
            .unwrap();
        assert!(!family.get_metric().is_empty());
    }
}
