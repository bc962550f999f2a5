//! Running weir: the Pingora server built from the config, and the control thread that owns
//! the signals.
//!
//! Pingora's defaults do not fit a proxy run like nginx: SIGINT stops at once, SIGHUP kills
//! the process, and a graceful stop always sleeps the whole grace period. So one thread
//! registers every signal before the server starts: SIGHUP reloads the config; SIGTERM,
//! SIGINT and SIGQUIT start a graceful stop, and the process exits as soon as the requests in
//! flight are done (or the grace period is over).

mod idle_parking;

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::config::Config;
use crate::proxy::Weir;
use crate::reload::reload;
use crate::state::{Inflight, Shared};
use crate::state_file::{self, save_state, spawn_state_saver};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use idle_parking::IdleParking;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
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
    if let Some(admin) = &config.admin {
        match std::net::TcpListener::bind(admin.listen) {
            Ok(probe) => probes.push(probe),
            Err(e) => {
                eprintln!("weir: cannot listen on {} (admin): {e}", admin.listen);
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
    let admin = config.admin.clone();
    // The state of the last run: traffic days and registrations whose TTL has not run out.
    let saved = state_file::load(&settings.state_dir);
    state_file::restore_registrations(&saved, &config);
    for upstream in config.upstreams.values() {
        crate::upstream::health::start(upstream);
    }
    crate::metrics::metrics();
    let shared = Arc::new(Shared {
        config: ArcSwap::from_pointee(config),
        access_log: ArcSwap::from_pointee(access_log),
        inflight: Inflight::default(),
        traffic: Default::default(),
        started: Instant::now(),
    });
    shared.traffic.restore(saved.traffic);
    spawn_state_saver(shared.clone(), settings.state_dir.clone());
    let registry = Arc::new(registry);

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
    // What `http_proxy_service_with_name` builds, with plain HTTP/1 connections parked
    // between requests (idle_parking.rs).
    let mut app = pingora::proxy::http_proxy(&server.configuration, Weir::new(shared.clone()));
    let mut options = pingora::apps::HttpServerOptions::default();
    // The whole request header, from its first byte (a vendored Pingora patch).
    options.h1_header_timeout = Some(settings.client_header_timeout);
    app.server_options = Some(options);
    if let Err(e) = std::fs::create_dir_all(&settings.temp_dir) {
        eprintln!(
            "weir: server.temp_dir: cannot create {}: {e}",
            settings.temp_dir.display()
        );
        std::process::exit(1);
    }
    let mut proxy =
        pingora::services::listening::Service::new("weir".to_string(), IdleParking::new(app));
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
        } else {
            // Pingora gives every accepted connection a 64 KiB read buffer; the HTTP/1 parser
            // has buffers of its own, so plain listeners go without. Measured: 2,000 idle
            // keep-alive clients 230 → 105 MiB, pass-through 1 KiB unchanged
            // (loadtest/README.md). TLS listeners keep it (rustls reads in records).
            endpoint = endpoint.l4_buffer(L4BufferSettings::default().read(0));
        }
        proxy.add_listener(endpoint);
    }
    server.add_service(proxy);
    if let Some(admin) = &admin {
        let mut service = pingora::services::listening::Service::new(
            "weir-admin".to_string(),
            Admin::new(shared.clone(), path.clone(), registry.clone()),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service);
        log::info!("admin API on {}", admin.listen);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_control_thread(path, registry, shared.clone(), stop_tx);
    spawn_drain_watcher(
        server.watch_execution_phase(),
        shared,
        settings.grace_period,
        settings.state_dir.clone(),
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
    registry: Arc<Registry>,
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
                        _ = hup.recv() => { let _ = reload(&path, &registry, &shared); }
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

/// After a stop signal, exits as soon as no request is in flight, or when the grace period
/// is over, instead of Pingora's fixed sleep.
fn spawn_drain_watcher(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    shared: Arc<Shared>,
    grace: Duration,
    state_dir: PathBuf,
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
                    save_state(&shared, &state_dir);
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
