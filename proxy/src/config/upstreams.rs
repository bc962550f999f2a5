//! The `upstreams:` section: tiers of servers and how to reach them.
//!
//! Every key of the contract is parsed and validated. Keys whose behaviour lands with the
//! tiers/health/failover work (more than one tier, health checks, passive accounting,
//! retries, TLS upstreams, host names) are rejected as "not implemented yet".

use crate::upstream::{Tier, Upstream, UpstreamServer};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::SocketAddr;
use weir_plugins::config::{checked, from_value, index, join, Checked};
use weir_plugins::units::ConfigDuration;
use weir_plugins::{ConfigError, ConfigErrors};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamWire {
    tiers: Vec<TierWire>,
    balance: Option<String>,
    tls_ca: Option<String>,
    dns_refresh: Option<Checked<ConfigDuration>>,
    health_check: Option<HealthCheckWire>,
    max_fails: Option<Checked<u32>>,
    fail_timeout: Option<Checked<ConfigDuration>>,
    next_upstream: Option<Vec<String>>,
    next_upstream_tries: Option<Checked<u32>>,
    next_upstream_timeout: Option<Checked<ConfigDuration>>,
    connect_timeout: Option<Checked<ConfigDuration>>,
    read_timeout: Option<Checked<ConfigDuration>>,
    keepalive: Option<Checked<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierWire {
    name: String,
    servers: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerWire {
    addr: String,
    weight: Option<Checked<u32>>,
    #[serde(default)]
    tls: bool,
    sni: Option<String>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckWire {
    path: Option<String>,
    #[serde(default)]
    tcp: bool,
    interval: Option<ConfigDuration>,
    timeout: Option<ConfigDuration>,
    rise: Option<u32>,
    fall: Option<u32>,
    expect_status: Option<Vec<u16>>,
}

const NEXT_UPSTREAM: [&str; 8] = [
    "error", "timeout", "http_500", "http_502", "http_503", "http_504", "http_404", "http_429",
];

/// Builds `upstreams.NAME` found at `path`.
pub fn build(name: &str, value: &Value, path: &str) -> Result<Upstream, ConfigErrors> {
    let wire: UpstreamWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let at = |key: &str| join(path, key);

    if wire.tiers.is_empty() {
        errors.push(at("tiers"), "at least one tier is required");
    }
    let mut tiers = Vec::new();
    for (t, tier) in wire.tiers.into_iter().enumerate() {
        let tier_path = index(&at("tiers"), t);
        if t > 0 {
            errors.0.push(ConfigError::new(
                &tier_path,
                "not implemented yet (an upstream has one tier until tier failover lands)",
            ));
        }
        if tier.servers.is_empty() {
            errors.push(
                join(&tier_path, "servers"),
                "not implemented yet (an empty tier holds registered servers only)",
            );
        }
        let mut servers: Vec<UpstreamServer> = Vec::new();
        for (i, v) in tier.servers.iter().enumerate() {
            let at_i = index(&join(&tier_path, "servers"), i);
            let Some(server) = errors.take(build_server(v, &at_i)) else {
                continue;
            };
            if servers.iter().any(|o| o.addr == server.addr) {
                errors.push(
                    at_i,
                    format!("{} is listed twice in this tier", server.addr),
                );
            }
            servers.push(server);
        }
        tiers.push(Tier::new(tier.name, servers));
    }

    match wire.balance.as_deref() {
        None | Some("round_robin") => {}
        Some(b @ ("random" | "hash")) => {
            errors.push(at("balance"), format!("`{b}`: not implemented yet"))
        }
        Some(b) => errors.push(
            at("balance"),
            format!("`{b}`: expected round_robin, random or hash"),
        ),
    }
    if let Some(hc) = &wire.health_check {
        validate_health_check(hc, &at("health_check"), &mut errors);
    }
    if let Some(list) = &wire.next_upstream {
        for (i, v) in list.iter().enumerate() {
            if !NEXT_UPSTREAM.contains(&v.as_str()) {
                errors.push(
                    index(&at("next_upstream"), i),
                    format!("`{v}`: expected one of {}", NEXT_UPSTREAM.join(", ")),
                );
            }
        }
    }
    let planned = [
        ("tls_ca", wire.tls_ca.is_some()),
        ("dns_refresh", wire.dns_refresh.is_some()),
        ("health_check", wire.health_check.is_some()),
        ("max_fails", wire.max_fails.is_some()),
        ("fail_timeout", wire.fail_timeout.is_some()),
        ("next_upstream", wire.next_upstream.is_some()),
        ("next_upstream_tries", wire.next_upstream_tries.is_some()),
        (
            "next_upstream_timeout",
            wire.next_upstream_timeout.is_some(),
        ),
    ];
    for (key, present) in planned {
        if present {
            errors.0.push(ConfigError::not_implemented(at(key)));
        }
    }
    let keepalive = checked(wire.keepalive, &at("keepalive"), &mut errors).unwrap_or(64);
    let connect_timeout = checked(wire.connect_timeout, &at("connect_timeout"), &mut errors);
    let read_timeout = checked(wire.read_timeout, &at("read_timeout"), &mut errors);
    for (key, t) in [
        ("connect_timeout", connect_timeout),
        ("read_timeout", read_timeout),
    ] {
        if t.is_some_and(|d| d.0.is_zero()) {
            errors.push(at(key), "must be longer than 0s");
        }
    }
    if keepalive > 100_000 {
        errors.push(at("keepalive"), "must be at most 100000");
    }
    errors.into_result(Upstream {
        name: name.to_string(),
        tiers,
        connect_timeout: connect_timeout.map_or(std::time::Duration::from_secs(2), |d| d.0),
        read_timeout: read_timeout.map_or(std::time::Duration::from_secs(60), |d| d.0),
        keepalive,
    })
}

fn build_server(value: &Value, path: &str) -> Result<UpstreamServer, ConfigErrors> {
    let (wire, addr_path) = match value {
        Value::String(s) => (
            ServerWire {
                addr: s.clone(),
                weight: None,
                tls: false,
                sni: None,
                host: None,
            },
            path.to_string(),
        ),
        other => (from_value::<ServerWire>(other, path)?, join(path, "addr")),
    };
    let mut errors = ConfigErrors::default();
    let addr = match wire.addr.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) if looks_like_host_port(&wire.addr) => {
            errors.push(
                &addr_path,
                format!(
                    "`{}`: host names are not implemented yet; use IP:port",
                    wire.addr
                ),
            );
            None
        }
        Err(_) => {
            errors.push(
                &addr_path,
                format!("`{}` is not a host:port address", wire.addr),
            );
            None
        }
    };
    let weight = checked(wire.weight, &join(path, "weight"), &mut errors).unwrap_or(1);
    if !(1..=1000).contains(&weight) {
        errors.push(join(path, "weight"), "must be from 1 to 1000");
    }
    for (key, present) in [
        ("tls", wire.tls),
        ("sni", wire.sni.is_some()),
        ("host", wire.host.is_some()),
    ] {
        if present {
            errors.0.push(ConfigError::not_implemented(join(path, key)));
        }
    }
    match addr {
        Some(addr) if errors.is_empty() => Ok(UpstreamServer { addr, weight }),
        _ => Err(errors),
    }
}

/// `name:port` with a plausible DNS name and a port.
fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok()
                && !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        }
        None => false,
    }
}

fn validate_health_check(hc: &HealthCheckWire, path: &str, errors: &mut ConfigErrors) {
    match (&hc.path, hc.tcp) {
        (Some(_), true) => errors.push(path, "use either `path` (HTTP) or `tcp: true`, not both"),
        (None, false) => errors.push(path, "needs `path` (HTTP GET) or `tcp: true`"),
        (Some(p), false) if !p.starts_with('/') => {
            errors.push(join(path, "path"), "must start with /")
        }
        _ => {}
    }
    for (key, v) in [("rise", hc.rise), ("fall", hc.fall)] {
        if v == Some(0) {
            errors.push(join(path, key), "must be at least 1");
        }
    }
    if let Some(list) = &hc.expect_status {
        for (i, s) in list.iter().enumerate() {
            if !(100..=599).contains(s) {
                errors.push(
                    index(&join(path, "expect_status"), i),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
    }
    for (key, v) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if v.is_some_and(|d| d.0.is_zero()) {
            errors.push(join(path, key), "must be longer than 0s");
        }
    }
}
