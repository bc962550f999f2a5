//! `http {}` and its `server {}` blocks: listeners, server names and locations → routes,
//! ordered so that weir's first match is nginx's choice: exact names before wildcard
//! names before the default server, and within one server exact locations, then prefixes
//! from the longest (nginx's longest-prefix rule).

use super::location::{self, Declared};
use super::values::listen_addr;
use super::{cache, limits, upstreams, Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// One route before ordering.
struct Candidate {
    /// 0: exact server names, 1: wildcard names, 2: the default server (any host).
    host_rank: u8,
    /// Longest wildcard first within rank 1.
    host_len: usize,
    hosts: Vec<String>,
    server: usize,
    path: String,
    /// `location = /x`.
    exact: bool,
    body: location::Body,
    comments: Vec<String>,
}

/// `http { … }`: declarations first, then every server.
pub fn http(tx: &mut Tx, main: &Scope, d: &Directive) -> Result<(), SyntaxError> {
    let scope = main.inner(d.children());
    let mut decl = Declared::default();
    for c in d.children() {
        match c.name.as_str() {
            "upstream" => upstreams::block(tx, &mut decl.upstreams, c)?,
            "limit_req_zone" => limits::req_zone(tx, &mut decl.zones, c)?,
            "limit_conn_zone" => limits::conn_zone(tx, &mut decl.zones, c)?,
            "proxy_cache_path" => cache::cache_path(tx, &mut decl.caches, c)?,
            _ => {}
        }
    }
    let servers: Vec<&Directive> = d.children().iter().filter(|c| c.name == "server").collect();
    let default = servers
        .iter()
        .position(|s| {
            s.children().iter().any(|l| {
                l.name == "listen"
                    && l.args
                        .iter()
                        .any(|a| a == "default_server" || a == "default")
            })
        })
        .unwrap_or(0);
    let mut candidates = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, s) in servers.iter().enumerate() {
        tx.take(s);
        let named = Named {
            index: i,
            is_default: i == default,
        };
        server(tx, &mut decl, &scope, s, named, &mut seen, &mut candidates)?;
    }
    if servers.is_empty() {
        tx.report
            .left(d, "no `server` block: weir would have no route");
    }
    // weir's first match = nginx's choice.
    candidates.sort_by(|a, b| {
        (
            a.host_rank,
            std::cmp::Reverse(a.host_len),
            a.server,
            !a.exact,
            std::cmp::Reverse(a.path.len()),
        )
            .cmp(&(
                b.host_rank,
                std::cmp::Reverse(b.host_len),
                b.server,
                !b.exact,
                std::cmp::Reverse(b.path.len()),
            ))
    });
    let mut names: Vec<String> = Vec::new();
    for c in candidates {
        let base = format!(
            "{}{}{}",
            c.hosts.first().map_or("default", String::as_str),
            if c.exact { "=" } else { "" },
            c.path
        );
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        names.push(name.clone());
        let mut route = Node::map();
        route.set("name", Node::str(name));
        let mut m = Node::map();
        if !c.hosts.is_empty() {
            m.set("host", Node::strs(c.hosts.clone()));
        }
        if c.exact {
            m.set("path", Node::str(c.path.clone()));
        } else if c.path != "/" {
            m.set("path_prefix", Node::str(c.path.clone()));
        }
        if !matches!(&m, Node::Map(e) if e.is_empty()) {
            route.set("match", m);
        }
        route.set("upstream", Node::str(c.body.upstream.clone()));
        if let Some(src) = &c.body.streaming {
            route.set_commented("request_buffering", Node::bool(false), vec![src.clone()]);
        }
        if !c.body.plugins.is_empty() {
            let mut list = Node::List(Vec::new());
            for (p, comments) in c.body.plugins {
                list.push(p, comments);
            }
            route.set("plugins", list);
        }
        tx.routes.push(route, c.comments);
    }
    cache::finish(tx, decl.caches);
    upstreams::finish(tx, decl.upstreams);
    Ok(())
}

/// A server's place: its index and whether it is the default server.
struct Named {
    index: usize,
    is_default: bool,
}

