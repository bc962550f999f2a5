//! `http {}` and its `server {}` blocks: listeners, server names and locations → routes,
//! ordered so that weir's first match is nginx's choice: exact names before wildcard
//! names before the default server (one per kind of listener, plain or TLS, with
//! `match.scheme` when both kinds exist), and within one server exact locations, then prefixes
//! from the longest (nginx's longest-prefix rule).

use super::listeners::{listens, Kinds};
use super::location::{self, Declared, Target};
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
    /// Before the server's other routes: `if ($scheme = http) { return …; }`.
    first: bool,
    /// `match.scheme`: `Some(true)` https only, `Some(false)` http only.
    tls: Option<bool>,
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
    let kinds: Vec<Kinds> = servers
        .iter()
        .map(|s| Kinds::of(&scope.inner(s.children()), s))
        .collect();
    // Only when some listeners are TLS and some are not do routes need `match.scheme` to
    // tell an nginx server on the one from a server on the other.
    let mixed = kinds.iter().any(|k| k.tls) && kinds.iter().any(|k| k.plain);
    // nginx's default server of a listener: the one marked `default_server`, else the first.
    let default_of = |tls: bool| {
        let with_kind: Vec<usize> = (0..servers.len())
            .filter(|i| if tls { kinds[*i].tls } else { kinds[*i].plain })
            .collect();
        let marked = |i: &usize| {
            if tls {
                kinds[*i].marked_tls
            } else {
                kinds[*i].marked_plain
            }
        };
        with_kind
            .iter()
            .copied()
            .find(marked)
            .or(with_kind.first().copied())
    };
    let (default_plain, default_tls) = (default_of(false), default_of(true));
    for s in &servers {
        tx.take(s);
        listens(tx, &scope.inner(s.children()), s)?;
    }
    let mut candidates = Vec::new();
    let mut seen = BTreeMap::new();
    // Servers that proxy claim their names first: a server that only answers `return` (the
    // `listen 80` redirect) does not hide them where weir cannot tell the two apart.
    let mut order: Vec<usize> = (0..servers.len()).collect();
    order.sort_by_key(|i| servers[*i].children().iter().any(|c| c.name == "return"));
    for i in order {
        let k = &kinds[i];
        let place = if mixed {
            let (p, t) = (default_plain == Some(i), default_tls == Some(i));
            Place {
                index: i,
                scheme: k.scheme(),
                default_scheme: match (p, t) {
                    (false, false) => None,
                    (true, false) => Some(Some(false)),
                    (false, true) => Some(Some(true)),
                    (true, true) => Some(None),
                },
            }
        } else {
            Place {
                index: i,
                scheme: None,
                default_scheme: (default_plain.or(default_tls) == Some(i)).then_some(None),
            }
        };
        server(
            tx,
            &mut decl,
            &scope,
            servers[i],
            place,
            &mut seen,
            &mut candidates,
        )?;
    }
    if servers.is_empty() {
        tx.report
            .left(d, "no `server` block: weir would have no route");
    }
    // weir's first match = nginx's choice (for each scheme).
    candidates.sort_by(|a, b| {
        (
            a.host_rank,
            std::cmp::Reverse(a.host_len),
            a.server,
            !a.first,
            !a.exact,
            std::cmp::Reverse(a.path.len()),
        )
            .cmp(&(
                b.host_rank,
                std::cmp::Reverse(b.host_len),
                b.server,
                !b.first,
                !b.exact,
                std::cmp::Reverse(b.path.len()),
            ))
    });
    let mut names: Vec<String> = Vec::new();
    for c in candidates {
        let base = format!(
            "{}{}{}{}",
            match c.tls {
                Some(true) => "https://",
                Some(false) => "http://",
                None => "",
            },
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
        if let Some(tls) = c.tls {
            m.set("scheme", Node::str(if tls { "https" } else { "http" }));
        }
        if !matches!(&m, Node::Map(e) if e.is_empty()) {
            route.set("match", m);
        }
        match c.body.target {
            Target::Upstream(u) => route.set("upstream", Node::str(u)),
            Target::Return(answer) => route.set("return", answer),
        };
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

/// A server's place: its index, the scheme of its listeners (when routes must tell them
/// apart) and, when it is the default server of some listeners, their scheme.
struct Place {
    index: usize,
    scheme: Option<bool>,
    /// `Some(s)`: the default server for scheme `s` (`None`: both).
    default_scheme: Option<Option<bool>>,
}

/// Two schemes of routes overlap unless one is http only and the other https only.
fn overlap(a: Option<bool>, b: Option<bool>) -> bool {
    a.is_none() || b.is_none() || a == b
}

/// The routes of one server: (path, exact, body, comments).
type ServerRoutes = Vec<(String, bool, location::Body, Vec<String>)>;

/// One server block; `seen` maps the names of earlier servers to their scheme and
/// `server_name` line.
fn server(
    tx: &mut Tx,
    decl: &mut Declared,
    http: &Scope,
    s: &Directive,
    place: Place,
    seen: &mut BTreeMap<String, Vec<(Option<bool>, String)>>,
    out: &mut Vec<Candidate>,
) -> Result<(), SyntaxError> {
    let Place {
        index,
        scheme,
        default_scheme,
    } = place;
    let scope = http.inner(s.children());
    let answer = scope.here("return");
    let mut exact_names = Vec::new();
    let mut wild_names: Vec<String> = Vec::new();
    let mut name_src = Vec::new();
    let mut duplicates = Vec::new();
    for n in s.children().iter().filter(|d| d.name == "server_name") {
        tx.take(n);
        name_src.push(n.source());
        for name in &n.args {
            if name.is_empty() || name == "_" {
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let earlier = seen.get(&lower).and_then(|list| {
                list.iter()
                    .find(|(other, _)| overlap(*other, scheme))
                    .map(|(_, at)| at.clone())
            });
            if let Some(first) = earlier {
                // Usually the `listen 80` twin of a TLS server: weir's routes match on
                // every listener, so the first server's routes answer for both.
                if answer.is_none() {
                    tx.report.left(
                        n,
                        format!(
                            "`{name}` is also a name of the server at {first}; weir routes do not tell listeners apart, so that server's routes answer here too"
                        ),
                    );
                }
                duplicates.push(first);
                continue;
            }
            seen.entry(lower)
                .or_default()
                .push((scheme, n.at.to_string()));
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
    if !duplicates.is_empty() && exact_names.is_empty() && wild_names.is_empty() {
        // Every name belongs to an earlier server (reported above): nothing of this one
        // is reachable in weir.
        tx.take_all(s);
        if let Some(r) = answer {
            tx.report.left(
                r,
                format!(
                    "its server's names are served by the server at {}: weir routes do not tell these listeners apart",
                    duplicates[0]
                ),
            );
        }
        return Ok(());
    }
    let mut routes: ServerRoutes = Vec::new();
    let by_scheme = scheme_returns(tx, &scope, s)?;
    if let Some(r) = answer {
        // nginx answers every request of this server before it looks at the locations.
        for l in s.children().iter().filter(|d| d.name == "location") {
            tx.take_all(l);
            tx.report.ignored(
                l,
                "never reached: the server's `return` answers every request first",
            );
        }
        if let Some(body) = location::answer_body(tx, &scope, r, None)? {
            routes.push(("/".into(), false, body, vec![r.source()]));
        }
    } else {
        // Named locations, for error_page chains.
        let mut named = BTreeMap::new();
        for l in s.children().iter().filter(|d| d.name == "location") {
            if let Some(n) = l.args.first().filter(|a| a.starts_with('@')) {
                named.insert(n.clone(), (scope.clone(), l));
            }
        }
        for l in s.children().iter().filter(|d| d.name == "location") {
            locations(tx, decl, &scope, l, &named, &mut routes)?;
        }
    }
    let mut host_sets: Vec<(u8, usize, Vec<String>, Option<bool>)> = Vec::new();
    if !exact_names.is_empty() {
        host_sets.push((0, 0, exact_names.clone(), scheme));
    }
    if !wild_names.is_empty() {
        let longest = wild_names.iter().map(String::len).max().unwrap_or(0);
        host_sets.push((1, longest, wild_names.clone(), scheme));
    }
    if let Some(default) = default_scheme {
        host_sets.push((2, 0, Vec::new(), default));
    } else if host_sets.is_empty() {
        tx.report.left(
            s,
            "a server without names that is not the default server: weir cannot tell it apart by listener",
        );
        return Ok(());
    }
    let by_scheme = by_scheme
        .into_iter()
        .map(|(tls, body, comments)| ("/".to_string(), false, body, comments, Some(tls)));
    let routes = by_scheme.chain(routes.into_iter().map(|(p, e, b, c)| (p, e, b, c, None)));
    for (path, exact, body, comments, only) in routes {
        for (rank, len, hosts, tls) in &host_sets {
            // `if ($scheme = http)` on a server whose routes are https only never matches.
            let tls = match (only, *tls) {
                (Some(a), Some(b)) if a != b => continue,
                (Some(a), _) => Some(a),
                (None, t) => t,
            };
            let mut c = comments.clone();
            c.extend(name_src.iter().cloned());
            out.push(Candidate {
                host_rank: *rank,
                host_len: *len,
                hosts: hosts.clone(),
                server: index,
                path: path.clone(),
                exact,
                first: only.is_some(),
                tls,
                body: location::Body {
                    target: body.target.clone(),
                    plugins: body.plugins.clone(),
                    streaming: body.streaming.clone(),
                },
                comments: c,
            });
        }
    }
    Ok(())
}

/// nginx's `if ($scheme = http) { return …; }` (or `!= https`, or the reverse) in a
/// server: a `return` for that scheme only, before the server's other routes. Other `if`s
/// are left for the report.
fn scheme_returns(
    tx: &mut Tx,
    scope: &Scope,
    s: &Directive,
) -> Result<Vec<(bool, location::Body, Vec<String>)>, SyntaxError> {
    let mut out = Vec::new();
    for d in s.children().iter().filter(|d| d.name == "if") {
        let joined = d.args.join(" ");
        let condition = joined
            .trim()
            .strip_prefix('(')
            .and_then(|c| c.strip_suffix(')'));
        let words: Vec<&str> = condition.map_or_else(Vec::new, |c| c.split_whitespace().collect());
        let tls = match words.as_slice() {
            ["$scheme", "=", "http"] | ["$scheme", "!=", "https"] => false,
            ["$scheme", "=", "https"] | ["$scheme", "!=", "http"] => true,
            _ => continue,
        };
        let [r] = d.children() else { continue };
        if r.name != "return" {
            continue;
        }
        tx.take(d);
        let inner = scope.inner(d.children());
        if let Some(body) = location::answer_body(tx, &inner, r, None)? {
            out.push((tls, body, vec![d.source(), r.source()]));
        }
    }
    Ok(out)
}

/// A location (and its nested locations) → route bodies.
fn locations<'a>(
    tx: &mut Tx,
    decl: &mut Declared,
    outer: &Scope<'a>,
    l: &'a Directive,
    named: &BTreeMap<String, (Scope<'a>, &'a Directive)>,
    out: &mut ServerRoutes,
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
        let exact_path = exact.then_some(path);
        if let Some(body) = location::answer_body(tx, &scope, r, exact_path)? {
            out.push((path.to_string(), exact, body, vec![l.source(), r.source()]));
        }
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
