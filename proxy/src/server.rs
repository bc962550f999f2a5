//! Running weir: the Pingora server built from the config, and the control thread that owns
//! the signals.
//!
//! Pingora's defaults do not fit a proxy run like nginx: SIGINT stops at once, SIGHUP kills
//! the process, and a graceful stop always sleeps the whole grace period. So one thread
//! registers every signal before the server starts: SIGHUP reloads the config; SIGTERM,
//! SIGINT and SIGQUIT start a graceful stop, and the process exits as soon as the requests in
//! flight are done (or the grace period is over).

use crate::access_log::AccessLog;
use crate::config::{self, Config, ServerSettings};
use crate::proxy::Weir;
use crate::state::{Inflight, Shared};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use weir_plugins::Registry;

/// Hands the graceful-stop request from the control thread to Pingora's main loop.
struct StopSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        // An error means the control thread is gone; stopping is then the safe answer.
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Pingora's bound on attempts per request; weir's own rules stop long before it.
const MAX_ATTEMPTS: usize = 10_000;

/// Runs weir with `config` (loaded from `path`) until a stop signal. Never returns.
pub fn run(path: PathBuf, config: Config, registry: Registry) -> ! {
    // Pingora binds inside its service task and only logs when it cannot; like nginx, weir
    // refuses to start instead of running without its listeners.
    // All at once, so two entries that conflict (0.0.0.0:80 and [::]:80) are caught too.
    let mut probes = Vec::new();
    for l in &config.server.listen {
        match std::net::TcpListener::bind(l.addr) {
            Ok(probe) => probes.push(probe),
            Err(e) => {
                eprintln!("weir: cannot listen on {}: {e}", l.addr);
                std::process::exit(1);
            }
        }
    }
    drop(probes);
    let access_log = match AccessLog::open(&config.server.access_log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("weir: cannot open the access log: {e}");
            std::process::exit(1);
        }
    };
    let settings = config.server.clone();
    for upstream in config.upstreams.values() {
        crate::upstream::health::start(upstream);
    }
    let shared = Arc::new(Shared {
        config: ArcSwap::from_pointee(config),
        access_log: ArcSwap::from_pointee(access_log),
        inflight: Inflight::default(),
    });

    let keepalive: usize = shared
        .config
        .load()
        .upstreams
        .values()
        .map(|u| u.keepalive * u.server_count())
        .sum();
    // Each process gets its own pid/upgrade paths so parallel instances never collide.
    let tmp = std::env::temp_dir();
    let conf = ServerConf {
        threads: settings.threads,
        // One runtime per thread instead of Tokio's work-stealing pool: measured 5-15 % more
        // requests per CPU second on keep-alive pass-through (loadtest/README.md).
        work_stealing: false,
        // Pingora sleeps this whole period on a graceful stop; the drain watcher below exits
        // as soon as nothing is in flight, so this is only the upper bound.
        grace_period_seconds: Some(settings.grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: keepalive.max(128),
        // weir decides every retry itself (next_upstream, tries, servers left); Pingora's cap
        // of 16 attempts would cut a long tier list short with a generic error page.
        max_retries: MAX_ATTEMPTS,
        pid_file: tmp
            .join(format!("weir-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: tmp
            .join(format!("weir-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Weir::new(shared.clone()),
        "weir",
    );
    for l in &settings.listen {
        let addr = l.addr.to_string();
        let mut endpoint = ListenerConfig::tcp(addr.clone());
        if let Some(tls) = &l.tls {
            let mut t = match TlsSettings::intermediate(&tls.cert, &tls.key) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("weir: {addr}: cannot use {} / {}: {e}", tls.cert, tls.key);
                    std::process::exit(1);
                }
            };
            if l.http2 {
                t.enable_h2();
            }
            endpoint = endpoint.tls(t);
        }
        proxy.add_listener(endpoint);
    }
    server.add_service(proxy);

    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_control_thread(path, registry, shared.clone(), stop_tx);
    spawn_drain_watcher(
        server.watch_execution_phase(),
        shared,
        settings.grace_period,
    );
    for l in &settings.listen {
        log::info!(
            "weir {} listening on {}{}",
            crate::VERSION,
            l.addr,
            if l.tls.is_some() { " (tls)" } else { "" }
        );
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(StopSignal(stop_rx)),
    });
    std::process::exit(0)
}

/// Registers SIGHUP/SIGTERM/SIGINT/SIGQUIT on a thread of its own before the server starts,
/// so no signal can reach the process while it still has the default (fatal) action.
fn spawn_control_thread(
    path: PathBuf,
    registry: Registry,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("weir-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("cannot start the control thread: {e}");
                    std::process::exit(1);
                }
            };
            rt.block_on(async move {
                let streams = (|| {
                    Ok::<_, std::io::Error>((
                        signal(SignalKind::hangup())?,
                        signal(SignalKind::terminate())?,
                        signal(SignalKind::interrupt())?,
                        signal(SignalKind::quit())?,
                    ))
                })();
                let (mut hup, mut term, mut int, mut quit) = match streams {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!("cannot install signal handlers: {e}");
                        std::process::exit(1);
                    }
                };
                let _ = ready_tx.send(());
                loop {
                    tokio::select! {
                        _ = hup.recv() => reload(&path, &registry, &shared),
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        _ = quit.recv() => break,
                    }
                }
                log::info!(
                    "stop signal received: refusing new connections, finishing requests in flight"
                );
                let _ = stop.send(true);
                // Keep handling repeated signals (they must not kill the process mid-drain).
                loop {
                    tokio::select! {
                        _ = hup.recv() => log::warn!("reload ignored: weir is stopping"),
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                        _ = quit.recv() => {}
                    }
                }
            });
        });
    if let Err(e) = spawned {
        eprintln!("weir: cannot start the control thread: {e}");
        std::process::exit(1);
    }
    // Wait (briefly) until the handlers are in place.
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
}

