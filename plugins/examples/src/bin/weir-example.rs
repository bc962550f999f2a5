//! A weir binary with the example `request_id` plugin registered next to the built-ins:
//! the whole of what a custom build needs.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use weir_example_plugin::RequestId;

fn main() -> ExitCode {
    let mut registry = weir::Registry::builtin();
    registry.register::<RequestId>();
    weir::main_with(registry)
}
