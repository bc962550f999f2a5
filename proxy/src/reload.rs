//! Reloading the config (SIGHUP, `POST /reload`): the file is validated again and, when
//! valid, swapped in; in-flight requests keep the snapshot they started with.

use crate::access_log::AccessLog;
use crate::config::{self, Config};
use crate::state::Shared;
use std::path::Path;
use std::sync::Arc;
use weir_plugins::{ConfigErrors, Registry};

/// Validates the file again and swaps the running config when it is valid. In-flight
/// requests keep the snapshot they started with. Returns the errors of a rejected file.
pub fn reload(path: &Path, registry: &Registry, shared: &Shared) -> Result<(), ConfigErrors> {
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
            Err(errors)
        }
        Ok(new) => {
            warn_restart_only(&running, &new);
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
            Ok(())
        }
    }
}

/// Listeners, threads and the admin listener are bound at start; say so when a reload
/// changes them.
fn warn_restart_only(old: &Config, new: &Config) {
    let (o, n) = (&old.server, &new.server);
    if o.listen != n.listen {
        log::warn!("reload: server.listen changed; the new listeners take effect after a restart");
    }
    if o.threads != n.threads {
        log::warn!("reload: server.threads changed; takes effect after a restart");
    }
    if o.grace_period != n.grace_period {
        log::warn!("reload: server.grace_period changed; takes effect after a restart");
    }
    if o.state_dir != n.state_dir {
        log::warn!("reload: server.state_dir changed; takes effect after a restart");
    }
    if o.client_header_timeout != n.client_header_timeout {
        log::warn!("reload: server.client_header_timeout changed; takes effect after a restart");
    }
    if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
        log::warn!(
            "reload: admin.listen changed; takes effect after a restart (the token applies now)"
        );
    }
}
