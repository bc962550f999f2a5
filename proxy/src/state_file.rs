//! The state file: `<server.state_dir>/state.json` keeps the daily traffic and the registered
//! servers across restarts. It is written atomically (temp file + rename) every 30 seconds
//! and at shutdown, so a crash loses at most 30 seconds.

use crate::config::Config;
use crate::state::Shared;
use crate::traffic::{Day, Traffic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A registered server as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRegistration {
    /// Its tier.
    pub tier: String,
    /// Its address as registered.
    pub addr: String,
    /// Reached over TLS.
    #[serde(default)]
    pub tls: bool,
    /// Unix time when it expires.
    pub expires_at: u64,
}

/// What `state.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedState {
    /// Daily traffic, oldest first.
    #[serde(default)]
    pub traffic: Vec<Day>,
    /// Registered servers by upstream.
    #[serde(default)]
    pub registrations: BTreeMap<String, Vec<SavedRegistration>>,
}

/// The state file of `dir`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads the state file; a missing file is an empty state, a broken one is logged and
/// ignored (and will be replaced by the next save).
pub fn load(dir: &Path) -> SavedState {
    let path = state_file(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            log::warn!(
                "{}: not a weir state file ({e}); starting empty",
                path.display()
            );
            SavedState::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
        Err(e) => {
            log::warn!("cannot read {}: {e}; starting empty", path.display());
            SavedState::default()
        }
    }
}

/// The state to save now: traffic and every live registration of `config`.
pub fn snapshot(traffic: &Traffic, config: &Config) -> SavedState {
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut registrations = BTreeMap::new();
    for (name, upstream) in &config.upstreams {
        let list: Vec<SavedRegistration> = upstream
            .servers()
            .into_iter()
            .filter_map(|s| {
                let left = s.expires?.checked_duration_since(now)?;
                Some(SavedRegistration {
                    tier: s.peer.tier.clone(),
                    addr: s.peer.spec.addr.clone(),
                    tls: s.peer.spec.tls,
                    expires_at: unix_now + left.as_secs(),
                })
            })
            .collect();
        if !list.is_empty() {
            registrations.insert(name.clone(), list);
        }
    }
    SavedState {
        traffic: traffic.days(),
        registrations,
    }
}

/// Writes `state` atomically into `dir` (created when missing).
pub fn save(dir: &Path, state: &SavedState) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".state.json.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, state_file(dir))
}

/// Registers the saved servers of `state` whose TTL has not run out into `config`.
pub fn restore_registrations(state: &SavedState, config: &Config) {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, list) in &state.registrations {
        let Some(upstream) = config.upstreams.get(name) else {
            continue;
        };
        for r in list.iter().filter(|r| r.expires_at > unix_now) {
            let ttl = Duration::from_secs(r.expires_at - unix_now);
            match crate::upstream::registration_spec(&r.addr, r.tls) {
                Ok((spec, addrs)) => {
                    if let Err(e) = upstream.register(&r.tier, spec, addrs, ttl) {
                        log::warn!(
                            "upstream {name}: saved registration of {} dropped: {e}",
                            r.addr
                        );
                    }
                }
                Err(e) => log::warn!(
                    "upstream {name}: saved registration of {} dropped: {e}",
                    r.addr
                ),
            }
        }
    }
}

/// Writes the state file (traffic, registrations); logs when it cannot.
pub fn save_state(shared: &Shared, dir: &Path) {
    let state = snapshot(&shared.traffic, &shared.config.load());
    if let Err(e) = save(dir, &state) {
        log::warn!("cannot write {}: {e}", state_file(dir).display());
    }
}

/// How often the state file is written while running.
const SAVE_EVERY: Duration = Duration::from_secs(30);

/// Saves the state file every [`SAVE_EVERY`], so a crash loses at most that much.
pub fn spawn_state_saver(shared: Arc<Shared>, dir: PathBuf) {
    save_state(&shared, &dir);
    let spawned = std::thread::Builder::new()
        .name("weir-state".into())
        .spawn(move || loop {
            std::thread::sleep(SAVE_EVERY);
            save_state(&shared, &dir);
        });
    if let Err(e) = spawned {
        log::error!("cannot start the state saver ({e}); state is saved at shutdown only");
    }
}
