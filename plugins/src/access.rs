//! The built-in `access` plugin: allow and deny lists of client addresses (nginx
//! `allow`/`deny`), answering `403` to a refused client.
//!
//! ```yaml
//! - access:
//!     deny: ["203.0.113.0/24", "2001:db8::/32"]
//!     deny_file: /etc/weir/blocklist.txt   # one IP or CIDR per line, `#` comments
//!     allow: ["10.0.0.0/8", "192.168.0.0/16"]
//! ```
//!
//! Rules are checked like nginx's `allow`/`deny` directives: **the first match wins, in the
//! order written**. With `deny` (or `deny_file`) written first, an address in it is refused
//! even when `allow` lists it too; with `allow` written first, an allowed address passes
//! even inside a denied range (nginx's `allow 10.0.0.5; deny 10.0.0.0/8;`). After the
//! lists, a non-empty `allow` refuses every address it does not list (nginx's trailing
//! `deny all;`); an empty `allow` lets every address that was not denied through.
//!
//! The address checked is the request's client IP (after the trusted-proxy rules); a
//! request without one matches no range, so it passes an empty `allow` and is refused by a
//! non-empty one. `deny_file` is read when the config is built, so a reload re-reads it,
//! and a bad line is a config error naming the file and line.

use crate::build::{BuildContext, BuildPlugin, PluginFactory};
use crate::cidr::Cidr;
use crate::config::{from_value, join, ConfigErrors};
use crate::respond::{client_for_log, path_for_log, respond_text, suppressed_note, LogLimiter};
use crate::{Flow, Plugin, RequestCtx};
use async_trait::async_trait;
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// YAML config of the `access` plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Addresses let through; when non-empty every other address is refused.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Addresses refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// A file of addresses to refuse, one IP or CIDR per line.
    pub deny_file: Option<String>,
}

/// The `access` plugin, with its lists parsed.
#[derive(Debug)]
pub struct Access {
    deny: Vec<Cidr>,
    allow: Vec<Cidr>,
    /// `allow` is written before `deny`/`deny_file`, so it is checked first.
    allow_first: bool,
    log: LogLimiter,
}

/// The body of a refusal.
const FORBIDDEN: &str = "403 forbidden\n";

impl Access {
    /// Whether a client at `ip` may pass: not denied, and allowed when `allow` is not empty.
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else {
            return self.allow.is_empty();
        };
        let allowed = || self.allow.iter().any(|c| c.contains(ip));
        if self.allow_first && allowed() {
            return true;
        }
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Parses each entry of `list` (found at `path`), recording bad ones.
fn parse_list(list: &[String], path: &str, errors: &mut ConfigErrors) -> Vec<Cidr> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        match Cidr::parse(s) {
            Ok(c) => out.push(c),
            Err(m) => errors.push(format!("{path}[{i}]"), m),
        }
    }
    out
}

/// Reads a deny file: one IP or CIDR per line; blank lines and `#` comments (whole-line or
/// after an entry) are skipped. Every bad line is reported as `FILE:LINE: why` at `path`.
fn read_deny_file(file: &str, path: &str, errors: &mut ConfigErrors) -> Vec<Cidr> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(err) => {
            errors.push(path, format!("cannot read `{file}`: {err}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        match Cidr::parse(entry) {
            Ok(c) => out.push(c),
            Err(m) => errors.push(path, format!("{file}:{}: {m}", n + 1)),
        }
    }
    out
}

impl BuildPlugin for Access {
    const NAME: &'static str = "access";
    type Config = AccessConfig;

    fn build(config: AccessConfig, path: &str, _: &BuildContext) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let allow = parse_list(&config.allow, &join(path, "allow"), &mut errors);
        let mut deny = parse_list(&config.deny, &join(path, "deny"), &mut errors);
        if let Some(file) = &config.deny_file {
            deny.extend(read_deny_file(file, &join(path, "deny_file"), &mut errors));
        }
        errors.into_result(Access {
            deny,
            allow,
            allow_first: false,
            log: LogLimiter::default(),
        })
    }
}

/// Builds `access` from YAML and notes the order its lists are written in, which a typed
/// config alone loses: the first matching rule wins, as with nginx's directives.
pub struct AccessFactory;

impl PluginFactory for AccessFactory {
    fn name(&self) -> &'static str {
        Access::NAME
    }

    fn build(
        &self,
        value: &Value,
        path: &str,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Plugin>, ConfigErrors> {
        let config: AccessConfig = from_value(value, path)?;
        let mut access = Access::build(config, path, ctx)?;
        access.allow_first = allow_written_first(value);
        Ok(Arc::new(access))
    }
}

