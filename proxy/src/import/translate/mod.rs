//! nginx directives → weir's YAML. The walk follows nginx's contexts (main → http →
//! server → location); each location that proxies becomes a route whose settings are the
//! directives in effect there (nginx's inheritance: the innermost level that sets a
//! directive wins). Every directive the walk uses is recorded; whatever is left is reported
//! with its reason, so nothing that changes behaviour disappears silently.

mod answer;
mod cache;
mod failover;
mod leftovers;
mod limits;
mod listeners;
mod location;
mod pass;
mod server;
mod upstreams;
pub mod values;

use super::parser::Directive;
use super::report::Report;
use super::yaml::{Entry, Node};
use super::SyntaxError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The result: the YAML document and the report.
pub struct Translation {
    /// weir's configuration.
    pub doc: Node,
    /// What did not translate.
    pub report: Report,
}

/// Translates a parsed nginx configuration; `conf_dir` resolves relative paths as nginx's
/// prefix would.
pub fn translate(tree: &[Directive], conf_dir: &Path) -> Result<Translation, SyntaxError> {
    let mut tx = Tx::new(conf_dir);
    let main = Scope { levels: vec![tree] };
    for d in tree {
        match d.name.as_str() {
            "worker_processes" => tx.worker_processes(d)?,
            "worker_shutdown_timeout" => {
                let ms = tx.time_arg(d, 0)?;
                tx.take(d);
                tx.global("grace_period", Node::str(values::duration(ms)), d);
            }
            "http" => {
                tx.take(d);
                server::http(&mut tx, &main, d)?;
            }
            _ => {}
        }
    }
    tx.leftovers(tree);
    Ok(Translation {
        doc: tx.document(),
        report: tx.report,
    })
}

/// The directives in effect at one point: the blocks from the outermost (main) inwards.
#[derive(Clone)]
pub struct Scope<'a> {
    levels: Vec<&'a [Directive]>,
}

impl<'a> Scope<'a> {
    /// This scope with `block` as the innermost level.
    pub fn inner(&self, block: &'a [Directive]) -> Scope<'a> {
        let mut levels = self.levels.clone();
        levels.push(block);
        Scope { levels }
    }

    /// The directive `name` in effect: the last one on the innermost level that has one.
    pub fn one(&self, name: &str) -> Option<&'a Directive> {
        self.levels
            .iter()
            .rev()
            .find_map(|l| l.iter().rev().find(|d| d.name == name))
    }

    /// The directives among `names` in effect, in order: all those of the innermost level
    /// that has any (nginx inherits a list such as `allow`/`deny` only when a level sets
    /// none of it).
    pub fn group(&self, names: &[&str]) -> Vec<&'a Directive> {
        for level in self.levels.iter().rev() {
            let found: Vec<&Directive> = level
                .iter()
                .filter(|d| names.contains(&d.name.as_str()))
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// The directives on the innermost level whose name passes `pick`, in order.
    pub fn here_all(&self, pick: impl Fn(&str) -> bool) -> Vec<&'a Directive> {
        self.levels.last().map_or_else(Vec::new, |l| {
            l.iter().filter(|d| pick(d.name.as_str())).collect()
        })
    }

    /// The directive `name` on the innermost level only.
    pub fn here(&self, name: &str) -> Option<&'a Directive> {
        self.levels
            .last()
            .and_then(|l| l.iter().rev().find(|d| d.name == name))
    }
}

/// The translation in progress.
pub struct Tx {
    /// What did not translate.
    pub report: Report,
    used: HashSet<usize>,
    conf_dir: PathBuf,
    /// `server:` keys other than `listen`.
    server: Vec<Entry>,
    /// `server.listen`: (address, item, comments).
    listen: Vec<(String, Node, Vec<String>)>,
    limits: Node,
    upstreams: Node,
    caches: Node,
    routes: Node,
}

impl Tx {
    fn new(conf_dir: &Path) -> Tx {
        Tx {
            report: Report::default(),
            used: HashSet::new(),
            conf_dir: conf_dir.to_path_buf(),
            server: Vec::new(),
            listen: Vec::new(),
            limits: Node::map(),
            upstreams: Node::map(),
            caches: Node::map(),
            routes: Node::List(Vec::new()),
        }
    }

    /// Records `d` as used (translated, or reported by the code that looked at it).
    pub fn take(&mut self, d: &Directive) {
        self.used.insert(d.id);
    }

    /// Records `d` and everything in its block as used.
    pub fn take_all(&mut self, d: &Directive) {
        self.take(d);
        for c in d.children() {
            self.take_all(c);
        }
    }

