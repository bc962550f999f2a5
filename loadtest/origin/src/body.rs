//! Response bodies that never hold more than one chunk: the deterministic
//! byte pattern (`byte i == i % 251`) sliced out of one static buffer, plus the
//! slow-body (`body_delay`) and abort-midway (`reset_after`) behaviours, and
//! the FNV-1a helpers tests use to check a downloaded or uploaded body.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{sleep, Sleep};

/// Largest body chunk handed to hyper.
pub const CHUNK: usize = 64 * 1024;

/// The pattern's period: 251 is prime, so the pattern never lines up with
/// power-of-two chunk or page sizes and a misplaced chunk is always detected.
const PERIOD: usize = 251;

/// One chunk plus one period, rounded up to whole periods, so any chunk can be
/// sliced out starting at any phase of the pattern.
const PATTERN_LEN: usize = (CHUNK / PERIOD + 2) * PERIOD;

static PATTERN: [u8; PATTERN_LEN] = build_pattern();

const fn build_pattern() -> [u8; PATTERN_LEN] {
    let mut a = [0u8; PATTERN_LEN];
    let mut i = 0;
    while i < PATTERN_LEN {
        a[i] = (i % PERIOD) as u8;
        i += 1;
    }
    a
}

/// How long a `reset_after` body pauses after its last byte before the abort,
/// so hyper flushes those bytes to the socket first.
const RESET_GRACE: Duration = Duration::from_millis(20);

/// The byte at offset `i` of every `size=` body.
pub fn expected_byte(i: u64) -> u8 {
    (i % PERIOD as u64) as u8
}

/// `len` pattern bytes starting at body offset `offset`. Zero-copy (a slice of
/// a static buffer) when `len <= CHUNK`; allocates beyond that.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    let phase = (offset % PERIOD as u64) as usize;
    if len <= CHUNK {
        Bytes::from_static(&PATTERN[phase..phase + len])
    } else {
        (0..len as u64).map(|i| expected_byte(offset + i)).collect()
    }
}

/// FNV-1a 64 offset basis: the state before any byte.
pub const FNV1A_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash over `data`; start from [`FNV1A_INIT`].
pub fn fnv1a_update(mut state: u64, data: &[u8]) -> u64 {
    for &b in data {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV1A_PRIME);
    }
    state
}

/// FNV-1a 64 hash of `data` in one go.
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_update(FNV1A_INIT, data)
}

/// FNV-1a 64 of the first `len` bytes of the pattern, i.e. of a `size=len`
/// body. O(len); computed chunk by chunk without allocating.
pub fn pattern_fnv(len: u64) -> u64 {
    let mut state = FNV1A_INIT;
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        state = fnv1a_update(state, &pattern(off, n));
        off += n as u64;
    }
    state
}

/// Where the bytes of an [`OriginBody`] come from.
#[derive(Debug)]
enum Source {
    /// A small body already in memory (text, JSON).
    Fixed(Bytes),
    /// The deterministic pattern, generated on the fly.
    Pattern,
}

/// A streaming response body: at most [`CHUNK`] bytes per frame, optional
/// sleep before each frame, optional abort after some bytes.
#[derive(Debug)]
pub struct OriginBody {
    source: Source,
    pos: u64,
    len: u64,
    /// Bytes to send before ending (== len unless `reset_after` cuts it).
    stop_at: u64,
    /// Set (and the body then fails) to make the connection end with an RST.
    reset: Option<Arc<AtomicBool>>,
    chunk_delay: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    exact: bool,
}

impl OriginBody {
    /// A small in-memory body.
    pub fn fixed(bytes: impl Into<Bytes>) -> OriginBody {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        OriginBody::new(Source::Fixed(bytes), len)
    }

    /// `len` bytes of the pattern.
    pub fn pattern(len: u64) -> OriginBody {
        OriginBody::new(Source::Pattern, len)
    }

    /// No body at all.
    pub fn empty() -> OriginBody {
        OriginBody::fixed(Bytes::new())
    }

    fn new(source: Source, len: u64) -> OriginBody {
        OriginBody {
            source,
            pos: 0,
            len,
            stop_at: len,
            reset: None,
            chunk_delay: None,
            sleep: None,
            exact: true,
        }
    }

    /// Total length the body announces.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Sleeps `delay` before each chunk.
    pub fn with_chunk_delay(mut self, delay: Duration) -> OriginBody {
        self.chunk_delay = Some(delay);
        self
    }

    /// After `after` bytes (at most the whole body), raises `flag` and fails,
    /// which makes the connection close with an RST.
    pub fn with_reset(mut self, after: u64, flag: Arc<AtomicBool>) -> OriginBody {
        self.stop_at = after.min(self.len);
        self.reset = Some(flag);
        self
    }

    /// Hides the length from hyper so it sends the body chunked.
    pub fn with_unknown_length(mut self) -> OriginBody {
        self.exact = false;
        self
    }

    /// Polls the pending sleep (arming it for `delay` first if none).
    fn poll_sleep(&mut self, cx: &mut Context<'_>, delay: Duration) -> Poll<()> {
        let s = self.sleep.get_or_insert_with(|| Box::pin(sleep(delay)));
        ready!(s.as_mut().poll(cx));
        self.sleep = None;
        Poll::Ready(())
    }

    fn next_chunk(&mut self) -> Bytes {
        let n = (self.stop_at - self.pos).min(CHUNK as u64) as usize;
        let chunk = match &self.source {
            Source::Fixed(b) => b.slice(self.pos as usize..self.pos as usize + n),
            Source::Pattern => pattern(self.pos, n),
        };
        self.pos += n as u64;
        chunk
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.pos >= this.stop_at {
            let Some(flag) = this.reset.clone() else {
                return Poll::Ready(None);
            };
            ready!(this.poll_sleep(cx, RESET_GRACE));
            flag.store(true, Ordering::Release);
            this.reset = None;
            this.stop_at = this.len; // nothing more is ever sent
            this.pos = this.len;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "reset_after reached",
            ))));
        }
        if let Some(delay) = this.chunk_delay {
            ready!(this.poll_sleep(cx, delay));
        }
        Poll::Ready(Some(Ok(Frame::data(this.next_chunk()))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.len && self.reset.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.len - self.pos)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_slices_continue_across_chunks() {
        for &(off, len) in &[
            (0u64, 10usize),
            (250, 3),
            (251, 251),
            (65_535, CHUNK),
            (1 << 30, CHUNK),
            (7, 200_000),
        ] {
            let b = pattern(off, len);
            assert_eq!(b.len(), len);
            for (i, &byte) in b.iter().enumerate() {
                assert_eq!(byte, expected_byte(off + i as u64), "off {off} i {i}");
            }
        }
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
        let all: Vec<u8> = (0..300_000u64).map(expected_byte).collect();
        assert_eq!(pattern_fnv(300_000), fnv1a(&all));
        assert_eq!(fnv1a_update(fnv1a(&all[..5]), &all[5..]), fnv1a(&all));
    }
}
