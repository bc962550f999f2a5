//! Plain HTTP/1 keep-alive connections wait for their next request outside Pingora.
//!
//! Pingora waits for the next request inside `HttpProxy::process_new_http`, whose boxed future
//! is sized for the whole proxy state machine (14,240 bytes for weir, 12,176 of them
//! `process_request`), with its 4 KiB header buffer already allocated, under the boxed
//! `ServerApp::process_new` future (3,824 bytes, sized by the HTTP/2 accept loop): 22 KiB of
//! the 35 KiB an idle connection held (heaptrack, 2,000 idle clients, glibc build).
//! [`IdleParking`] waits for the first byte of the next request itself, in an 848-byte
//! future that holds only the socket, and builds Pingora's session once there is something to
//! read. Measured (loadtest/README.md, "Idle connections"): 10,000 idle clients 389 → 176 MiB;
//! cost: one more `recvfrom` (of 0 bytes) per request, +0.3 % instructions per request.

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::prelude::timeout;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// Pingora's keepalive for the first request of a connection (as `ServerApp::process_new`).
const FIRST_REQUEST_KEEPALIVE_SECS: u64 = 60;

/// How long a new connection may stay silent when no header timeout is set: Pingora's wait
/// for a first request. With one (`server.client_header_timeout`), that timeout, as nginx
/// waits `client_header_timeout` for a new connection's first request.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(FIRST_REQUEST_KEEPALIVE_SECS);

/// How long a kept-alive connection may stay idle between requests: weir's client keepalive
/// (nginx's `keepalive_timeout` 75 s), which `request_filter` gives every reusable session.
const NEXT_REQUEST_WAIT: Duration = Duration::from_secs(crate::proxy::CLIENT_KEEPALIVE_SECS);

/// An HTTP application `A` (weir's `HttpProxy`) whose plain HTTP/1 connections are parked
/// between requests. TLS connections and h2c go through Pingora's own `process_new` as before.
///
/// A connection is not parked when the bytes of its next request were already read with
/// the previous one (a pipelining client, `set_pipelining_enabled`): they are in memory, not
/// on the socket, and waiting for the socket would hang a client that sent everything.
pub struct IdleParking<A>(Arc<A>);

// === impl IdleParking ===

impl<A> IdleParking<A> {
    /// Wraps `app`.
    pub fn new(app: A) -> Self {
        IdleParking(Arc::new(app))
    }
}

#[async_trait]
impl<A> ServerApp for IdleParking<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let app = &self.0;
        let options = app.server_options();
        let h2c_or_custom = options.is_some_and(|o| o.h2c || o.force_custom);
        if stream.get_ssl_digest().is_some() || h2c_or_custom {
            return app.process_new(stream, shutdown).await;
        }
        let reuses = options.and_then(|o| o.keepalive_request_limit);
        let header_timeout = options.and_then(|o| o.h1_header_timeout);
        let (mut stream, mut settings) = (stream, None::<HttpPersistentSettings>);
        let mut first = true;
        loop {
            // A stop closes a connection waiting for its next (or first) request, as
            // Pingora's handle_new_request does; bytes already there are served first.
            let wait = if first {
                header_timeout.unwrap_or(FIRST_REQUEST_WAIT)
            } else {
                NEXT_REQUEST_WAIT
            };
            let pipelined = settings.as_ref().is_some_and(|s| s.has_pipelined_prefix());
            if !pipelined && !next_request(&mut stream, wait, Some(shutdown)).await {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            session.set_header_timeout(header_timeout);
            if first {
                // As Pingora's process_new: no keep-alive for a connection accepted while
                // the server stops.
                let keepalive = (!*shutdown.borrow()).then_some(FIRST_REQUEST_KEEPALIVE_SECS);
                session.set_keepalive(keepalive);
                session.set_keepalive_reuses_remaining(reuses);
            } else if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            }
            let reused = app.process_new_http(session, shutdown).await?;
            (stream, settings) = reused.consume();
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.0.http_cleanup().await;
    }
}

/// Waits until `stream` has bytes (or end of file, or an error) to read, without reading
/// them. False when it stayed silent for `wait`, or when `stop` says the server stops: the
/// caller then closes the connection, as Pingora does.
async fn next_request(stream: &mut Stream, wait: Duration, stop: Option<&ShutdownWatch>) -> bool {
    // A read into an empty buffer returns as soon as the socket is readable and consumes
    // nothing; Pingora's own read then finds the bytes.
    let readable = poll_fn(|cx| {
        let mut nothing = ReadBuf::new(&mut []);
        Pin::new(&mut *stream).poll_read(cx, &mut nothing)
    });
    let Some(stop) = stop else {
        return timeout(wait, readable).await.is_ok();
    };
    let mut stopping = stop.clone();
    tokio::select! {
        biased;
        read = timeout(wait, readable) => read.is_ok(),
        _ = stopping.wait_for(|stop| *stop) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    /// A connected pair on a free loopback port: weir's side as a Pingora stream, the client.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let server: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (server, client)
    }

    #[tokio::test]
    async fn returns_when_bytes_arrive_and_leaves_them_unread() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(next_request(&mut server, Duration::from_secs(5), None).await);
        let mut buf = [0u8; 16];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn returns_when_the_client_closes() {
        let (mut server, client) = pair().await;
        drop(client);
        assert!(next_request(&mut server, Duration::from_secs(5), None).await);
    }

    #[tokio::test]
    async fn gives_up_on_a_silent_connection() {
        let (mut server, _client) = pair().await;
        assert!(!next_request(&mut server, Duration::from_millis(50), None).await);
    }

    #[tokio::test]
    async fn gives_up_when_the_server_stops() {
        let (mut server, _client) = pair().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let waiting = next_request(&mut server, Duration::from_secs(30), Some(&stop_rx));
        let (parked, _) = tokio::join!(waiting, async { stop_tx.send(true).unwrap() });
        assert!(!parked);
    }
}
