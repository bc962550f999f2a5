//! nginx's idiom for more failover levels than primary and backup: `error_page 502 504 =
//! @next` with `location @next { proxy_pass http://other; }` (and `recursive_error_pages on`
//! for a chain) becomes further tiers of one weir upstream, with the codes turned into
//! `next_upstream` conditions, when weir's tiers do what nginx does; otherwise reported.

use super::pass::parse_pass;
use super::{Scope, Tx};
use crate::import::parser::Directive;
use crate::import::SyntaxError;
use std::collections::BTreeMap;

/// `error_page CODES = @name` towards a location that only proxies: its upstream becomes a
/// further tier, and the codes the retry conditions.
/// What the error_page chain adds to the location's upstream.
#[derive(Debug, Default)]
pub struct Chain {
    /// `next_upstream` conditions the codes stand for.
    pub conditions: Vec<String>,
    /// The proxy_pass targets of the named locations, in order: further tiers.
    pub targets: Vec<String>,
}

/// The chain of `error_page … = @name` in effect at `scope` (empty when none or reported).
pub fn error_pages(
    tx: &mut Tx,
    scope: &Scope,
    named: &BTreeMap<String, (Scope, &Directive)>,
    comments: &mut Vec<String>,
) -> Result<Chain, SyntaxError> {
    let mut chain = Chain::default();
    let intercept = match scope.one("proxy_intercept_errors") {
        Some(d) => Tx::flag(d)?.then_some(d),
        None => None,
    };
    let recursive = match scope.one("recursive_error_pages") {
        Some(d) => Tx::flag(d)?,
        None => false,
    };
    let mut pages = scope.group(&["error_page"]);
    let mut depth = 0;
    while let Some(page) = pages
        .iter()
        .find(|p| p.args.last().is_some_and(|t| t.starts_with('@')))
    {
        let page = *page;
        let target = page.args.last().map(String::as_str).unwrap_or_default();
        let Some((next_scope, next_loc)) = named.get(target) else {
            return Err(Tx::invalid(page, format!("unknown location \"{target}\"")));
        };
        let codes: Vec<&str> = page
            .args
            .iter()
            .map(String::as_str)
            .take_while(|a| !a.starts_with('=') && !a.starts_with('@'))
            .collect();
        let mut conditions = Vec::new();
        let mut ok = page.args.iter().any(|a| a == "=");
        for c in &codes {
            match (*c, intercept.is_some()) {
                ("502", i) => {
                    conditions.push("error".to_string());
                    if i {
                        conditions.push("http_502".into());
                    }
                }
                ("504", i) => {
                    conditions.push("timeout".to_string());
                    if i {
                        conditions.push("http_504".into());
                    }
                }
                ("500" | "503" | "404" | "429" | "403", true) => {
                    conditions.push(format!("http_{c}"))
                }
                _ => ok = false,
            }
        }
        let next_pass = next_loc
            .children()
            .iter()
            .filter(|d| {
                !matches!(
                    d.name.as_str(),
                    "proxy_pass"
                        | "error_page"
                        | "proxy_intercept_errors"
                        | "proxy_set_header"
                        | "proxy_next_upstream"
                )
            })
            .count()
            == 0;
        let pass = next_loc.children().iter().find(|d| d.name == "proxy_pass");
        let target_up = match (ok && next_pass, pass) {
            (true, Some(p)) => parse_pass(tx, p, "")?,
            _ => None,
        };
        let Some((_, next_target)) = target_up else {
            tx.take(page);
            tx.report.left(
                page,
                "only `error_page 502 504 … = @name` towards a location that just proxies becomes further tiers (with proxy_intercept_errors for upstream statuses)",
            );
            return Ok(Chain::default());
        };
        tx.take(page);
        tx.take_all(next_loc);
        comments.push(page.source());
        comments.push(next_loc.source());
        if let Some(i) = intercept {
            tx.take(i);
        }
        for c in conditions {
            if !chain.conditions.contains(&c) {
                chain.conditions.push(c);
            }
        }
        chain.targets.push(next_target);
        depth += 1;
        if !recursive || depth > 8 {
            break;
        }
        if let Some(r) = scope.one("recursive_error_pages") {
            tx.take(r);
        }
        pages = next_scope.inner(next_loc.children()).group(&["error_page"]);
        pages.retain(|p| next_loc.children().iter().any(|c| c.id == p.id));
    }
    Ok(chain)
}
