//! Plugins whose YAML is settled by the contract but whose behaviour is not built yet:
//! `limit_req`, `limit_conn`, `cache` and `access`.
//!
//! Their config is parsed and validated now (types, ranges, references to zones), so a file
//! written for them gets its real mistakes reported; a valid entry is then rejected with
//! "not implemented yet". weir never accepts a setting and silently ignores it.

use crate::cidr::Cidr;
use crate::config::{from_value, join, ConfigError, ConfigErrors};
use crate::key::{parse_key, parse_key_part, KeyPart, KeySpec};
use crate::registry::{BuildContext, PluginFactory};
use crate::Plugin;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::sync::Arc;

fn check_status(status: Option<u16>, path: &str, errors: &mut ConfigErrors) {
    if let Some(s) = status {
        if !(400..=599).contains(&s) {
            errors.push(
                join(path, "status"),
                format!("{s} is not a status from 400 to 599"),
            );
        }
    }
}

/// `limit_req` config (SPEC §5).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReqConfig {
    /// Zone under `limits:`.
    pub zone: String,
    /// Requests allowed above the rate.
    #[serde(default)]
    pub burst: u32,
    /// Serve the burst without delay.
    #[serde(default)]
    pub nodelay: bool,
    /// Serve this many of the burst without delay.
    pub delay: Option<u32>,
    /// Rejection status (default 503).
    pub status: Option<u16>,
    /// Count but never reject or delay.
    #[serde(default)]
    pub dry_run: bool,
}

/// `limit_conn` config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConnConfig {
    /// What is counted.
    pub key: KeySpec,
    /// Requests in flight allowed per key.
    pub max: u32,
    /// Rejection status (default 503).
    pub status: Option<u16>,
}

/// `cache` config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Zone under `caches:`.
    pub zone: String,
    /// `header:NAME` / `cookie:NAME` that make a request skip the cache.
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// `access` config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Addresses let through; when non-empty everything else is denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Addresses denied.
    #[serde(default)]
    pub deny: Vec<String>,
    /// A file of addresses to deny, one per line.
    pub deny_file: Option<String>,
}

fn validate_limit_req(c: LimitReqConfig, path: &str, ctx: &BuildContext) -> ConfigErrors {
    let mut e = ConfigErrors::default();
    if !ctx.limits.contains(&c.zone) {
        e.push(
            join(path, "zone"),
            format!("no zone `{}` under limits", c.zone),
        );
    }
    if c.nodelay && c.delay.is_some() {
        e.push(join(path, "delay"), "use either nodelay or delay, not both");
    }
    check_status(c.status, path, &mut e);
    e
}

fn validate_limit_conn(c: LimitConnConfig, path: &str, _: &BuildContext) -> ConfigErrors {
    let mut e = ConfigErrors::default();
    e.take(parse_key(&c.key, &join(path, "key")));
    if c.max == 0 {
        e.push(join(path, "max"), "must be at least 1");
    }
    check_status(c.status, path, &mut e);
    e
}

fn validate_cache(c: CacheConfig, path: &str, ctx: &BuildContext) -> ConfigErrors {
    let mut e = ConfigErrors::default();
    if !ctx.caches.contains(&c.zone) {
        e.push(
            join(path, "zone"),
            format!("no zone `{}` under caches", c.zone),
        );
    }
    for (i, b) in c.bypass.iter().enumerate() {
        match parse_key_part(b) {
            Ok(KeyPart::Header(_) | KeyPart::Cookie(_)) => {}
            _ => e.push(
                format!("{path}.bypass[{i}]"),
                format!("`{b}`: expected header:NAME or cookie:NAME"),
            ),
        }
    }
    e
}

fn validate_access(c: AccessConfig, path: &str, _: &BuildContext) -> ConfigErrors {
    let mut e = ConfigErrors::default();
    for (field, list) in [("allow", &c.allow), ("deny", &c.deny)] {
        for (i, s) in list.iter().enumerate() {
            if let Err(m) = Cidr::parse(s) {
                e.push(format!("{path}.{field}[{i}]"), m);
            }
        }
    }
    if let Some(f) = &c.deny_file {
        if let Err(err) = std::fs::metadata(f) {
            e.push(join(path, "deny_file"), format!("cannot read `{f}`: {err}"));
        }
    }
    e
}

/// A plugin that validates its config and then says it is not built yet.
struct Planned<C> {
    name: &'static str,
    validate: fn(C, &str, &BuildContext) -> ConfigErrors,
}

impl<C: DeserializeOwned> PluginFactory for Planned<C> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn build(
        &self,
        value: &Value,
        path: &str,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Plugin>, ConfigErrors> {
        let config: C = from_value(value, path)?;
        let mut errors = (self.validate)(config, path, ctx);
        errors.0.push(ConfigError::not_implemented(path));
        Err(errors)
    }
}

/// The factories of the plugins not built yet, in the order the registry lists them.
pub(crate) fn factories() -> Vec<Box<dyn PluginFactory>> {
    vec![
        Box::new(Planned {
            name: "limit_req",
            validate: validate_limit_req,
        }),
        Box::new(Planned {
            name: "limit_conn",
            validate: validate_limit_conn,
        }),
        Box::new(Planned {
            name: "cache",
            validate: validate_cache,
        }),
        Box::new(Planned {
            name: "access",
            validate: validate_access,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    fn build(yaml: &str) -> String {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut ctx = BuildContext::default();
        ctx.limits.insert("per_ip".into());
        Registry::builtin()
            .build(&v, "p", &ctx)
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn valid_planned_config_is_not_implemented_yet() {
        assert_eq!(
            build("limit_req: {zone: per_ip, burst: 20, nodelay: true}"),
            "p.limit_req: not implemented yet"
        );
    }

    #[test]
    fn planned_config_is_still_validated() {
        assert_eq!(
            build("limit_req: {zone: nope, nodelay: true, delay: 2, status: 200}"),
            "p.limit_req.zone: no zone `nope` under limits\n\
             p.limit_req.delay: use either nodelay or delay, not both\n\
             p.limit_req.status: 200 is not a status from 400 to 599\n\
             p.limit_req: not implemented yet"
        );
        assert_eq!(
            build("access: {deny: [10.0.0.0/33, '::1', nope]}"),
            "p.access.deny[0]: `10.0.0.0/33`: prefix length must be 0..=32\n\
             p.access.deny[2]: `nope` is not an IP address or CIDR\n\
             p.access: not implemented yet"
        );
        assert!(build("limit_conn: {key: [client_ip, 'bogus'], max: 0}")
            .starts_with("p.limit_conn.key[1]: unknown key `bogus`"));
    }
}
