//! weir: an nginx-style reverse proxy on Pingora, driven by one YAML file.
//!
//! The binary is a thin wrapper over [`run`]; a custom build registers its own plugins in a
//! [`Registry`] and calls [`run`] with it (see `plugins/examples`).

#![forbid(unsafe_code)]

pub mod config;
pub mod router;
pub mod upstream;

pub use weir_plugins::Registry;
