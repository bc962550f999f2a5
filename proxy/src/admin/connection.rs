//! One admin connection, request after request: Pingora's `ServeHttp` loop with what an
//! edge listener owes its clients. A request Pingora cannot parse (a NUL in a header, say)
//! gets `400` instead of a silent close; a request whose body is refused or ignored (401,
//! 413 by its declared length) closes the connection instead of draining the body, so a
//! declared 10 GB body gets its `413` at once; and keep-alive is only extended on
//! connections the client keeps (not HTTP/1.0 without keep-alive, not `Connection: close`).

use super::Admin;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;
use std::sync::Arc;

/// Idle seconds a kept-alive admin connection waits for its next request (as Pingora's
/// `ServeHttp` loop).
const KEEPALIVE_SECS: u64 = 60;

// === impl Admin ===

#[async_trait]
impl HttpServerApp for Admin {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match http.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                log::info!("admin: refused a malformed request: {e}");
                let status = match e.etype() {
                    ErrorType::InvalidHTTPHeader => Some(400),
                    ErrorType::HTTPStatus(code) if (400..600).contains(code) => Some(*code),
                    _ => None,
                };
                if let Some(status) = status {
                    if let Err(e) = http.respond_error(status).await {
                        log::debug!("admin: could not send the {status}: {e}");
                    }
                }
                http.shutdown().await;
                return None;
            }
        }
        if *shutdown.borrow() || http.get_keepalive().is_none() {
            http.set_keepalive(None);
        } else {
            http.set_keepalive(Some(KEEPALIVE_SECS));
        }
        let response = self.respond(&mut http).await;
        if !http.is_body_done() {
            // Answered without reading the body: close rather than read what was refused.
            http.set_keepalive(None);
        }
        let (parts, body) = response.into_parts();
        let header: ResponseHeader = parts.into();
        if let Err(e) = http.write_response_header(Box::new(header)).await {
            log::debug!("admin: writing the response header: {e}");
            return None;
        }
        if !body.is_empty() {
            if let Err(e) = http.write_response_body(Bytes::from(body), true).await {
                log::debug!("admin: writing the response body: {e}");
                return None;
            }
        }
        let settings = HttpPersistentSettings::for_session(&http);
        match http.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(e) => {
                log::debug!("admin: finishing the response: {e}");
                None
            }
        }
    }
}
