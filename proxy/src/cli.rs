//! The command line: `weir [-c FILE]`, `weir -t [-c FILE]`, `weir --version`.

use crate::config;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use weir_plugins::Registry;

/// weir: an nginx-style reverse proxy on Pingora, driven by one YAML file.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// The config file.
    #[arg(short = 'c', long = "config", default_value = "conf/weir.yaml")]
    config: PathBuf,
    /// Validate the config, print every error with its YAML path (exit 1) or `ok` (exit 0).
    #[arg(short = 't', long = "test")]
    test: bool,
}

/// Parses the command line and runs weir with the plugins of `registry`.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    let loaded = config::load(&cli.config, &registry, None);
    if cli.test {
        return match loaded {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.0 {
                    println!("{e}");
                }
                eprintln!("{}: {} error(s)", cli.config.display(), errors.0.len());
                ExitCode::FAILURE
            }
        };
    }
    init_logging();
    match loaded {
        Ok(config) => crate::server::run(cli.config, config, registry),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "weir: {} has {} error(s); not starting",
                cli.config.display(),
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise; Pingora's chatty per-service
/// lines stay at `warn`.
fn init_logging() {
    let env =
        env_logger::Env::default().default_filter_or("info,pingora_core=warn,pingora_proxy=warn");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}
