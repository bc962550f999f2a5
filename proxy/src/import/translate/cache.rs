//! The cache: `proxy_cache_path` → `caches.NAME` (path, max_size, inactive) and the
//! `proxy_cache_*` directives of the locations using it → the zone's key, valid, use_stale,
//! lock_timeout, methods and status_header (weir keeps them per zone, nginx per location:
//! locations of one zone must agree), `proxy_cache` → the `cache` plugin.

use super::values::{duration, size, split_vars, Part};
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// A declared zone and the settings the first location using it gave it.
#[derive(Debug)]
pub struct CacheZone {
    /// The zone as YAML so far (path, max_size, inactive).
    node: Node,
    comments: Vec<String>,
    /// Per-location settings, fixed by the first location; `None` until then.
    settings: Option<Vec<(String, Node, String)>>,
}

/// `proxy_cache_path` zones by name.
#[derive(Debug, Default)]
pub struct CacheZones {
    zones: BTreeMap<String, CacheZone>,
}

/// `proxy_cache_path PATH levels=… keys_zone=NAME:SIZE inactive=… max_size=…;`
pub fn cache_path(tx: &mut Tx, zones: &mut CacheZones, d: &Directive) -> Result<(), SyntaxError> {
    tx.take(d);
    let path = tx.path(Tx::arg(d, 0)?);
    let mut name = None;
    let mut node = Node::map();
    node.set("path", Node::str(path));
    for a in &d.args[1..] {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match k {
            "keys_zone" => name = Some(v.split(':').next().unwrap_or(v).to_string()),
            "max_size" => {
                let bytes = super::values::size_bytes(v)
                    .ok_or_else(|| Tx::invalid(d, format!("invalid max_size \"{v}\"")))?;
                node.set("max_size", Node::str(size(bytes)));
            }
            "inactive" => {
                let ms = super::values::time_ms(v)
                    .ok_or_else(|| Tx::invalid(d, format!("invalid inactive \"{v}\"")))?;
                node.set("inactive", Node::str(duration(ms)));
            }
            "levels" | "use_temp_path" | "loader_files" | "loader_sleep" | "loader_threshold"
            | "manager_files" | "manager_sleep" | "manager_threshold" => {}
            "min_free" => tx.report.note(
                d,
                "min_free: weir bounds the zone by max_size only (a full disk is handled, not avoided)",
            ),
            _ => return Err(Tx::invalid(d, format!("invalid parameter \"{a}\""))),
        }
    }
    let name = name.ok_or_else(|| Tx::invalid(d, "\"keys_zone\" must be specified"))?;
    tx.report.note(
        d,
        "levels, keys_zone size and the loader/manager settings have no equivalent: weir's file layout and in-memory index are its own",
    );
    zones.zones.insert(
        name,
        CacheZone {
            node,
            comments: vec![d.source()],
            settings: None,
        },
    );
    Ok(())
}

/// A cache key template with only the variables weir knows, else why not.
fn cache_key(value: &str) -> Result<String, String> {
    for part in split_vars(value) {
        if let Part::Var(v) = part {
            let known = matches!(
                v.as_str(),
                "scheme" | "host" | "request_uri" | "uri" | "args"
            ) || v.starts_with("http_")
                || v.starts_with("cookie_");
            if !known {
                return Err(format!("the key's variable `${v}` has no weir equivalent"));
            }
        }
    }
    Ok(value.to_string())
}

/// The `cache` plugin for a location whose `proxy_cache` is in effect, with the zone's
/// settings taken from (or checked against) this location.
pub fn location(
    tx: &mut Tx,
    zones: &mut CacheZones,
    scope: &Scope,
    plugins: &mut Vec<(Node, Vec<String>)>,
) -> Result<(), SyntaxError> {
    let Some(d) = scope.one("proxy_cache") else {
        return Ok(());
    };
    tx.take(d);
    let name = Tx::arg(d, 0)?;
    if name == "off" {
        return Ok(());
    }
    if name.contains('$') {
        tx.report.left(d, "a cache zone chosen by a variable");
        return Ok(());
    }
    if !zones.zones.contains_key(name) {
        return Err(Tx::invalid(d, format!("unknown cache zone \"{name}\"")));
    }
    let settings = settings(tx, scope, d)?;
    let mut p = Node::map();
    p.set("zone", Node::str(name));
    let mut comments = vec![d.source()];
    if let Some(b) = scope.one("proxy_cache_bypass") {
        tx.take(b);
        let mut list = Vec::new();
        for a in &b.args {
            for part in split_vars(a) {
                match part {
                    Part::Var(v) if v.starts_with("http_") => list.push(format!(
                        "header:{}",
                        super::values::header_name(&v["http_".len()..])
                    )),
                    Part::Var(v) if v.starts_with("cookie_") => {
                        list.push(format!("cookie:{}", &v["cookie_".len()..]))
                    }
                    _ => {
                        tx.report.left(
                            b,
                            format!("`{a}`: weir bypasses on request headers and cookies only"),
                        );
                    }
                }
            }
        }
        if !list.is_empty() {
            p.set("bypass", Node::strs(list));
            comments.push(b.source());
        }
    }
    let zone = zones
        .zones
        .get_mut(name)
        .ok_or_else(|| Tx::invalid(d, "unknown cache zone"))?;
    match &zone.settings {
        None => {
            for (k, v, src) in &settings {
                zone.node.set(k.clone(), v.clone());
                if !zone.comments.contains(src) {
                    zone.comments.push(src.clone());
                }
            }
            zone.settings = Some(settings);
        }
        Some(first) if *first == settings => {}
        Some(first) => {
            let differs = settings
                .iter()
                .find(|s| !first.contains(s))
                .or_else(|| first.iter().find(|s| !settings.contains(s)))
                .map(|(k, _, _)| k.clone())
                .unwrap_or_default();
            tx.report.left(
                d,
                format!(
                    "weir keeps cache settings per zone; this location's `{differs}` differs from the first location using `{name}`"
                ),
            );
        }
    }
    let mut plugin = Node::map();
    plugin.set("cache", p);
    plugins.push((plugin, comments));
    Ok(())
}

