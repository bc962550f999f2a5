//! The `cache` plugin: `- cache: { zone: images, bypass: [header:X-No-Cache, cookie:nocache] }`.
//!
//! It has no hooks of its own: it tells the proxy which zone serves the route and which
//! requests bypass it. The proxy's cache phases (Pingora's) do the work.

use super::zone::CacheZone;
use crate::build::{BuildContext, BuildPlugin};
use crate::config::{join, ConfigErrors};
use crate::key::{cookie, parse_key_part, KeyPart};
use crate::Plugin;
use pingora::http::RequestHeader;
use serde::Deserialize;
use std::sync::Arc;

/// `cache` config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Zone under `caches:`.
    pub zone: String,
    /// `header:NAME` / `cookie:NAME`: a request where one is present, not empty and not `0`
    /// skips the lookup; the response is still stored (nginx `proxy_cache_bypass`).
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// A route's cache: its zone and bypass conditions.
#[derive(Debug, Clone)]
pub struct CachePlugin {
    /// The zone.
    pub zone: Arc<CacheZone>,
    bypass: Vec<KeyPart>,
}

impl CachePlugin {
    /// Does `req` bypass the cache (nginx: a bypass value that is non-empty and not "0")?
    pub fn bypasses(&self, req: &RequestHeader) -> bool {
        let set = |v: &[u8]| !v.is_empty() && v != b"0";
        self.bypass.iter().any(|part| match part {
            KeyPart::Header(name) => req.headers.get_all(name).iter().any(|v| set(v.as_bytes())),
            KeyPart::Cookie(name) => cookie(req, name).is_some_and(set),
            _ => false,
        })
    }
}

impl Plugin for CachePlugin {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl BuildPlugin for CachePlugin {
    const NAME: &'static str = "cache";
    type Config = CacheConfig;

    fn build(c: CacheConfig, path: &str, ctx: &BuildContext) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let zone = ctx
            .caches
            .find(&c.zone, "caches", &join(path, "zone"), &mut errors);
        let mut bypass = Vec::new();
        for (i, b) in c.bypass.iter().enumerate() {
            match parse_key_part(b) {
                Ok(k @ (KeyPart::Header(_) | KeyPart::Cookie(_))) => bypass.push(k),
                _ => errors.push(
                    format!("{path}.bypass[{i}]"),
                    format!("`{b}`: expected header:NAME or cookie:NAME"),
                ),
            }
        }
        match zone {
            Some(zone) if errors.is_empty() => Ok(CachePlugin { zone, bypass }),
            _ => Err(errors),
        }
    }
}
