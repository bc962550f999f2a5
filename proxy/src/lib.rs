//! weir: an nginx-style reverse proxy on Pingora, driven by one YAML file.
//!
//! The binary is a thin wrapper over [`main_with`]; a custom build registers its own plugins
//! in a [`Registry`] and calls [`main_with`] with it (see `plugins/examples`).

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod cache;
mod cli;
pub mod config;
mod dashboard;
mod framing;
pub mod metrics;
mod proxy;
mod request_limits;
pub mod router;
mod server;
mod state;
mod traffic;
pub mod upstream;

pub use cli::main_with;
pub use weir_plugins::Registry;

/// The version `weir --version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