/// True when `allow` comes before both `deny` and `deny_file` in the YAML map.
fn allow_written_first(value: &Value) -> bool {
    let Value::Mapping(map) = value else {
        return false;
    };
    let position = |key: &str| map.keys().position(|k| k.as_str() == Some(key));
    let deny = [position("deny"), position("deny_file")]
        .into_iter()
        .flatten()
        .min();
    matches!((position("allow"), deny), (Some(a), Some(d)) if a < d)
}

#[async_trait]
impl Plugin for Access {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Flow> {
        if self.permits(ctx.client_ip) {
            return Ok(Flow::Continue);
        }
        if let Some(held_back) = self.log.allow() {
            let client = client_for_log(ctx.client_ip);
            let path = path_for_log(session.req_header());
            let note = suppressed_note(held_back);
            log::info!(
                "access: refused {client} {path} on route {} with 403{note}",
                ctx.route
            );
        }
        respond_text(session, 403, FORBIDDEN, &[]).await?;
        Ok(Flow::Responded)
    }
}

#[cfg(test)]
mod tests {
    use crate::Registry;

    fn permits(yaml: &str, ip: &str) -> bool {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let Value::Mapping(m) = &v else { panic!() };
        let inner = m.get("access").unwrap();
        let mut access = Access::build(
            from_value(inner, "p").unwrap(),
            "p",
            &BuildContext::default(),
        )
        .unwrap();
        access.allow_first = allow_written_first(inner);
        assert!(Registry::builtin()
            .build(&v, "p", &BuildContext::default())
            .is_ok());
        access.permits(Some(ip.parse().unwrap()))
    }

    #[test]
    fn the_first_match_wins_in_the_order_written() {
        // nginx: allow 10.0.0.5; deny 10.0.0.0/8;  → 10.0.0.5 passes, 10.0.0.6 is refused.
        let allow_first = "access: {allow: [10.0.0.5], deny: [10.0.0.0/8]}";
        assert!(permits(allow_first, "10.0.0.5"));
        assert!(!permits(allow_first, "10.0.0.6"));
        // nginx: deny 10.0.0.5; allow 10.0.0.0/8; deny all;
        let deny_first = "access: {deny: [10.0.0.5], allow: [10.0.0.0/8]}";
        assert!(!permits(deny_first, "10.0.0.5"));
        assert!(permits(deny_first, "10.0.0.6"));
        assert!(!permits(deny_first, "11.0.0.1"));
    }

    use super::*;

    fn build(yaml: &str) -> Result<Access, ConfigErrors> {
        let config: AccessConfig = serde_yaml_ng::from_str(yaml).unwrap();
        Access::build(config, "p.access", &BuildContext::default())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn deny_wins_then_a_non_empty_allow_refuses_the_rest() {
        let a = build("{deny: [10.0.0.5], allow: [10.0.0.0/8, '::1']}").unwrap();
        assert!(!a.permits(ip("10.0.0.5")));
        assert!(a.permits(ip("10.0.0.6")));
        assert!(a.permits(ip("::ffff:10.1.1.1")));
        assert!(a.permits(ip("::1")));
        assert!(!a.permits(ip("192.168.1.1")));
        assert!(!a.permits(None));
        let open = build("{deny: [203.0.113.0/24]}").unwrap();
        assert!(!open.permits(ip("203.0.113.9")));
        assert!(open.permits(ip("198.51.100.1")));
        assert!(open.permits(None));
        assert!(build("{}").unwrap().permits(ip("1.2.3.4")));
    }

    #[test]
    fn deny_file_skips_comments_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("weir-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(
            &good,
            "# blocklist\n\n192.0.2.0/24  # a range\n  2001:db8::1\n",
        )
        .unwrap();
        let a = build(&format!("{{deny_file: '{}'}}", good.display())).unwrap();
        assert!(!a.permits(ip("192.0.2.77")));
        assert!(!a.permits(ip("2001:db8::1")));
        assert!(a.permits(ip("192.0.3.1")));

        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "1.2.3.4\n# ok\nnope\n10.0.0.0/40\n").unwrap();
        let e = build(&format!("{{deny_file: '{}', allow: [x]}}", bad.display()))
            .unwrap_err()
            .to_string();
        let f = bad.display();
        assert_eq!(
            e,
            format!(
                "p.access.allow[0]: `x` is not an IP address or CIDR\n\
                 p.access.deny_file: {f}:3: `nope` is not an IP address or CIDR\n\
                 p.access.deny_file: {f}:4: `10.0.0.0/40`: prefix length must be 0..=32"
            )
        );
        let missing = build("{deny_file: /nonexistent/weir/list.txt}").unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("p.access.deny_file: cannot read `/nonexistent/weir/list.txt`"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
