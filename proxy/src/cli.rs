//! The command line: `weir [-c FILE]`, `weir -t [-c FILE]`, `weir --version`,
//! `weir import nginx FILE [-o OUT] [--strict]`.

use crate::config;
use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Translate another server's configuration into weir YAML.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Debug, Subcommand)]
enum ImportFrom {
    /// An nginx configuration, with its includes; every block is commented with the nginx
    /// lines it came from, and what did not translate is listed at the end.
    Nginx {
        /// The nginx.conf to read.
        file: PathBuf,
        /// Write the YAML here instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Exit 1 when anything was not translated.
        #[arg(long)]
        strict: bool,
    },
}

/// `weir import nginx`: writes the YAML, says on stderr what was left.
fn import_nginx(
    file: &std::path::Path,
    output: Option<&std::path::Path>,
    strict: bool,
) -> ExitCode {
    let imported = match crate::import::import_nginx(file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("weir import: {e}");
            eprintln!(
                "weir import: {} is not a valid nginx configuration",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, &imported.yaml)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(imported.yaml.as_bytes())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("weir import: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "weir import: {} not translated, {} with a difference, {} ignored (listed at the end of the YAML)",
        imported.left, imported.notes, imported.ignored
    );
    if strict && imported.left > 0 {
        eprintln!(
            "weir import: --strict: {} directive(s) were not translated",
            imported.left
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Parses the command line and runs weir with the plugins of `registry`.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Import {
        from:
            ImportFrom::Nginx {
                file,
                output,
                strict,
            },
    }) = &cli.command
    {
        return import_nginx(file, output.as_deref(), *strict);
    }
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
