//! Upstreams: `upstream {}` blocks and `proxy_pass` targets → `upstreams:`. nginx sets
//! retries, timeouts, the Host header and TLS per location; weir per upstream, so each
//! distinct combination becomes its own weir upstream (`images`, `images_2` …). The
//! failover idiom `error_page 502 504 = @next` + `location @next { proxy_pass … }` becomes
//! further tiers.

use super::failover::error_pages;
use super::pass::parse_pass;
use super::values::{duration, server_addr};
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// One `server` line of an `upstream` block.
#[derive(Debug, Clone, PartialEq)]
struct Server {
    addr: String,
    weight: u32,
    backup: bool,
    max_fails: Option<u32>,
    fail_timeout: Option<u64>,
}

/// A parsed `upstream {}` block.
#[derive(Debug, Clone)]
struct Block {
    servers: Vec<Server>,
    keepalive: Option<u64>,
    balance: Option<&'static str>,
    source: String,
    directive: Directive,
}

/// What a location asks of its upstream; equal requests share one weir upstream.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    /// The nginx upstream name or `host:port` of proxy_pass.
    target: String,
    tls: bool,
    host: Option<String>,
    sni: Option<String>,
    tls_ca: Option<String>,
    next_upstream: Option<Vec<String>>,
    tries: Option<u64>,
    next_timeout: Option<u64>,
    connect_timeout: Option<u64>,
    read_timeout: Option<u64>,
    /// Further tiers from error_page chains: (nginx target, tls).
    chain: Vec<String>,
}

/// Upstream blocks and the weir upstreams made so far.
#[derive(Debug, Default)]
pub struct Upstreams {
    blocks: BTreeMap<String, Block>,
    made: Vec<(String, Spec, Vec<String>)>,
}

/// `upstream NAME { server …; keepalive N; … }`
pub fn block(tx: &mut Tx, ups: &mut Upstreams, d: &Directive) -> Result<(), SyntaxError> {
    tx.take(d);
    let name = Tx::arg(d, 0)?.to_string();
    let mut servers = Vec::new();
    let mut keepalive = None;
    let mut balance = None;
    for c in d.children() {
        match c.name.as_str() {
            "server" => {
                tx.take(c);
                let mut s = Server {
                    addr: match server_addr(Tx::arg(c, 0)?, 80) {
                        Ok(a) => a,
                        Err(why) => {
                            tx.report.left(c, why);
                            continue;
                        }
                    },
                    weight: 1,
                    backup: false,
                    max_fails: None,
                    fail_timeout: None,
                };
                let mut down = false;
                for a in &c.args[1..] {
                    let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
                    match k {
                        "weight" => {
                            s.weight = v
                                .parse()
                                .map_err(|_| Tx::invalid(c, format!("invalid parameter \"{a}\"")))?
                        }
                        "max_fails" => {
                            s.max_fails = Some(v.parse().map_err(|_| {
                                Tx::invalid(c, format!("invalid parameter \"{a}\""))
                            })?)
                        }
                        "fail_timeout" => {
                            s.fail_timeout = Some(super::values::time_ms(v).ok_or_else(|| {
                                Tx::invalid(c, format!("invalid parameter \"{a}\""))
                            })?)
                        }
                        "backup" => s.backup = true,
                        "down" => down = true,
                        "resolve" => {}
                        _ => tx
                            .report
                            .left(c, format!("`{a}`: weir's servers have no such parameter")),
                    }
                }
                if down {
                    tx.report.note(c, "`down`: left out of the weir upstream");
                } else {
                    servers.push(s);
                }
            }
            "keepalive" => {
                tx.take(c);
                keepalive = Some(
                    Tx::arg(c, 0)?
                        .parse()
                        .map_err(|_| Tx::invalid(c, "invalid value"))?,
                );
            }
            "hash" if Tx::arg(c, 0)? == "$request_uri" => {
                tx.take(c);
                balance = Some("hash");
                if c.args.get(1).map(String::as_str) != Some("consistent") {
                    tx.report
                        .note(c, "weir's hash is always consistent (ketama)");
                }
            }
            "random" if c.args.is_empty() => {
                tx.take(c);
                balance = Some("random");
            }
            "keepalive_timeout" => {
                tx.take(c);
                tx.report
                    .note(c, "weir closes idle upstream connections after 60 s");
            }
            _ => {}
        }
    }
    ups.blocks.insert(
        name,
        Block {
            servers,
            keepalive,
            balance,
            source: d.source(),
            directive: Directive {
                block: Some(Vec::new()),
                ..d.clone()
            },
        },
    );
    Ok(())
}

