//! An example plugin that is not built into weir: `request_id`.
//!
//! It gives every request an id (or keeps the one the client sent), passes it upstream and
//! returns it to the client, so a request can be followed through logs. It shows the three
//! things a plugin needs: a config struct, a [`BuildPlugin`] that validates it, and
//! [`Plugin`] hooks that share per-request state through a typed slot of [`RequestCtx`].
//! `docs/plugins.md` walks through it; `src/bin/weir-example.rs` is a weir binary with it
//! registered.
//!
//! ```yaml
//! plugins:
//!   - request_id: { header: X-Request-Id }
//! ```

#![forbid(unsafe_code)]

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use weir_plugins::config::join;
use weir_plugins::{BuildContext, BuildPlugin, ConfigErrors, Flow, Plugin, RequestCtx};

/// The YAML config: `request_id: { header: X-Request-Id }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIdConfig {
    /// The header that carries the id (default `X-Request-Id`).
    pub header: Option<String>,
}

/// The built plugin: one per route entry, shared by all requests.
pub struct RequestId {
    header: http::HeaderName,
    next: AtomicU64,
    seed: u64,
}

/// This plugin's slot in the request context: the id of the current request.
struct CurrentId(String);

impl BuildPlugin for RequestId {
    const NAME: &'static str = "request_id";
    type Config = RequestIdConfig;

    fn build(
        config: RequestIdConfig,
        path: &str,
        _ctx: &BuildContext,
    ) -> Result<Self, ConfigErrors> {
        let name = config.header.as_deref().unwrap_or("X-Request-Id");
        let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            let mut e = ConfigErrors::default();
            e.push(
                join(path, "header"),
                format!("`{name}` is not a valid header name"),
            );
            e
        })?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(RequestId {
            header,
            next: AtomicU64::new(0),
            seed,
        })
    }
}

impl RequestId {
    /// A process-unique id: a start-time seed and a counter, mixed so ids do not look
    /// sequential.
    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        format!("{:016x}", x ^ (x >> 29))
    }
}

#[async_trait]
impl Plugin for RequestId {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Flow> {
        let sent = session
            .req_header()
            .headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned);
        ctx.insert(CurrentId(sent.unwrap_or_else(|| self.new_id())));
        Ok(Flow::Continue)
    }

    fn upstream_request_filter(
        &self,
        _s: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match ctx.get::<CurrentId>() {
            Some(id) => request.insert_header(self.header.clone(), id.0.as_str()),
            None => Ok(()),
        }
    }

    fn response_filter(
        &self,
        _s: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match ctx.get::<CurrentId>() {
            Some(id) => response.insert_header(self.header.clone(), id.0.as_str()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugins::Registry;

    #[test]
    fn registers_and_validates() {
        let mut registry = Registry::builtin();
        registry.register::<RequestId>();
        let ok: weir_plugins::serde_yaml_ng::Value =
            weir_plugins::serde_yaml_ng::from_str("request_id: {}").unwrap();
        assert!(registry.build(&ok, "p", &BuildContext::default()).is_ok());
        let bad = weir_plugins::serde_yaml_ng::from_str("request_id: {header: 'a b'}").unwrap();
        let e = registry
            .build(&bad, "p", &BuildContext::default())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "p.request_id.header: `a b` is not a valid header name"
        );
    }

    #[test]
    fn ids_are_distinct() {
        let p = RequestId::build(
            RequestIdConfig { header: None },
            "p",
            &BuildContext::default(),
        )
        .ok()
        .unwrap();
        assert_ne!(p.new_id(), p.new_id());
    }
}
