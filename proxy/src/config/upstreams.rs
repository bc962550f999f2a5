//! The `upstreams:` section: tiers of servers, how to reach them, how to check them and
//! when to move a request to the next one.
//!
//! Host names in `addr` are resolved here, at load and reload (blocking is fine off the
//! request path); an unresolvable name is an error with its YAML path.

use crate::upstream::health::{CheckKind, HealthCheck};
use crate::upstream::{
    Balance, NextUpstream, Passive, Peer, Pool, ServerSpec, Slot, TierPool, Upstream,
};
use pingora::utils::tls::WrappedX509;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weir_plugins::config::{checked, from_value, index, join, Checked};
use weir_plugins::units::{ConfigDuration, ConfigSize};
use weir_plugins::ConfigErrors;

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
    max_response_header: Option<Checked<ConfigSize>>,
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
    #[serde(default)]
    http2: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckWire {
    path: Option<String>,
    #[serde(default)]
    tcp: bool,
    interval: Option<Checked<ConfigDuration>>,
    timeout: Option<Checked<ConfigDuration>>,
    rise: Option<Checked<u32>>,
    fall: Option<Checked<u32>>,
    expect_status: Option<Vec<u16>>,
}

/// `max_response_header` by default: nginx's `proxy_buffer_size` bounds a response header
/// the same way (4 or 8 KiB there; 32 KiB here, the request side's `max_header_bytes`).
const DEFAULT_MAX_RESPONSE_HEADER: u64 = 32 << 10;

