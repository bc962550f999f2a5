//! Limits and access: `limit_req_zone` → `limits:`, `limit_req` → the `limit_req` plugin,
//! `limit_conn_zone` + `limit_conn` → the `limit_conn` plugin, `allow`/`deny` → the
//! `access` plugin, `set_real_ip_from`/`real_ip_header` → `server.trusted_proxies`.

use super::values::{limit_key_part, split_vars, Part};
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// A `limit_conn_zone`: its key, for the `limit_conn` plugins that name it.
#[derive(Debug, Clone)]
pub struct ConnZone {
    /// weir's key, or why it has none.
    pub key: Result<Node, String>,
    /// Where it was declared.
    pub source: String,
    /// Locations using it so far.
    pub users: usize,
}

/// Zones declared in `http`.
#[derive(Debug, Default)]
pub struct Zones {
    /// `limit_req_zone` names that translated.
    pub req: BTreeMap<String, String>,
    /// `limit_conn_zone` by name.
    pub conn: BTreeMap<String, ConnZone>,
}

/// nginx's key (`$binary_remote_addr`, `$host$uri` …) as weir's: one attribute or a list.
fn key(value: &str) -> Result<Node, String> {
    let mut parts = Vec::new();
    for part in split_vars(value) {
        match part {
            Part::Var(v) => parts.push(
                limit_key_part(&v)
                    .ok_or_else(|| format!("the key's variable `${v}` has no weir equivalent"))?,
            ),
            Part::Text(t) => return Err(format!("the key holds literal text `{t}`")),
        }
    }
    match parts.len() {
        0 => Err("the key is empty".into()),
        1 => Ok(Node::str(parts.remove(0))),
        _ => Ok(Node::strs(parts)),
    }
}