    /// An error at `d`, as `nginx -t` would print it.
    pub fn invalid(d: &Directive, what: impl std::fmt::Display) -> SyntaxError {
        SyntaxError::at(&d.at, format!("{what} in \"{}\" directive", d.name))
    }

    /// Argument `i` of `d`, or the error nginx gives for a missing one.
    pub fn arg(d: &Directive, i: usize) -> Result<&str, SyntaxError> {
        d.args
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| Tx::invalid(d, "invalid number of arguments"))
    }

    /// Argument `i` of `d` as a time in ms.
    pub fn time_arg(&self, d: &Directive, i: usize) -> Result<u64, SyntaxError> {
        let a = Tx::arg(d, i)?;
        values::time_ms(a).ok_or_else(|| Tx::invalid(d, format!("invalid value \"{a}\"")))
    }

    /// Argument `i` of `d` as a size in bytes.
    pub fn size_arg(&self, d: &Directive, i: usize) -> Result<u64, SyntaxError> {
        let a = Tx::arg(d, i)?;
        values::size_bytes(a).ok_or_else(|| Tx::invalid(d, format!("invalid value \"{a}\"")))
    }

    /// `on`/`off` of `d`.
    pub fn flag(d: &Directive) -> Result<bool, SyntaxError> {
        match Tx::arg(d, 0)? {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(Tx::invalid(
                d,
                format!("invalid value \"{other}\", it must be \"on\" or \"off\""),
            )),
        }
    }

    /// A path as nginx resolves it: relative to the configuration's directory.
    pub fn path(&self, p: &str) -> String {
        if Path::new(p).is_absolute() {
            p.to_string()
        } else {
            self.conf_dir.join(p).display().to_string()
        }
    }

    fn worker_processes(&mut self, d: &Directive) -> Result<(), SyntaxError> {
        self.take(d);
        match Tx::arg(d, 0)? {
            "auto" => self
                .report
                .note(d, "`auto`: weir's default, one thread per CPU"),
            n => {
                let n: u64 = n
                    .parse()
                    .map_err(|_| Tx::invalid(d, format!("invalid value \"{n}\"")))?;
                self.global("threads", Node::int(n), d);
            }
        }
        Ok(())
    }

    /// Sets `server.KEY` from `d`. weir has one value for the whole file: a second,
    /// different value is reported at its directive.
    pub fn global(&mut self, key: &str, value: Node, d: &Directive) {
        self.take(d);
        match self.server.iter_mut().find(|e| e.key == key) {
            None => self.server.push(Entry {
                key: key.into(),
                value,
                comments: vec![d.source()],
            }),
            Some(e) if e.value == value => {
                if !e.comments.contains(&d.source()) && e.comments.len() < 3 {
                    e.comments.push(d.source());
                }
            }
            Some(e) => {
                let first = e.comments.first().cloned().unwrap_or_default();
                self.report.left(
                    d,
                    format!("weir has one `server.{key}` for every route; kept the one of {first}"),
                );
            }
        }
    }

    /// Reports every directive no translation used, with its reason.
    fn leftovers(&mut self, block: &[Directive]) {
        for d in block {
            if self.used.contains(&d.id) {
                self.leftovers(d.children());
                continue;
            }
            if d.name == "keepalive_timeout" && d.args.first().map(String::as_str) == Some("75s") {
                self.report
                    .ignored(d, "weir keeps idle client connections 75 s as well");
            } else if d.name == "ssl_protocols"
                && d.args.iter().all(|a| a == "TLSv1.2" || a == "TLSv1.3")
            {
                self.report
                    .ignored(d, "weir offers TLS 1.2 and 1.3 as well");
            } else if let Some(why) = leftovers::ignored_reason(&d.name) {
                self.report.ignored(d, why);
            } else {
                self.report.left(d, leftovers::left_reason(&d.name));
            }
        }
    }

    fn document(&mut self) -> Node {
        let mut doc = Node::map();
        let mut server = Node::Map(Vec::new());
        let mut listen = Node::List(Vec::new());
        for (addr, item, comments) in std::mem::take(&mut self.listen) {
            let plain = matches!(&item, Node::Map(es) if es.len() == 1);
            listen.push(if plain { Node::str(addr) } else { item }, comments);
        }
        server.set("listen", listen);
        if let Node::Map(entries) = &mut server {
            entries.append(&mut self.server);
        }
        doc.set("server", server);
        for (key, node) in [
            ("limits", &mut self.limits),
            ("upstreams", &mut self.upstreams),
            ("caches", &mut self.caches),
            ("routes", &mut self.routes),
        ] {
            let node = std::mem::replace(node, Node::map());
            let empty = matches!(&node, Node::Map(e) if e.is_empty());
            if !empty || key == "routes" {
                doc.set(key, node);
            }
        }
        doc
    }
}
