//! Request buffering (nginx `proxy_request_buffering on`, weir's default): the whole request
//! body is read before an upstream is chosen, the first [`MEMORY_LIMIT`] bytes in memory and
//! the rest in an unnamed temp file under `server.temp_dir`, then sent to each attempt from
//! there (Pingora's `request_body_replay` hook, a vendored patch). A slow upload holds no
//! upstream connection, `max_request_body` answers 413 before the upstream sees a byte, and
//! a retry sends the whole body again.
//!
//! The temp file has no name (`O_TMPFILE`, or unlinked at once where the file system lacks
//! it, as nginx does with its client body files): the kernel frees it when the request
//! ends, however it ends (success, error, a client that goes away, a crash).

use super::http_error;
use crate::config::ServerSettings;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::ErrorType;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Bytes of a body kept in memory; a larger body moves whole to a temp file. Pingora's
/// own retry buffer holds as much; nginx's `client_body_buffer_size` is 16 KiB.
pub const MEMORY_LIMIT: usize = 64 << 10;

/// The size of each piece read back from a temp file.
const FILE_PIECE: usize = 64 << 10;

/// A request body read whole, and how far the current attempt has sent it.
#[derive(Debug, Default)]
pub struct BufferedBody {
    /// The body's pieces while it fits in memory (empty once it moved to `file`).
    memory: Vec<Bytes>,
    /// The whole body, once it outgrew memory.
    file: Option<File>,
    /// Its length in bytes.
    len: u64,
    /// Next piece to send: an index into `memory`, or an offset into `file`.
    next: u64,
}

/// What reading the body came to.
pub enum Buffered {
    /// The whole body.
    Body(BufferedBody),
    /// It grew past `server.max_request_body` (413).
    TooLarge,
}

/// Reads the request body to its end: at most `server.client_body_timeout` between two
/// reads, at most `server.max_request_body` bytes (0: no limit). A client that announced
/// `Expect: 100-continue` is told to go on first, since weir itself reads the body.
pub async fn read(session: &mut Session, server: &ServerSettings) -> Result<Buffered> {
    crate::framing::continue_if_expected(session)
        .await
        .map_err(|e| e.into_down())?;
    let mut body = BufferedBody::default();
    while let Some(piece) = read_piece(session, server.client_body_timeout).await? {
        let max = server.max_request_body;
        if max != 0 && body.len + piece.len() as u64 > max {
            return Ok(Buffered::TooLarge);
        }
        body.push(piece, &server.temp_dir)?;
    }
    Ok(Buffered::Body(body))
}

/// One read of the body; a client silent for `wait` is gone (nginx closes the connection
/// and logs 408).
async fn read_piece(session: &mut Session, wait: Duration) -> Result<Option<Bytes>> {
    let read = session.as_downstream_mut().read_request_body();
    match tokio::time::timeout(wait, read).await {
        Ok(piece) => piece.map_err(|e| e.into_down()),
        Err(_) => Err(Error::explain(
            ErrorType::ReadTimedout,
            "no request body bytes for server.client_body_timeout",
        )
        .into_down()),
    }
}

// === impl BufferedBody ===

impl BufferedBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body went to a temp file.
    #[cfg(test)]
    fn in_file(&self) -> bool {
        self.file.is_some()
    }

    /// Appends a piece: to memory while the body fits there, else to the temp file (the
    /// pieces held in memory go first).
    fn push(&mut self, piece: Bytes, temp_dir: &Path) -> Result<()> {
        self.len += piece.len() as u64;
        if self.file.is_none() && self.len <= MEMORY_LIMIT as u64 {
            self.memory.push(piece);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(temp_file(temp_dir)?),
        };
        for held in self.memory.drain(..).chain(std::iter::once(piece)) {
            file.write_all(&held).map_err(|e| {
                log::error!(
                    "server.temp_dir: cannot write a buffered request body in {}: {e}",
                    temp_dir.display()
                );
                http_error(500, "cannot write the request body to server.temp_dir")
            })?;
        }
        Ok(())
    }

    /// Starts the body again from its beginning (a new attempt).
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    /// The next piece to send to the upstream, `None` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Bytes>> {
        let Some(file) = &self.file else {
            let piece = usize::try_from(self.next)
                .ok()
                .and_then(|i| self.memory.get(i).cloned());
            self.next += 1;
            return Ok(piece);
        };
        let left = self.len.saturating_sub(self.next);
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; FILE_PIECE.min(left as usize)];
        file.read_exact_at(&mut buf, self.next).map_err(|e| {
            log::error!("cannot read a buffered request body back: {e}");
            http_error(500, "cannot read the buffered request body")
        })?;
        self.next += buf.len() as u64;
        Ok(Some(Bytes::from(buf)))
    }
}

/// An unnamed temp file under `dir`, created (with `dir`) on demand.
fn temp_file(dir: &Path) -> Result<File> {
    let created = tempfile::tempfile_in(dir).or_else(|e| {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        std::fs::create_dir_all(dir)?;
        tempfile::tempfile_in(dir)
    });
    created.map_err(|e| {
        log::error!(
            "server.temp_dir: cannot create a temp file for a request body in {}: {e}",
            dir.display()
        );
        http_error(500, "cannot buffer the request body in server.temp_dir")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(body: &mut BufferedBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(piece) = body.next_piece().unwrap() {
            out.extend_from_slice(&piece);
        }
        out
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_small_body_stays_in_memory_and_replays_whole_each_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = BufferedBody::default();
        body.push(Bytes::from_static(b"hello "), dir.path())
            .unwrap();
        body.push(Bytes::from_static(b"world"), dir.path()).unwrap();
        assert!(!body.in_file());
        assert_eq!(body.len(), 11);
        assert_eq!(replay(&mut body), b"hello world");
        body.rewind();
        assert_eq!(replay(&mut body), b"hello world");
    }

    #[test]
    fn a_large_body_moves_to_an_unnamed_file_and_replays_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(MEMORY_LIMIT * 3 + 123);
        let mut body = BufferedBody::default();
        for piece in data.chunks(10_000) {
            body.push(Bytes::copy_from_slice(piece), dir.path())
                .unwrap();
        }
        assert!(body.in_file());
        assert_eq!(body.len(), data.len() as u64);
        // Nothing in the directory carries a name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(replay(&mut body), data);
        body.rewind();
        assert_eq!(replay(&mut body), data);
    }

    #[test]
    fn a_missing_temp_dir_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/tmp");
        let mut body = BufferedBody::default();
        let big = Bytes::from(pattern(MEMORY_LIMIT + 1));
        body.push(big.clone(), &missing).unwrap();
        assert!(missing.is_dir());
        assert_eq!(replay(&mut body), big);
    }

    #[test]
    fn an_unwritable_temp_dir_answers_500() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let mut body = BufferedBody::default();
        let err = body
            .push(Bytes::from(pattern(MEMORY_LIMIT + 1)), &file.join("tmp"))
            .unwrap_err();
        assert_eq!(err.etype(), &ErrorType::HTTPStatus(500));
    }
}
