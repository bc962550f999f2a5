//! The weir plugin API and the built-in plugins.
//!
//! A plugin is a Rust type implementing [`Plugin`], with hooks named after the Pingora phases
//! it runs in, and [`BuildPlugin`], which turns its YAML config into the runtime value. The
//! [`Registry`] maps YAML names to plugins; the `weir` binary builds each route's ordered
//! chain from it when the config loads. See `docs/plugins.md` for a walk-through.
//!
//! This crate never depends on the proxy: the proxy depends on it.

#![forbid(unsafe_code)]

pub mod access;
pub mod build;
pub mod cache;
pub mod cidr;
pub mod config;
mod context;
mod flow;
pub mod headers;
pub mod key;
pub mod leaky_bucket;
pub mod limit_conn;
pub mod limit_req;
pub mod limit_script;
pub mod limit_store;
pub mod limit_zone;
pub mod metrics;
pub mod path;
mod plugin;
pub mod registry;
pub mod respond;
pub mod units;

pub use build::{BuildContext, BuildPlugin, PluginFactory};
pub use config::{ConfigError, ConfigErrors};
pub use context::RequestCtx;
pub use flow::Flow;
pub use path::NormalizedPath;
pub use plugin::Plugin;
pub use registry::Registry;

/// Re-exported so plugin crates use the same Pingora and YAML types as weir.
pub use pingora;
pub use serde_yaml_ng;