/// Validates the file again and swaps the running config when it is valid. In-flight
/// requests keep the snapshot they started with.
pub fn reload(path: &Path, registry: &Registry, shared: &Shared) {
    log::info!("reloading {}", path.display());
    let running = shared.config.load_full();
    match config::load(path, registry, Some(&running)) {
        Err(errors) => {
            for e in &errors.0 {
                log::error!("reload rejected: {e}");
            }
            log::error!(
                "reload rejected with {} error(s); still running the previous config",
                errors.0.len()
            );
        }
        Ok(new) => {
            warn_restart_only(&shared.config.load().server, &new.server);
            match AccessLog::open(&new.server.access_log) {
                Ok(log) => shared.access_log.store(Arc::new(log)),
                Err(e) => {
                    log::error!("reload: cannot open the access log ({e}); keeping the old one")
                }
            }
            for upstream in new.upstreams.values() {
                crate::upstream::health::start(upstream);
            }
            let old = shared.config.swap(Arc::new(new));
            for upstream in old.upstreams.values() {
                upstream.retire();
            }
            log::info!("reload done: new routes, upstreams and plugins are live");
        }
    }
}

/// Listeners and threads are bound at start; say so when a reload changes them.
fn warn_restart_only(old: &ServerSettings, new: &ServerSettings) {
    if old.listen != new.listen {
        log::warn!("reload: server.listen changed; the new listeners take effect after a restart");
    }
    if old.threads != new.threads {
        log::warn!("reload: server.threads changed; takes effect after a restart");
    }
    if old.grace_period != new.grace_period {
        log::warn!("reload: server.grace_period changed; takes effect after a restart");
    }
}

/// After a stop signal, exits as soon as no request is in flight, or when the grace period
/// is over, instead of Pingora's fixed sleep.
fn spawn_drain_watcher(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    shared: Arc<Shared>,
    grace: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name("weir-drain".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let deadline = Instant::now() + grace;
                    while shared.inflight.get() > 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let left = shared.inflight.get();
                    if left > 0 {
                        log::warn!("grace period over with {left} request(s) in flight; exiting");
                    } else {
                        log::info!("all requests finished; exiting");
                    }
                    std::process::exit(0);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the drain watcher ({e}); a stop waits the whole grace period");
    }
}
