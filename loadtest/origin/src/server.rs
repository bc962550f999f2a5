//! The accept loop and per-connection HTTP/1.1 serving on hyper. Every
//! connection is a task in one `JoinSet`, so shutting down closes the listener
//! and then every open connection at once; the connection's socket is wrapped
//! so a `reset_after` body can make its close an RST instead of a FIN.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::handler::{handle, State};

/// Listen backlog: large enough for wrk opening hundreds of connections.
const BACKLOG: u32 = 1024;

/// Binds a listener on `addr` (SO_REUSEADDR, backlog 1024). Must be called
/// within a tokio runtime context.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `state`'s origin on `listener` until `shutdown` completes, then
/// closes the listener and every open connection, and returns.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    state.count_connection();
                    conns.spawn(serve_conn(stream, state.clone()));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    log::warn!("weir-origin {}: accept failed: {e}", state.name());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Serves one connection until the client or an error ends it.
async fn serve_conn(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let io = ConnIo {
        io: TokioIo::new(stream),
        reset: reset.clone(),
    };
    let svc = service_fn(move |req| handle(state.clone(), reset.clone(), req));
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(io, svc)
        .await;
}

/// The connection's socket, which on drop sets SO_LINGER 0 (so the close sends
/// an RST) if a `reset_after` body raised `reset`.
struct ConnIo {
    io: TokioIo<TcpStream>,
    reset: Arc<AtomicBool>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Acquire) {
            let _ = self.io.inner().set_zero_linger();
        }
    }
}

impl Read for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
