//! weir: an nginx-style reverse proxy on Pingora, driven by one YAML file.
//!
//! The binary is a thin wrapper over [`main_with`]; a custom build registers its own plugins
//! in a [`Registry`] and calls [`main_with`] with it (see `plugins/examples`).

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod cache;
mod cli;
// Public for the config fuzz test (proxy/tests/fuzz_config.rs), which parses without a file.
pub mod config;
mod dashboard;
mod fixed_response;
mod framing;
mod import;
mod metrics;
mod proxy;
mod reload;
mod request_limits;
mod request_target;
mod router;
mod server;
mod state;
mod state_file;
mod traffic;
mod upstream;

pub use cli::main_with;
pub use weir_plugins::Registry;

/// The version `weir --version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
