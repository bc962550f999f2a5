//! The `weir-origin` binary: the fixture origin as a standalone server for the
//! demo and wrk benchmarks. Prints one `listening` line, then serves until
//! SIGINT or SIGTERM.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Parser;
use weir_origin::Origin;

/// Command line of `weir-origin`.
#[derive(Debug, Parser)]
#[command(
    name = "weir-origin",
    about = "Fixture HTTP/1.1 origin for weir's tests, demo and benchmarks"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Name sent in X-Origin and in default bodies.
    #[arg(long, default_value = "origin")]
    name: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Install the handlers before announcing, so a signal sent right after
        // the line is seen is never lost.
        let stopped = stop_signal()?;
        let mut origin = Origin::start_on(args.listen, &args.name, args.threads)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "weir-origin {} listening on {}",
            args.name,
            origin.addr()
        )?;
        out.flush()?;
        drop(out);
        stopped.await;
        origin.stop();
        Ok(())
    })
}

/// A future that completes on SIGINT or SIGTERM (registered immediately).
#[cfg(unix)]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