/// Builds `upstreams.NAME` found at `path`.
pub fn build(name: &str, value: &Value, path: &str) -> Result<Upstream, ConfigErrors> {
    let wire: UpstreamWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let at = |key: &str| join(path, key);

    if wire.tiers.is_empty() {
        errors.push(at("tiers"), "at least one tier is required");
    }
    let mut tiers: Vec<TierPool> = Vec::new();
    for (t, tier) in wire.tiers.into_iter().enumerate() {
        let tier_path = index(&at("tiers"), t);
        if tiers.iter().any(|o| o.name == tier.name) {
            errors.push(
                join(&tier_path, "name"),
                format!("tier `{}` is listed twice", tier.name),
            );
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (i, v) in tier.servers.iter().enumerate() {
            let at_i = index(&join(&tier_path, "servers"), i);
            let Some((spec, addrs)) = errors.take(build_server(v, &at_i)) else {
                continue;
            };
            if spec.port == 0 {
                errors.push(&at_i, "port 0 cannot be connected to");
            }
            let same = slots.iter().position(|o| {
                o.peer.spec.addr.eq_ignore_ascii_case(&spec.addr)
                    || o.peer.addr() == addrs.first().copied()
            });
            if let Some(j) = same {
                errors.push(
                    at_i,
                    format!(
                        "{} is the same server as servers[{j}] ({}) in this tier",
                        spec.addr, slots[j].peer.spec.addr
                    ),
                );
            }
            slots.push(Slot::new(
                Arc::new(Peer::new(&tier.name, spec, addrs)),
                None,
            ));
        }
        tiers.push(TierPool::new(tier.name, slots));
    }

    let balance = match wire.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("random") => Balance::Random,
        Some("hash") => Balance::Hash,
        Some(b) => {
            errors.push(
                at("balance"),
                format!("`{b}`: expected round_robin, random or hash"),
            );
            Balance::RoundRobin
        }
    };
    let health_check = wire
        .health_check
        .and_then(|hc| build_health_check(hc, &at("health_check"), &mut errors));
    let mut next_upstream = NextUpstream::default();
    match &wire.next_upstream {
        None => {
            next_upstream.insert(NextUpstream::ERROR);
            next_upstream.insert(NextUpstream::TIMEOUT);
        }
        Some(list) => {
            for (i, v) in list.iter().enumerate() {
                match NextUpstream::from_name(v) {
                    Some(_) if v == "off" && list.len() > 1 => errors.push(
                        index(&at("next_upstream"), i),
                        "`off` cannot be combined with other conditions",
                    ),
                    Some(flag) => next_upstream.insert(flag),
                    None => errors.push(
                        index(&at("next_upstream"), i),
                        format!("`{v}`: expected one of {}", NextUpstream::NAMES.join(", ")),
                    ),
                }
            }
        }
    }
    let tls_ca = wire.tls_ca.as_deref().and_then(|file| match load_ca(file) {
        Ok(ca) => Some(ca),
        Err(e) => {
            errors.push(at("tls_ca"), e);
            None
        }
    });
    let max_fails = checked(wire.max_fails, &at("max_fails"), &mut errors).unwrap_or(1);
    let fail_timeout = checked(wire.fail_timeout, &at("fail_timeout"), &mut errors)
        .map_or(Duration::from_secs(10), |d| d.0);
    let tries = checked(
        wire.next_upstream_tries,
        &at("next_upstream_tries"),
        &mut errors,
    )
    .unwrap_or(0);
    let tries_timeout = checked(
        wire.next_upstream_timeout,
        &at("next_upstream_timeout"),
        &mut errors,
    )
    .map(|d| d.0)
    .filter(|d| !d.is_zero());
    let dns_refresh = checked(wire.dns_refresh, &at("dns_refresh"), &mut errors);
    let keepalive = checked(wire.keepalive, &at("keepalive"), &mut errors).unwrap_or(64);
    let connect_timeout = checked(wire.connect_timeout, &at("connect_timeout"), &mut errors);
    let read_timeout = checked(wire.read_timeout, &at("read_timeout"), &mut errors);
    for (key, t) in [
        ("connect_timeout", connect_timeout),
        ("read_timeout", read_timeout),
        ("dns_refresh", dns_refresh),
    ] {
        if t.is_some_and(|d| d.0.is_zero()) {
            errors.push(at(key), "must be longer than 0s");
        }
    }
    if keepalive > 100_000 {
        errors.push(at("keepalive"), "must be at most 100000");
    }
    let max_response_header = checked(
        wire.max_response_header,
        &at("max_response_header"),
        &mut errors,
    )
    .map_or(DEFAULT_MAX_RESPONSE_HEADER, |s| s.0);
    if !(1 << 10..=1 << 20).contains(&max_response_header) {
        errors.push(
            at("max_response_header"),
            "must be from 1KiB to 1MiB (1024 to 1048576 bytes)",
        );
    }
    if errors.is_empty() {
        let mut u = Upstream::new(name, Pool::new(tiers, balance));
        u.balance = balance;
        u.passive = Passive {
            max_fails,
            // nginx keeps time in whole seconds; a fraction rounds up.
            fail_timeout: fail_timeout.as_secs() + u64::from(fail_timeout.subsec_nanos() > 0),
        };
        u.next_upstream = next_upstream;
        u.next_upstream_tries = tries;
        u.next_upstream_timeout = tries_timeout;
        u.connect_timeout = connect_timeout.map_or(Duration::from_secs(2), |d| d.0);
        u.read_timeout = read_timeout.map_or(Duration::from_secs(60), |d| d.0);
        u.keepalive = keepalive;
        u.max_response_header = max_response_header as usize;
        u.health_check = health_check;
        u.dns_refresh = dns_refresh.map_or(Duration::from_secs(60), |d| d.0);
        u.tls_group = tls_ca.as_ref().map_or(0, |certs| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for c in certs.iter() {
                c.borrow_raw_cert().hash(&mut h);
            }
            h.finish() | 1 // never 0, the group of the system roots
        });
        u.tls_ca = tls_ca;
        Ok(u)
    } else {
        Err(errors)
    }
}

