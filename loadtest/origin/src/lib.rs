//! weir-origin: a real HTTP/1.1 origin server for weir's integration tests,
//! demo and wrk benchmarks. Bodies are streamed in chunks of at most 64 KiB and
//! never held whole, in either direction.
//!
//! Every path answers `200 "<name> <path>\n"` by default; query parameters
//! (percent-decoded, all optional, unknown ones ignored, bad values → 400):
//!
//! | parameter | effect |
//! | --- | --- |
//! | `size=N[k\|m\|g]` | body of N bytes, byte i = `i % 251` ([`expected_byte`]) |
//! | `chunked=1` | no Content-Length, chunked transfer coding |
//! | `status=N` | response status (200..=999; 204/304 get no body) |
//! | `delay=MS` | sleep before the response head |
//! | `body_delay=MS` | sleep before each body chunk |
//! | `reset_after=N` | full Content-Length, N body bytes, then an RST |
//! | `cc`, `set_cookie`, `vary`, `expires`, `x_accel_expires`, `etag`, `last_modified` | set that header (a conditional GET these validators satisfy gets 304) |
//! | `ctype=V` | Content-Type (default `application/octet-stream` with `size`, else `text/plain`) |
//! | `big_header=N[k\|m]` | an `X-Big` header of N bytes (at most 1 MiB) |
//!
//! Special paths: `/__echo` (JSON description of the request with its body's
//! length and FNV-1a 64), `/__hits?path=/x` (hit count of `/x`, not itself
//! counted), `/__health` (`ok\n`, or the status set by [`State::set_health_status`]). Every response has `X-Origin` and `Date`.
//!
//! Tests use it in-process through [`Origin`], which runs on its own thread
//! and runtime so it works from sync and async tests alike.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod handler;
mod params;
mod server;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub use body::{expected_byte, fnv1a, fnv1a_update, pattern, pattern_fnv, CHUNK, FNV1A_INIT};
pub use handler::State;
pub use params::{parse_size, percent_decode, Params};
pub use server::{bind, serve};

/// A running origin on its own thread and tokio runtime. Dropping it stops it.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts an origin called `name` on 127.0.0.1 with an ephemeral port and
    /// one thread; returns once it is listening.
    ///
    /// # Panics
    /// If the runtime, thread or socket cannot be created.
    // The tests' one-line constructor: failing to start is a failed test, so it panics (and
    // says so above); `start_on` is the fallible form.
    #[allow(clippy::panic)]
    pub fn start(name: &str) -> Origin {
        match Origin::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), name, 1) {
            Ok(o) => o,
            Err(e) => panic!("weir-origin {name}: cannot start: {e}"),
        }
    }

    /// Starts an origin called `name` on `addr` (port 0 picks one) with
    /// `threads` runtime threads (1 or 0: a single-threaded runtime); returns
    /// once it is listening.
    pub fn start_on(addr: SocketAddr, name: &str, threads: usize) -> io::Result<Origin> {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        let rt = builder
            .enable_all()
            .thread_name(format!("origin-{name}"))
            .build()?;
        let listener = {
            let _guard = rt.enter();
            bind(addr)?
        };
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(name));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("origin-{name}"))
            .spawn(move || {
                rt.block_on(serve(listener, served, async {
                    let _ = stop_rx.await;
                }));
            })?;
        Ok(Origin {
            addr,
            state,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path_and_query>`, for building request URLs.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Its name, as sent in `X-Origin`.
    pub fn name(&self) -> &str {
        self.state.name()
    }

    /// Its shared state (hit counters).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Requests seen for exactly `path` (no query), all methods.
    pub fn hits(&self, path: &str) -> u64 {
        self.state.hits(path)
    }

    /// Requests seen in total (`/__hits` requests are not counted).
    pub fn total_hits(&self) -> u64 {
        self.state.total_hits()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state().connections()
    }

    /// Closes the listener and every open connection, and waits until they
    /// are closed; the port then refuses connections. Idempotent.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}
