//! A server's `listen` lines: the `server.listen` entries they become (TLS from
//! `ssl_certificate`), and which kinds of listener (plain, TLS, default) a server has, so
//! that routes can tell servers on plain listeners from servers on TLS ones.

use super::values::listen_addr;
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;

/// Which listeners a server has.
pub struct Kinds {
    /// A listener without TLS (or none at all: nginx's *:80).
    pub plain: bool,
    /// A TLS listener.
    pub tls: bool,
    /// A plain `listen … default_server`.
    pub marked_plain: bool,
    /// A TLS `listen … default_server`.
    pub marked_tls: bool,
}

impl Kinds {
    /// The listeners of server `s` (nginx listens on *:80 when it has none).
    pub fn of(scope: &Scope, s: &Directive) -> Kinds {
        let ssl_on = scope
            .one("ssl")
            .is_some_and(|x| x.args.first().map(String::as_str) == Some("on"));
        let mut k = Kinds {
            plain: false,
            tls: false,
            marked_plain: false,
            marked_tls: false,
        };
        let mut any = false;
        for l in s.children().iter().filter(|d| d.name == "listen") {
            any = true;
            let ssl = ssl_on || l.args.iter().any(|a| a == "ssl");
            let marked = l
                .args
                .iter()
                .any(|a| a == "default_server" || a == "default");
            k.tls |= ssl;
            k.plain |= !ssl;
            k.marked_tls |= ssl && marked;
            k.marked_plain |= !ssl && marked;
        }
        k.plain |= !any;
        k
    }

    /// `Some(true)`: TLS listeners only; `Some(false)`: plain only; `None`: both.
    pub fn scheme(&self) -> Option<bool> {
        match (self.plain, self.tls) {
            (true, true) => None,
            (_, tls) => Some(tls),
        }
    }
}

/// The server's `listen` lines → `server.listen`; TLS from `ssl_certificate`.
pub fn listens(tx: &mut Tx, scope: &Scope, s: &Directive) -> Result<(), SyntaxError> {
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