/// `name=value` parameters of a directive.
fn param<'d>(d: &'d Directive, name: &str) -> Option<&'d str> {
    d.args
        .iter()
        .find_map(|a| a.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// `limit_req_zone KEY zone=NAME:SIZE rate=RATE;` → `limits.NAME`.
pub fn req_zone(tx: &mut Tx, zones: &mut Zones, d: &Directive) -> Result<(), SyntaxError> {
    tx.take(d);
    let zone = param(d, "zone").ok_or_else(|| Tx::invalid(d, "no zone"))?;
    let (name, size) = zone
        .split_once(':')
        .ok_or_else(|| Tx::invalid(d, format!("invalid zone size \"{zone}\"")))?;
    let size = super::values::size_bytes(size)
        .ok_or_else(|| Tx::invalid(d, format!("invalid zone size \"{zone}\"")))?;
    let rate = param(d, "rate").ok_or_else(|| Tx::invalid(d, "no rate"))?;
    if !(rate.ends_with("r/s") || rate.ends_with("r/m")) {
        return Err(Tx::invalid(d, format!("invalid rate \"{rate}\"")));
    }
    if d.args.iter().any(|a| a == "sync") {
        tx.report.note(
            d,
            "`sync` (nginx Plus): share the zone with `store: redis://…`",
        );
    }
    let key = match key(Tx::arg(d, 0)?) {
        Ok(k) => k,
        Err(why) => {
            tx.report.left(d, why);
            return Ok(());
        }
    };
    // nginx keeps about 16,000 states of 64 bytes per MiB of zone.
    let capacity = (size / 64).clamp(1, 100_000_000);
    let mut z = Node::map();
    z.set("key", key)
        .set("rate", Node::str(rate))
        .set("capacity", Node::int(capacity));
    tx.limits.set_commented(name, z, vec![d.source()]);
    zones.req.insert(name.to_string(), d.source());
    Ok(())
}

/// `limit_conn_zone KEY zone=NAME:SIZE;`: remembered for `limit_conn`.
pub fn conn_zone(tx: &mut Tx, zones: &mut Zones, d: &Directive) -> Result<(), SyntaxError> {
    tx.take(d);
    let zone = param(d, "zone").ok_or_else(|| Tx::invalid(d, "no zone"))?;
    let name = zone.split(':').next().unwrap_or(zone);
    zones.conn.insert(
        name.to_string(),
        ConnZone {
            key: key(Tx::arg(d, 0)?),
            source: d.source(),
            users: 0,
        },
    );
    Ok(())
}

/// The `limit_req` plugins in effect at `scope`, with their comments.
pub fn limit_req(
    tx: &mut Tx,
    zones: &Zones,
    scope: &Scope,
    plugins: &mut Vec<(Node, Vec<String>)>,
) -> Result<(), SyntaxError> {
    let status = scope.one("limit_req_status");
    let dry_run = scope.one("limit_req_dry_run");
    for d in scope.group(&["limit_req"]) {
        tx.take(d);
        let zone = param(d, "zone").ok_or_else(|| Tx::invalid(d, "no zone"))?;
        let Some(zone_source) = zones.req.get(zone) else {
            tx.report
                .left(d, format!("zone `{zone}` was not translated"));
            continue;
        };
        let mut p = Node::map();
        p.set("zone", Node::str(zone));
        let mut comments = vec![d.source(), zone_source.clone()];
        if let Some(b) = param(d, "burst") {
            let b: u64 = b
                .parse()
                .map_err(|_| Tx::invalid(d, format!("invalid burst value \"{b}\"")))?;
            p.set("burst", Node::int(b));
        }
        if d.args.iter().any(|a| a == "nodelay") {
            p.set("nodelay", Node::bool(true));
        } else if let Some(n) = param(d, "delay") {
            let n: u64 = n
                .parse()
                .map_err(|_| Tx::invalid(d, format!("invalid delay value \"{n}\"")))?;
            p.set("delay", Node::int(n));
        }
        set_status(tx, status, &mut p, &mut comments)?;
        if let Some(r) = dry_run {
            tx.take(r);
            if Tx::flag(r)? {
                p.set("dry_run", Node::bool(true));
                comments.push(r.source());
            }
        }
        let mut plugin = Node::map();
        plugin.set("limit_req", p);
        plugins.push((plugin, comments));
    }
    Ok(())
}

/// `limit_req_status` / `limit_conn_status`, when present, as the plugin's `status`.
fn set_status(
    tx: &mut Tx,
    status: Option<&Directive>,
    p: &mut Node,
    comments: &mut Vec<String>,
) -> Result<(), SyntaxError> {
    if let Some(s) = status {
        tx.take(s);
        let code: u16 = Tx::arg(s, 0)?
            .parse()
            .map_err(|_| Tx::invalid(s, "invalid value"))?;
        p.set("status", Node::int(code));
        comments.push(s.source());
    }
    Ok(())
}

/// The `limit_conn` plugins in effect at `scope`.
pub fn limit_conn(
    tx: &mut Tx,
    zones: &mut Zones,
    scope: &Scope,
    plugins: &mut Vec<(Node, Vec<String>)>,
) -> Result<(), SyntaxError> {
    let status = scope.one("limit_conn_status");
    for d in scope.group(&["limit_conn"]) {
        tx.take(d);
        let zone = Tx::arg(d, 0)?;
        let max: u64 = Tx::arg(d, 1)?
            .parse()
            .map_err(|_| Tx::invalid(d, "invalid number of connections"))?;
        let Some(z) = zones.conn.get_mut(zone) else {
            return Err(Tx::invalid(
                d,
                format!("unknown limit_conn_zone \"{zone}\""),
            ));
        };
        let key = match &z.key {
            Ok(k) => k.clone(),
            Err(why) => {
                tx.report.left(d, format!("zone `{zone}`: {why}"));
                continue;
            }
        };
        z.users += 1;
        if z.users == 2 {
            tx.report.note(
                d,
                format!(
                    "zone `{zone}` serves several locations; weir counts each route's requests on their own"
                ),
            );
        }
        let mut p = Node::map();
        p.set("key", key).set("max", Node::int(max));
        let mut comments = vec![d.source(), z.source.clone()];
        set_status(tx, status, &mut p, &mut comments)?;
        let mut plugin = Node::map();
        plugin.set("limit_conn", p);
        plugins.push((plugin, comments));
    }
    Ok(())
}

/// The `allow`/`deny` rules in effect as an `access` plugin, when weir's lists can say the
/// same: `deny…`, `allow…; deny all`, `deny…; allow…; deny all`, `deny all`.
pub fn access(
    tx: &mut Tx,
    scope: &Scope,
    plugins: &mut Vec<(Node, Vec<String>)>,
) -> Result<(), SyntaxError> {
    let rules = scope.group(&["allow", "deny"]);
    if rules.is_empty() {
        return Ok(());
    }
    for d in &rules {
        tx.take(d);
        Tx::arg(d, 0)?;
    }
    // Rules after the first `all` are never reached.
    let end = rules
        .iter()
        .position(|d| d.args[0] == "all")
        .map_or(rules.len(), |i| i + 1);
    let (live, dead) = rules.split_at(end);
    for d in dead {
        tx.report
            .note(d, "never reached: an earlier `all` rule decides first");
    }
    let deny_all = live
        .last()
        .is_some_and(|d| d.args[0] == "all" && d.name == "deny");
    let body: Vec<&&Directive> = live.iter().filter(|d| d.args[0] != "all").collect();
    let first_allow = body.iter().position(|d| d.name == "allow");
    let last_deny = body.iter().rposition(|d| d.name == "deny");
    let mut deny: Vec<String> = Vec::new();
    let mut allow: Vec<String> = Vec::new();
    for d in &body {
        if d.args[0].starts_with("unix:") {
            tx.report.left(d, "weir has no Unix-socket clients");
            continue;
        }
        if d.name == "deny" {
            deny.push(d.args[0].clone());
        } else {
            allow.push(d.args[0].clone());
        }
    }
    let comments: Vec<String> = rules.iter().map(|d| d.source()).collect();
    let allow_before_deny = matches!((first_allow, last_deny), (Some(a), Some(l)) if a < l);
    if allow_before_deny && !(deny_all && allow_then_deny_ok(&body)) {
        for d in &rules {
            tx.report.left(
                d,
                "this order of allow and deny cannot be written as weir's two lists",
            );
        }
        return Ok(());
    }
    let mut p = Node::map();
    if deny_all && allow.is_empty() {
        deny.extend(["0.0.0.0/0".to_string(), "::/0".to_string()]);
    }
    if !deny.is_empty() {
        p.set("deny", Node::strs(deny));
    }
    if deny_all && !allow.is_empty() {
        p.set("allow", Node::strs(allow));
    }
    if matches!(&p, Node::Map(e) if e.is_empty()) {
        return Ok(());
    }
    let mut plugin = Node::map();
    plugin.set("access", p);
    plugins.push((plugin, comments));
    Ok(())
}

/// `deny…; allow…` (every deny before every allow) is the only mixed order weir's lists
/// keep; anything else was reported.
fn allow_then_deny_ok(body: &[&&Directive]) -> bool {
    let first_allow = body.iter().position(|d| d.name == "allow");
    let last_deny = body.iter().rposition(|d| d.name == "deny");
    match (first_allow, last_deny) {
        (Some(a), Some(l)) => l < a,
        _ => true,
    }
}

/// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` in effect at `scope` →
/// `server.trusted_proxies` and `server.real_ip_header`.
pub fn real_ip(tx: &mut Tx, scope: &Scope) -> Result<(), SyntaxError> {
    let from = scope.group(&["set_real_ip_from"]);
    if from.is_empty() {
        return Ok(());
    }
    let mut cidrs = Vec::new();
    for d in &from {
        let a = Tx::arg(d, 0)?;
        if a.starts_with("unix:") {
            tx.take(d);
            tx.report.left(d, "weir has no Unix-socket clients");
            continue;
        }
        cidrs.push(a.to_string());
    }
    if let Some(first) = from.first() {
        tx.global("trusted_proxies", Node::strs(cidrs), first);
        for d in &from {
            tx.take(d);
        }
    }
    match scope.one("real_ip_header") {
        Some(h) if Tx::arg(h, 0)? == "proxy_protocol" => {
            tx.take(h);
            tx.report.left(h, "weir does not read the PROXY protocol");
        }
        Some(h) => tx.global("real_ip_header", Node::str(Tx::arg(h, 0)?), h),
        None => {
            // nginx's default is X-Real-IP.
            let d = from[0];
            tx.global("real_ip_header", Node::str("X-Real-IP"), d);
        }
    }
    match scope.one("real_ip_recursive") {
        Some(r) if Tx::flag(r)? => tx.take(r),
        Some(r) => {
            tx.take(r);
            tx.report.note(
                r,
                "weir always works as `real_ip_recursive on`: trusted addresses at the end of the header are skipped",
            );
        }
        None => tx.report.note(
            from[0],
            "weir works as `real_ip_recursive on` (nginx's default is off): trusted addresses at the end of the header are skipped",
        ),
    }
    Ok(())
}