/// The weir upstream for the location at `scope` with `proxy_pass` `pass`; `None` when the
/// target cannot be translated (reported).
pub fn for_location(
    tx: &mut Tx,
    ups: &mut Upstreams,
    scope: &Scope,
    pass: &Directive,
    prefix: &str,
    named: &BTreeMap<String, (Scope, &Directive)>,
) -> Result<Option<String>, SyntaxError> {
    tx.take(pass);
    let Some((tls, target)) = parse_pass(tx, pass, prefix)? else {
        return Ok(None);
    };
    let mut spec = Spec {
        target: target.clone(),
        tls,
        host: None,
        sni: None,
        tls_ca: None,
        next_upstream: None,
        tries: None,
        next_timeout: None,
        connect_timeout: None,
        read_timeout: None,
        chain: Vec::new(),
    };
    let mut comments = vec![pass.source()];
    let mut keep = |tx: &mut Tx, d: &Directive| {
        tx.take(d);
        comments.push(d.source());
    };
    // The Host header: nginx sends $proxy_host unless told otherwise.
    let headers = scope.group(&["proxy_set_header"]);
    let host_line = headers.iter().find(|h| {
        h.args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case("host"))
    });
    match host_line {
        None => spec.host = Some(target.clone()),
        Some(h) => match h.args.get(1).map(String::as_str) {
            Some("$host") | Some("$http_host") => keep(tx, h),
            Some("$proxy_host") => {
                keep(tx, h);
                spec.host = Some(target.clone());
            }
            Some(v) if !v.contains('$') && !v.is_empty() => {
                keep(tx, h);
                spec.host = Some(v.to_string());
            }
            _ => {
                tx.take(h);
                tx.report.left(
                    h,
                    "weir sends the client's Host, a fixed name or none other",
                );
            }
        },
    }
    if let Some(d) = scope.one("proxy_next_upstream") {
        keep(tx, d);
        let mut list = Vec::new();
        for a in &d.args {
            match a.as_str() {
                "invalid_header" => tx.report.note(
                    d,
                    "invalid_header: weir counts an invalid response header as `error`",
                ),
                "non_idempotent" => tx
                    .report
                    .left(d, "weir never retries POST, LOCK or PATCH once sent"),
                "error" | "timeout" | "http_500" | "http_502" | "http_503" | "http_504"
                | "http_403" | "http_404" | "http_429" | "off" => list.push(a.clone()),
                other => return Err(Tx::invalid(d, format!("invalid value \"{other}\""))),
            }
        }
        if list.is_empty() {
            list.push("error".into());
        }
        spec.next_upstream = Some(list);
    }
    if let Some(d) = scope.one("proxy_next_upstream_tries") {
        keep(tx, d);
        spec.tries = Some(
            Tx::arg(d, 0)?
                .parse()
                .map_err(|_| Tx::invalid(d, "invalid value"))?,
        );
    }
    for (name, slot) in [
        ("proxy_next_upstream_timeout", &mut spec.next_timeout),
        ("proxy_connect_timeout", &mut spec.connect_timeout),
        ("proxy_read_timeout", &mut spec.read_timeout),
    ] {
        if let Some(d) = scope.one(name) {
            *slot = Some(tx.time_arg(d, 0)?);
            keep(tx, d);
        }
    }
    if tls {
        tls_settings(tx, scope, &mut spec, &mut comments)?;
    }
    let chain = error_pages(tx, scope, named, &mut comments)?;
    if !chain.targets.is_empty() {
        let list = spec
            .next_upstream
            .get_or_insert_with(|| vec!["error".into(), "timeout".into()]);
        for c in chain.conditions {
            if !list.contains(&c) {
                list.push(c);
            }
        }
        spec.chain = chain.targets;
    }
    Ok(Some(name_for(ups, spec, comments)))
}