/// A server entry: `"IP:port"`, `"name:port"`, or a map with `addr` and options. Returns
/// the entry and the addresses it resolves to now.
fn build_server(value: &Value, path: &str) -> Result<(ServerSpec, Vec<SocketAddr>), ConfigErrors> {
    let (wire, addr_path) = match value {
        Value::String(s) => (
            ServerWire {
                addr: s.clone(),
                weight: None,
                tls: false,
                sni: None,
                host: None,
                http2: false,
            },
            path.to_string(),
        ),
        other => (from_value::<ServerWire>(other, path)?, join(path, "addr")),
    };
    let mut errors = ConfigErrors::default();
    let resolved = crate::upstream::resolve(&wire.addr)
        .map_err(|e| errors.push(&addr_path, e))
        .ok();
    let weight = checked(wire.weight, &join(path, "weight"), &mut errors).unwrap_or(1);
    if !(1..=1000).contains(&weight) {
        errors.push(join(path, "weight"), "must be from 1 to 1000");
    }
    if !wire.tls {
        for (key, present) in [("sni", wire.sni.is_some()), ("http2", wire.http2)] {
            if present {
                errors.push(
                    join(path, key),
                    "needs `tls: true` (plain-text upstreams speak HTTP/1.1 without TLS names)",
                );
            }
        }
    }
    if let Some(sni) = &wire.sni {
        if !crate::upstream::is_host_name(sni) && sni.parse::<std::net::IpAddr>().is_err() {
            errors.push(join(path, "sni"), format!("`{sni}` is not a host name"));
        }
    }
    if let Some(host) = &wire.host {
        if host.is_empty() || http::HeaderValue::from_str(host).is_err() || host.contains(' ') {
            errors.push(
                join(path, "host"),
                format!("`{host}` is not a valid Host header"),
            );
        }
    }
    match resolved {
        Some((host_name, port, addrs)) if errors.is_empty() => Ok((
            ServerSpec {
                addr: wire.addr,
                host_name,
                port,
                weight,
                tls: wire.tls,
                sni: wire.sni,
                host: wire.host,
                http2: wire.http2,
            },
            addrs,
        )),
        _ => Err(errors),
    }
}

/// Reads `tls_ca`: PEM certificates, each checked before Pingora sees it (its parser
/// panics on a bad certificate).
fn load_ca(file: &str) -> Result<Arc<[WrappedX509]>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| format!("{file}: not a PEM certificate file: {e}"))?;
        if let Err(e) = x509_parser::parse_x509_certificate(der.as_ref()) {
            return Err(format!("{file}: invalid certificate: {e}"));
        }
        certs.push(WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(format!("{file}: no PEM certificate in it"));
    }
    Ok(certs.into())
}

fn build_health_check(
    hc: HealthCheckWire,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<HealthCheck> {
    let before = errors.0.len();
    match (&hc.path, hc.tcp) {
        (Some(_), true) => errors.push(path, "use either `path` (HTTP) or `tcp: true`, not both"),
        (None, false) => errors.push(path, "needs `path` (HTTP GET) or `tcp: true`"),
        (Some(p), false) if !p.starts_with('/') => {
            errors.push(join(path, "path"), "must start with /")
        }
        _ => {}
    }
    if hc.tcp && hc.expect_status.is_some() {
        errors.push(
            join(path, "expect_status"),
            "only applies to HTTP checks (`path`)",
        );
    }
    let rise = checked(hc.rise, &join(path, "rise"), errors);
    let fall = checked(hc.fall, &join(path, "fall"), errors);
    for (key, v) in [("rise", rise), ("fall", fall)] {
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
    let interval = checked(hc.interval, &join(path, "interval"), errors);
    let timeout = checked(hc.timeout, &join(path, "timeout"), errors);
    for (key, v) in [("interval", interval), ("timeout", timeout)] {
        if v.is_some_and(|d| d.0.is_zero()) {
            errors.push(join(path, key), "must be longer than 0s");
        }
    }
    if errors.0.len() != before {
        return None;
    }
    let kind = match hc.path {
        Some(p) => CheckKind::Http {
            path: p,
            expect_status: hc.expect_status.unwrap_or_default(),
        },
        None => CheckKind::Tcp,
    };
    Some(HealthCheck {
        kind,
        interval: interval.map_or(Duration::from_secs(5), |d| d.0),
        timeout: timeout.map_or(Duration::from_secs(1), |d| d.0),
        rise: rise.unwrap_or(2),
        fall: fall.unwrap_or(3),
    })
}
