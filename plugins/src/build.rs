//! What building a plugin takes: the [`BuildPlugin`] trait a plugin type implements, the
//! [`PluginFactory`] the registry holds, and the [`BuildContext`] a plugin may look zones up
//! in. Plugins import this room; the registry imports the plugins and this room.

use crate::cache::zone::CacheZone;
use crate::config::{ConfigErrors, Zones};
use crate::limit_zone::LimitZone;
use crate::Plugin;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::sync::Arc;

/// What a plugin may look up while it is built: the zones the file declares.
#[derive(Debug, Default, Clone)]
pub struct BuildContext {
    /// Zones under `limits:`.
    pub limits: Zones<LimitZone>,
    /// Zones under `caches:`.
    pub caches: Zones<CacheZone>,
}

/// A plugin type that can be built from its YAML config.
pub trait BuildPlugin: Plugin + Sized {
    /// The YAML name, e.g. `headers`.
    const NAME: &'static str;
    /// The config, a serde struct with `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;
    /// Validates `config` (found at `path`) into the runtime plugin. Report every problem,
    /// each with its path below `path`.
    fn build(config: Self::Config, path: &str, ctx: &BuildContext) -> Result<Self, ConfigErrors>;
}

/// Builds one kind of plugin from its YAML value. [`Registry::register`] makes one from a
/// [`BuildPlugin`]; implement it directly only for unusual cases.
pub trait PluginFactory: Send + Sync {
    /// The YAML name.
    fn name(&self) -> &'static str;
    /// Builds the plugin from `value`, found at `path`.
    fn build(
        &self,
        value: &Value,
        path: &str,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Plugin>, ConfigErrors>;
}