fn tls_settings(
    tx: &mut Tx,
    scope: &Scope,
    spec: &mut Spec,
    comments: &mut Vec<String>,
) -> Result<(), SyntaxError> {
    let server_name = match scope.one("proxy_ssl_server_name") {
        Some(d) => {
            tx.take(d);
            comments.push(d.source());
            Tx::flag(d)?
        }
        None => false,
    };
    let name = scope.one("proxy_ssl_name");
    match (server_name, name) {
        (true, Some(n)) => {
            tx.take(n);
            comments.push(n.source());
            spec.sni = Some(Tx::arg(n, 0)?.to_string());
        }
        (true, None) => {
            let host = spec.target.split(':').next().unwrap_or(&spec.target);
            spec.sni = Some(host.to_string());
        }
        (false, n) => {
            if let Some(n) = n {
                tx.take(n);
                comments.push(n.source());
                spec.sni = Some(Tx::arg(n, 0)?.to_string());
            }
        }
    }
    match scope.one("proxy_ssl_verify") {
        Some(v) if Tx::flag(v)? => {
            tx.take(v);
            comments.push(v.source());
        }
        Some(v) => {
            tx.take(v);
            tx.report.left(
                v,
                "weir always verifies upstream certificates (trust a private CA with tls_ca)",
            );
        }
        None => {
            if let Some(d) = scope.one("proxy_pass") {
                tx.report.note(
                    d,
                    "nginx does not verify upstream certificates by default; weir always does (tls_ca for a private CA)",
                );
            }
        }
    }
    if let Some(ca) = scope.one("proxy_ssl_trusted_certificate") {
        tx.take(ca);
        comments.push(ca.source());
        spec.tls_ca = Some(tx.path(Tx::arg(ca, 0)?));
    }
    Ok(())
}