/// One server block; `seen` maps the names of earlier servers to their `server_name` line.
fn server(
    tx: &mut Tx,
    decl: &mut Declared,
    http: &Scope,
    s: &Directive,
    place: Named,
    seen: &mut BTreeMap<String, String>,
    out: &mut Vec<Candidate>,
) -> Result<(), SyntaxError> {
    let Named { index, is_default } = place;
    let scope = http.inner(s.children());
    listens(tx, &scope, s)?;
    // A server that only answers `return` (the `listen 80` → https redirect): no routes,
    // and its names do not hide the server that really serves them.
    if let Some(r) = scope.here("return") {
        tx.take(r);
        for n in s.children().iter().filter(|d| d.name == "server_name") {
            tx.take(n);
        }
        tx.report.left(
            r,
            "`return` has no weir equivalent (weir proxies or redirects to an upstream's server)",
        );
        return Ok(());
    }
    let mut exact_names = Vec::new();
    let mut wild_names: Vec<String> = Vec::new();
    let mut name_src = Vec::new();
    let mut duplicates = 0;
    for n in s.children().iter().filter(|d| d.name == "server_name") {
        tx.take(n);
        name_src.push(n.source());
        for name in &n.args {
            if name.is_empty() || name == "_" {
                continue;
            }
            let lower = name.to_ascii_lowercase();
            if let Some(first) = seen.get(&lower) {
                // Usually the `listen 80` twin of a TLS server: weir's routes match on
                // every listener, so the first server's routes answer for both.
                tx.report.left(
                    n,
                    format!(
                        "`{name}` is also a name of the server at {first}; weir routes do not tell listeners apart, so that server's routes answer here too"
                    ),
                );
                duplicates += 1;
                continue;
            }
            seen.insert(lower, n.at.to_string());
            if name.starts_with('~') || name.ends_with(".*") {
                tx.report.left(
                    n,
                    format!("`{name}`: weir matches exact names and `*.suffix` only"),
                );
            } else if let Some(rest) = name.strip_prefix('.') {
                exact_names.push(rest.to_string());
                wild_names.push(format!("*.{rest}"));
            } else if name.starts_with("*.") {
                wild_names.push(name.clone());
            } else {
                exact_names.push(name.to_ascii_lowercase());
            }
        }
    }
    if duplicates > 0 && exact_names.is_empty() && wild_names.is_empty() {
        // Every name belongs to an earlier server (reported above): nothing of this one
        // is reachable in weir.
        tx.take_all(s);
        return Ok(());
    }
    // Named locations, for error_page chains.
    let mut named = BTreeMap::new();
    for l in s.children().iter().filter(|d| d.name == "location") {
        if let Some(n) = l.args.first().filter(|a| a.starts_with('@')) {
            named.insert(n.clone(), (scope.clone(), l));
        }
    }
    let mut routes: Vec<(String, bool, location::Body, Vec<String>)> = Vec::new();
    for l in s.children().iter().filter(|d| d.name == "location") {
        locations(tx, decl, &scope, l, &named, &mut routes)?;
    }
    let mut host_sets: Vec<(u8, usize, Vec<String>)> = Vec::new();
    if !exact_names.is_empty() {
        host_sets.push((0, 0, exact_names.clone()));
    }
    if !wild_names.is_empty() {
        let longest = wild_names.iter().map(String::len).max().unwrap_or(0);
        host_sets.push((1, longest, wild_names.clone()));
    }
    if is_default {
        host_sets.push((2, 0, Vec::new()));
    } else if host_sets.is_empty() {
        tx.report.left(
            s,
            "a server without names that is not the default server: weir cannot tell it apart by listener",
        );
        return Ok(());
    }
    for (path, exact, body, comments) in routes {
        for (rank, len, hosts) in &host_sets {
            let mut c = comments.clone();
            c.extend(name_src.iter().cloned());
            out.push(Candidate {
                host_rank: *rank,
                host_len: *len,
                hosts: hosts.clone(),
                server: index,
                path: path.clone(),
                exact,
                body: location::Body {
                    upstream: body.upstream.clone(),
                    plugins: body.plugins.clone(),
                    streaming: body.streaming.clone(),
                },
                comments: c,
            });
        }
    }
    Ok(())
}

/// A location (and its nested locations) → route bodies.
fn locations<'a>(
    tx: &mut Tx,
    decl: &mut Declared,
    outer: &Scope<'a>,
    l: &'a Directive,
    named: &BTreeMap<String, (Scope<'a>, &'a Directive)>,
    out: &mut Vec<(String, bool, location::Body, Vec<String>)>,
) -> Result<(), SyntaxError> {
    let (modifier, path) = match l.args.as_slice() {
        [p] => ("", p.as_str()),
        [m, p] => (m.as_str(), p.as_str()),
        _ => return Err(Tx::invalid(l, "invalid number of arguments")),
    };
    if path.starts_with('@') {
        // Used by an error_page chain, or reported as left over.
        return Ok(());
    }
    tx.take(l);
    let exact = match modifier {
        "" | "^~" => false,
        "=" => true,
        "~" | "~*" => {
            tx.take_all(l);
            tx.report.left(
                l,
                "regular-expression location: weir matches path prefixes, so it is not guessed",
            );
            return Ok(());
        }
        other => {
            return Err(Tx::invalid(
                l,
                format!("invalid location modifier \"{other}\""),
            ))
        }
    };
    let scope = outer.inner(l.children());
    if let Some(r) = scope.here("return") {
        tx.take(r);
        tx.report.left(
            r,
            "`return` has no weir equivalent (weir proxies or redirects to an upstream's server)",
        );
    } else if let Some(pass) = scope.here("proxy_pass") {
        if let Some(body) = location::body(tx, decl, &scope, pass, path, named)? {
            out.push((path.to_string(), exact, body, vec![l.source()]));
        }
    } else if !l.children().iter().any(|c| c.name == "location") {
        tx.report.left(
            l,
            "this location does not proxy (files, or nothing): weir only proxies, so its requests go to the next matching route",
        );
    }
    for inner in l.children().iter().filter(|c| c.name == "location") {
        locations(tx, decl, &scope, inner, named, out)?;
    }
    Ok(())
}

