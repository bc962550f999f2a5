//! The one trait every weir plugin implements.
//!
//! Hooks are named after the Pingora phases they run in and default to doing nothing, so a
//! plugin implements only the phases it cares about. The proxy calls each route's plugins in
//! the order the YAML lists them, phase by phase.

use crate::{Flow, RequestCtx};
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, Result};

/// A request-processing step configured on a route.
///
/// One instance is built per route entry when the config is loaded, and shared by every
/// request and thread on that route; per-request state belongs in [`RequestCtx`] slots.
///
/// The header phases are synchronous on purpose: they edit headers and never wait, so a
/// chain of them costs no allocation per request. The request phase may wait (a rate limiter
/// delays) and the logging phase may do I/O, so those are `async`.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The name the plugin has in YAML, e.g. `headers`.
    fn name(&self) -> &'static str;

    /// The access phase: runs after the route matched and before the cache and the upstream.
    /// May delay, answer (returning [`Flow::Responded`] after writing a full response with
    /// `session.write_response_header`/`write_response_body`), or pass.
    ///
    /// An `Err` ends the request with the error's status when it is an
    /// `ErrorType::HTTPStatus`, else 500.
    async fn request_filter(&self, _session: &mut Session, _ctx: &mut RequestCtx) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// Edits the request about to be sent upstream (nginx `proxy_set_header`). Runs once per
    /// upstream attempt.
    fn upstream_request_filter(
        &self,
        _session: &mut Session,
        _request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Edits the response header before it goes to the client (nginx `add_header`). Runs for
    /// upstream responses; weir's own error pages do not pass through it.
    fn response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs once when the request is over, successful or not; `error` is why it failed.
    async fn logging(&self, _session: &mut Session, _error: Option<&Error>, _ctx: &mut RequestCtx) {
    }

    /// The plugin itself, for plugins that configure one of the proxy's own phases rather
    /// than run hooks (the `cache` plugin configures Pingora's cache phases). `None` for
    /// ordinary plugins.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}