/// The zone settings the location's directives give: (key, value, source).
fn settings(
    tx: &mut Tx,
    scope: &Scope,
    cache: &Directive,
) -> Result<Vec<(String, Node, String)>, SyntaxError> {
    let mut out = Vec::new();
    match scope.one("proxy_cache_key") {
        Some(k) => {
            tx.take(k);
            match cache_key(Tx::arg(k, 0)?) {
                Ok(key) => out.push(("key".into(), Node::str(key), k.source())),
                Err(why) => tx.report.left(k, why),
            }
        }
        None => tx.report.note(
            cache,
            "nginx's default key is $scheme$proxy_host$request_uri; weir's is $scheme$host$request_uri (one object per requested host)",
        ),
    }
    let valid = scope.group(&["proxy_cache_valid"]);
    if !valid.is_empty() {
        let mut map = Node::map();
        let src = valid[0].source();
        for v in &valid {
            tx.take(v);
            let (time, codes) = v
                .args
                .split_last()
                .ok_or_else(|| Tx::invalid(v, "invalid number of arguments"))?;
            let ms = super::values::time_ms(time)
                .ok_or_else(|| Tx::invalid(v, format!("invalid time value \"{time}\"")))?;
            let codes: Vec<&str> = if codes.is_empty() {
                vec!["200", "301", "302"]
            } else {
                codes.iter().map(String::as_str).collect()
            };
            for c in codes {
                map.set(c, Node::str(duration(ms)));
            }
        }
        out.push(("valid".into(), map, src));
    }
    if let Some(s) = scope.one("proxy_cache_use_stale") {
        tx.take(s);
        let mut list = Vec::new();
        for a in &s.args {
            match a.as_str() {
                "off" => {}
                "error" | "timeout" | "updating" | "http_500" | "http_502" | "http_503"
                | "http_504" | "http_404" => list.push(a.clone()),
                other => tx.report.left(
                    s,
                    format!("`{other}`: weir serves stale copies on error, timeout, updating and http_500/502/503/504/404 only"),
                ),
            }
        }
        out.push(("use_stale".into(), Node::strs(list), s.source()));
    }
    let lock = match scope.one("proxy_cache_lock") {
        Some(l) => {
            tx.take(l);
            Some((Tx::flag(l)?, l.source()))
        }
        None => None,
    };
    match lock {
        Some((true, src)) => {
            let t = match scope.one("proxy_cache_lock_timeout") {
                Some(t) => {
                    tx.take(t);
                    tx.time_arg(t, 0)?
                }
                None => 5000,
            };
            out.push(("lock_timeout".into(), Node::str(duration(t)), src));
        }
        // nginx's lock is off unless asked for; weir's is on by default.
        _ => out.push((
            "lock_timeout".into(),
            Node::str("0s"),
            lock.map_or_else(|| cache.source(), |(_, s)| s),
        )),
    }
    if let Some(t) = scope.one("proxy_cache_lock_timeout") {
        tx.take(t);
    }
    if let Some(m) = scope.one("proxy_cache_methods") {
        tx.take(m);
        for a in &m.args {
            if a != "GET" && a != "HEAD" {
                tx.report
                    .left(m, format!("`{a}`: weir caches GET and HEAD only"));
            }
        }
    }
    if let Some(c) = scope.one("proxy_cache_convert_head") {
        tx.take(c);
        if !Tx::flag(c)? {
            tx.report
                .left(c, "weir always answers HEAD from the cached GET");
        }
    }
    match scope.one("proxy_cache_revalidate") {
        Some(r) => {
            tx.take(r);
            if !Tx::flag(r)? {
                tx.report
                    .note(r, "weir always revalidates expired objects with their validators");
            }
        }
        None => tx.report.note(
            cache,
            "weir revalidates expired objects with their validators (nginx's proxy_cache_revalidate on)",
        ),
    }
    // The status header: `add_header NAME $upstream_cache_status` among the location's
    // add_header lines, else none.
    let status = scope
        .group(&["add_header"])
        .into_iter()
        .find(|h| h.args.get(1).map(String::as_str) == Some("$upstream_cache_status"));
    match status {
        Some(h) => {
            tx.take(h);
            out.push((
                "status_header".into(),
                Node::str(h.args[0].clone()),
                h.source(),
            ));
        }
        None => out.push(("status_header".into(), Node::bool(false), cache.source())),
    }
    Ok(out)
}

/// Writes the zones into `caches:`.
pub fn finish(tx: &mut Tx, zones: CacheZones) {
    for (name, z) in zones.zones {
        tx.caches.set_commented(name, z.node, z.comments);
    }
}