/// The server's `listen` lines → `server.listen`; TLS from `ssl_certificate`.
fn listens(tx: &mut Tx, scope: &Scope, s: &Directive) -> Result<(), SyntaxError> {
    let lines: Vec<&Directive> = s.children().iter().filter(|d| d.name == "listen").collect();
    if lines.is_empty() {
        tx.report.note(
            s,
            "no `listen`: nginx listens on *:80 (*:8000 when not root); weir on 0.0.0.0:80",
        );
    }
    let http2_directive = scope.one("http2");
    for d in &lines {
        tx.take(d);
        let addr = match listen_addr(Tx::arg(d, 0)?) {
            Ok(a) => a,
            Err(why) => {
                tx.report.left(d, why);
                continue;
            }
        };
        let ssl = d.args.iter().any(|a| a == "ssl")
            || scope
                .one("ssl")
                .is_some_and(|x| x.args.first().map(String::as_str) == Some("on"));
        let mut http2 = d.args.iter().any(|a| a == "http2");
        if let Some(h) = http2_directive {
            tx.take(h);
            http2 |= Tx::flag(h)?;
        }
        for a in &d.args[1..] {
            match a.as_str() {
                "ssl" | "http2" | "default_server" | "default" | "reuseport" | "deferred"
                | "fastopen" | "bind" => {}
                a if a.starts_with("backlog=")
                    || a.starts_with("rcvbuf=")
                    || a.starts_with("sndbuf=") => {}
                other => tx.report.left(
                    d,
                    format!("`{other}`: weir's listeners have no such option"),
                ),
            }
        }
        let mut item = Node::map();
        item.set("addr", Node::str(addr.clone()));
        let mut comments = vec![d.source()];
        if ssl {
            let cert = scope.one("ssl_certificate");
            let key = scope.one("ssl_certificate_key");
            match (cert, key) {
                (Some(c), Some(k)) => {
                    tx.take(c);
                    tx.take(k);
                    comments.push(c.source());
                    comments.push(k.source());
                    let mut tls = Node::map();
                    tls.set("cert", Node::str(tx.path(Tx::arg(c, 0)?)))
                        .set("key", Node::str(tx.path(Tx::arg(k, 0)?)));
                    item.set("tls", tls);
                }
                _ => {
                    return Err(SyntaxError::at(
                        &d.at,
                        "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"
                            .into(),
                    ))
                }
            }
            if http2 {
                item.set("http2", Node::bool(true));
            }
        } else if http2 {
            tx.report.left(
                d,
                "HTTP/2 without TLS (h2c): weir offers HTTP/2 over TLS only",
            );
        }
        add_listener(tx, item, addr, comments, d);
    }
    Ok(())
}

fn add_listener(tx: &mut Tx, item: Node, addr: String, comments: Vec<String>, d: &Directive) {
    match tx.listen.iter().find(|(a, _, _)| *a == addr) {
        Some((_, existing, _)) if *existing == item => {}
        Some(_) => tx.report.left(
            d,
            "another server listens on this address with other TLS settings; weir has one certificate per listener",
        ),
        None => {
            // [::]:P next to 0.0.0.0:P cannot both be bound (IPv6 sockets take IPv4 too).
            let port = addr.rsplit_once(':').map(|x| x.1).unwrap_or("");
            let other = if addr.starts_with("[::]:") {
                format!("0.0.0.0:{port}")
            } else if addr.starts_with("0.0.0.0:") {
                format!("[::]:{port}")
            } else {
                String::new()
            };
            if tx.listen.iter().any(|(a, _, _)| *a == other) {
                tx.report.note(
                    d,
                    "0.0.0.0 and [::] of one port: weir binds the first only (an IPv6 socket usually takes IPv4 too)",
                );
                return;
            }
            tx.listen.push((addr, item, comments));
        }
    }
}