/// The weir name for `spec`: an existing upstream with the same spec, or a new one.
fn name_for(ups: &mut Upstreams, spec: Spec, comments: Vec<String>) -> String {
    if let Some((name, _, _)) = ups.made.iter().find(|(_, s, _)| *s == spec) {
        return name.clone();
    }
    let base = spec.target.clone();
    let mut name = base.clone();
    let mut n = 2;
    while ups.made.iter().any(|(m, _, _)| *m == name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    ups.made.push((name.clone(), spec, comments));
    name
}

/// The servers of an nginx target as (tier name, servers, source comments).
fn tiers_of(
    ups: &Upstreams,
    target: &str,
    tls: bool,
) -> Vec<(String, Vec<Server>, Option<String>)> {
    match ups.blocks.get(target) {
        Some(b) => {
            let primary: Vec<Server> = b.servers.iter().filter(|s| !s.backup).cloned().collect();
            let backup: Vec<Server> = b.servers.iter().filter(|s| s.backup).cloned().collect();
            let mut out = vec![(target.to_string(), primary, Some(b.source.clone()))];
            if !backup.is_empty() {
                out.push((format!("{target}_backup"), backup, None));
            }
            out
        }
        None => vec![(
            target.to_string(),
            vec![Server {
                addr: server_addr(target, if tls { 443 } else { 80 })
                    .unwrap_or_else(|_| target.to_string()),
                weight: 1,
                backup: false,
                max_fails: None,
                fail_timeout: None,
            }],
            None,
        )],
    }
}

/// Writes every weir upstream into `upstreams:`.
pub fn finish(tx: &mut Tx, ups: Upstreams) {
    for (name, spec, comments) in &ups.made {
        let mut up = Node::map();
        let mut tiers = Node::List(Vec::new());
        let mut all = Vec::new();
        let mut keepalive = None;
        let mut balance = None;
        for target in std::iter::once(&spec.target).chain(&spec.chain) {
            if let Some(b) = ups.blocks.get(target) {
                keepalive = keepalive.or(b.keepalive);
                balance = balance.or(b.balance);
            }
            for (tier, servers, source) in tiers_of(&ups, target, spec.tls) {
                let mut list = Node::List(Vec::new());
                for s in &servers {
                    list.push(server_node(s, spec), Vec::new());
                    all.push(s.clone());
                }
                let mut t = Node::map();
                t.set("name", Node::str(tier)).set("servers", list);
                tiers.push(t, source.into_iter().collect());
            }
        }
        up.set("tiers", tiers);
        if let Some(b) = balance {
            up.set("balance", Node::str(b));
        }
        if let Some(ca) = &spec.tls_ca {
            up.set("tls_ca", Node::str(ca.clone()));
        }
        // weir keeps max_fails and fail_timeout per upstream: the servers' own values when
        // they agree.
        let fails: Vec<u32> = all.iter().map(|s| s.max_fails.unwrap_or(1)).collect();
        if let Some(f) = fails.first() {
            if fails.iter().all(|x| x == f) && *f != 1 {
                up.set("max_fails", Node::int(f));
            }
        }
        let timeouts: Vec<u64> = all
            .iter()
            .map(|s| s.fail_timeout.unwrap_or(10_000))
            .collect();
        if let Some(t) = timeouts.first() {
            if timeouts.iter().all(|x| x == t) && *t != 10_000 {
                up.set("fail_timeout", Node::str(duration(*t)));
            }
        }
        if let Some(list) = &spec.next_upstream {
            up.set("next_upstream", Node::strs(list.clone()));
        }
        if let Some(t) = spec.tries {
            up.set("next_upstream_tries", Node::int(t));
        }
        for (key, v) in [
            ("next_upstream_timeout", spec.next_timeout),
            ("connect_timeout", spec.connect_timeout),
            ("read_timeout", spec.read_timeout),
        ] {
            if let Some(ms) = v {
                up.set(key, Node::str(duration(ms)));
            }
        }
        if let Some(k) = keepalive {
            up.set("keepalive", Node::int(k));
        }
        tx.upstreams
            .set_commented(name.clone(), up, comments.clone());
    }
    // Servers whose max_fails/fail_timeout differ within one upstream were not carried.
    for b in ups.blocks.values() {
        let f: Vec<_> = b
            .servers
            .iter()
            .map(|s| (s.max_fails.unwrap_or(1), s.fail_timeout.unwrap_or(10_000)))
            .collect();
        if f.windows(2).any(|w| w[0] != w[1]) {
            tx.report.left(
                &b.directive,
                "servers with different max_fails/fail_timeout: weir has one value per upstream (its defaults 1 and 10s were used)",
            );
        }
    }
}

fn server_node(s: &Server, spec: &Spec) -> Node {
    let plain = s.weight == 1 && !spec.tls && spec.host.is_none();
    if plain {
        return Node::str(s.addr.clone());
    }
    let mut m = Node::map();
    m.set("addr", Node::str(s.addr.clone()));
    if s.weight != 1 {
        m.set("weight", Node::int(s.weight));
    }
    if spec.tls {
        m.set("tls", Node::bool(true));
        if let Some(sni) = &spec.sni {
            m.set("sni", Node::str(sni.clone()));
        }
    }
    if let Some(h) = &spec.host {
        m.set("host", Node::str(h.clone()));
    }
    m
}
