//! The `weir` binary: the built-in plugins and the command line.

#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc: measured faster than glibc malloc on Pingora's many small per-request buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir::main_with(weir::Registry::builtin())
}
