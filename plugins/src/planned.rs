//! Plugins whose YAML is settled by the contract but whose behaviour is not built yet:
//! `cache`.
//!
//! Their config is parsed and validated now (types, ranges, references to zones), so a file
//! written for them gets its real mistakes reported; a valid entry is then rejected with
//! "not implemented yet". weir never accepts a setting and silently ignores it.

use crate::config::{from_value, join, ConfigError, ConfigErrors};
use crate::key::{parse_key_part, KeyPart};
use crate::registry::{BuildContext, PluginFactory};
use crate::Plugin;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::sync::Arc;

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
    vec![Box::new(Planned {
        name: "cache",
        validate: validate_cache,
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    fn build(yaml: &str) -> String {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut ctx = BuildContext::default();
        ctx.caches.insert("images".into());
        Registry::builtin()
            .build(&v, "p", &ctx)
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn valid_planned_config_is_not_implemented_yet() {
        assert_eq!(
            build("cache: {zone: images}"),
            "p.cache: not implemented yet"
        );
    }

    #[test]
    fn planned_config_is_still_validated() {
        assert_eq!(
            build("cache: {zone: nope, bypass: ['header:X-No-Cache', 'uri']}"),
            "p.cache.zone: no zone `nope` under caches\n\
             p.cache.bypass[1]: `uri`: expected header:NAME or cookie:NAME\n\
             p.cache: not implemented yet"
        );
    }
}
