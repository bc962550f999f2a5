//! The map from YAML plugin names to the code that builds them: the one place where
//! plugins are registered, explicitly, in order (no global constructors).
//!
//! A route's `plugins:` list holds single-key maps (`- headers: {…}`); the registry looks the
//! key up, deserializes the value into the plugin's own config type (unknown keys are
//! errors) and lets the plugin validate it into its runtime form. All of this happens at
//! load time; the request path only sees built plugins.

use crate::build::{BuildContext, BuildPlugin, PluginFactory};
use crate::config::{from_value, join, ConfigError, ConfigErrors};
use crate::Plugin;
use serde_yaml_ng::Value;
use std::marker::PhantomData;
use std::sync::Arc;

/// Adapts a [`BuildPlugin`] into a [`PluginFactory`].
struct Typed<P>(PhantomData<fn() -> P>);

impl<P: BuildPlugin> PluginFactory for Typed<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn build(
        &self,
        value: &Value,
        path: &str,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Plugin>, ConfigErrors> {
        let config = from_value::<P::Config>(value, path)?;
        Ok(Arc::new(P::build(config, path, ctx)?))
    }
}

/// The plugins weir knows, by YAML name.
#[derive(Default)]
pub struct Registry {
    factories: Vec<Box<dyn PluginFactory>>,
}

impl Registry {
    /// A registry with no plugins.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Every plugin that ships with weir. This is the list: a new built-in is added here.
    pub fn builtin() -> Self {
        let mut r = Registry::empty();
        r.register::<crate::headers::Headers>();
        r.register_factory(Box::new(crate::access::AccessFactory));
        r.register::<crate::limit_req::LimitReq>();
        r.register::<crate::limit_conn::LimitConn>();
        r.register::<crate::cache::CachePlugin>();
        r
    }

    /// Registers plugin type `P` under `P::NAME`, replacing a plugin of the same name (so a
    /// custom build can swap a built-in).
    pub fn register<P: BuildPlugin>(&mut self) -> &mut Self {
        self.register_factory(Box::new(Typed::<P>(PhantomData)))
    }

    /// Registers a hand-written factory, replacing one of the same name.
    pub fn register_factory(&mut self, factory: Box<dyn PluginFactory>) -> &mut Self {
        self.factories.retain(|f| f.name() != factory.name());
        self.factories.push(factory);
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.iter().map(|f| f.name())
    }

    /// Builds one entry of a `plugins:` list (`- name: {config}`) found at `path`.
    pub fn build(
        &self,
        entry: &Value,
        path: &str,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Plugin>, ConfigErrors> {
        let single = match entry {
            Value::Mapping(m) if m.len() == 1 => m.iter().next(),
            _ => None,
        };
        let Some((Value::String(name), config)) = single else {
            return Err(ConfigError::new(
                path,
                "expected a single-key map naming a plugin, like `- headers: {…}`",
            )
            .into());
        };
        let Some(factory) = self.factories.iter().find(|f| f.name() == name) else {
            let known: Vec<_> = self.names().collect();
            return Err(ConfigError::new(
                path,
                format!("unknown plugin `{name}` (known: {})", known.join(", ")),
            )
            .into());
        };
        factory.build(config, &join(path, name), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn unknown_plugin_lists_the_known_ones() {
        let r = Registry::builtin();
        let e = r
            .build(
                &yaml("frobnicate: {}"),
                "routes[0].plugins[2]",
                &BuildContext::default(),
            )
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "routes[0].plugins[2]: unknown plugin `frobnicate` (known: headers, access, limit_req, limit_conn, cache)"
        );
    }

    #[test]
    fn entry_must_be_a_single_key_map() {
        let r = Registry::builtin();
        for bad in ["headers", "{headers: {}, cache: {}}", "[1]"] {
            let e = r
                .build(&yaml(bad), "p", &BuildContext::default())
                .err()
                .unwrap();
            assert!(
                e.to_string().starts_with("p: expected a single-key map"),
                "{e}"
            );
        }
    }

    #[test]
    fn builds_a_headers_plugin() {
        let r = Registry::builtin();
        let p = r
            .build(
                &yaml("headers: {response: {set: {X-A: b}}}"),
                "p",
                &BuildContext::default(),
            )
            .ok()
            .unwrap();
        assert_eq!(p.name(), "headers");
    }
}
