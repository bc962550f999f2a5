//! The `admin:` section: where the admin API listens and the token its mutating calls need.

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::SocketAddr;
use weir_plugins::config::{from_value, join};
use weir_plugins::ConfigErrors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminWire {
    listen: String,
    token: Option<String>,
}

/// `admin:`: where the admin API listens and the token its mutating calls need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The admin listener (never one of the proxy listeners).
    pub listen: SocketAddr,
    /// `Authorization: Bearer <token>` for every call but GET.
    pub token: String,
}

/// Builds `admin:`.
pub fn build(value: &Value, path: &str) -> Result<AdminSettings, ConfigErrors> {
    let wire: AdminWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let listen = wire.listen.parse::<SocketAddr>().map_err(|_| {
        errors.push(
            join(path, "listen"),
            format!("`{}` is not an IP:port address", wire.listen),
        )
    });
    let token = wire.token.unwrap_or_default();
    if token.trim().is_empty() {
        errors.push(
            join(path, "token"),
            "required: purge, reload and registration change the running proxy",
        );
    }
    match listen {
        Ok(listen) if errors.is_empty() => Ok(AdminSettings { listen, token }),
        _ => Err(errors),
    }
}
