//! Plain fresh HITs answered without pingora-cache: the proxy's fast path asks the zone for
//! an object that is certainly served as it is stored ([`DiskStorage::fresh_hit`]) and
//! writes it itself, skipping pingora-cache's per-request machinery (key, lock, meta, hit
//! handler).
//!
//! Only an indexed object, fresh now, stored without `Vary` (one variant, in the primary
//! slot) qualifies; anything else (absent, stale, varying, still being loaded, its size out of
//! step with the index) is `None`, and the request takes pingora-cache's path, which finds
//! it as before. A refusal touches nothing that path would count twice: the object is marked
//! read (LRU, read counts) only when it is served here.

use super::file::Hash;
use super::index::Entry;
use super::memory::{rebuild_meta, QuickMeta};
use super::open_files::OpenFile;
use super::storage::DiskStorage;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::fs::File;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Largest piece of a file-backed body read at once.
const CHUNK: usize = 64 * 1024;

/// A plain fresh HIT: the stored response header, its age and its body.
pub struct FreshHit {
    /// The response header as stored.
    pub header: ResponseHeader,
    /// Seconds since the object was stored or last revalidated (its `Age`).
    pub age: u64,
    /// The body.
    pub body: FreshBody,
}

/// A fresh HIT's body, read from memory or from the object's file.
pub struct FreshBody {
    zone: &'static DiskStorage,
    body: Body,
}

enum Body {
    /// The memory tier's copy (or a copy just read into it).
    Memory(Option<Bytes>),
    /// The object's open file, from `pos` (body offset) on.
    File { open: Arc<OpenFile>, pos: u64 },
}

/// A body range in a file: `len` bytes at byte `offset` of `file`.
pub struct FileRange<'a> {
    /// The object's file.
    pub file: &'a File,
    /// Where the range starts in the file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

impl FreshBody {
    /// The body's length (of what is left to send).
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Memory(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Body::File { open, pos } => open.header.body_len - pos,
        }
    }

    /// The next piece of the body (counted as served); `None` at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let chunk = match &mut self.body {
            Body::Memory(b) => b.take(),
            Body::File { open, pos } => {
                let h = &open.header;
                let n = (h.body_len - *pos).min(CHUNK as u64) as usize;
                if n == 0 {
                    return Ok(None);
                }
                let mut buf = Vec::with_capacity(n);
                while buf.len() < n {
                    let at = h.body_offset() + *pos + buf.len() as u64;
                    let spare = rustix::buffer::spare_capacity(&mut buf);
                    let read = rustix::io::pread(&*open.file, spare, at)
                        .or_err(FileReadError, "cache: cannot read the body")?;
                    if read == 0 {
                        return Error::e_explain(
                            FileReadError,
                            "cache: the object file is shorter than its header says",
                        );
                    }
                }
                *pos += n as u64;
                Some(Bytes::from(buf))
            }
        };
        self.zone
            .count_served(chunk.as_ref().map_or(0, |c| c.len() as u64));
        Ok(chunk)
    }

    /// The rest of the body as a range of the object's file, when it is read from one
    /// (not from memory): what a `sendfile` can send. Call [`FreshBody::sent_from_file`]
    /// with what was sent.
    pub fn file_range(&self) -> Option<FileRange<'_>> {
        match &self.body {
            Body::Memory(_) => None,
            Body::File { open, pos } => Some(FileRange {
                file: &open.file,
                offset: open.header.body_offset() + pos,
                len: open.header.body_len - pos,
            }),
        }
    }

    /// `n` bytes of [`FreshBody::file_range`] were sent: moves on past them, counted served.
    pub fn sent_from_file(&mut self, n: u64) {
        if let Body::File { open, pos } = &mut self.body {
            let n = n.min(open.header.body_len - *pos);
            *pos += n;
            self.zone.count_served(n);
        }
    }
}

/// `Some(age)` when an object with this meta (its quick form `quick`, else its serialized
/// internal part) and response header is served as stored at `now`: fresh, and one variant.
fn plain_age(
    quick: Option<&QuickMeta>,
    internal: &[u8],
    response: &ResponseHeader,
    now: SystemTime,
) -> Option<u64> {
    if response.headers.contains_key(http::header::VARY) {
        return None;
    }
    let (fresh, variance, epoch) = match quick {
        Some(q) => (q.fresh_until >= now, q.variance, q.created),
        None => {
            let meta = rebuild_meta(None, internal, response)?;
            (meta.is_fresh(now), meta.variance(), meta.epoch())
        }
    };
    if !fresh || variance.is_some() {
        return None;
    }
    Some(now.duration_since(epoch).unwrap_or_default().as_secs())
}

impl DiskStorage {
    /// The object `hash` (a primary key: no variance) when it is a plain fresh HIT at `now`
    /// (see the module); marked read then, as pingora-cache's lookup would. A body of
    /// `file_from` bytes or more comes from the object's open file even when the memory tier
    /// holds a copy (the caller can `sendfile` it, which costs less than writing the copy);
    /// `u64::MAX`: from the copy whenever there is one.
    pub fn fresh_hit(
        &'static self,
        hash: &Hash,
        now: SystemTime,
        file_from: u64,
    ) -> Result<Option<FreshHit>> {
        let (e, open, hot_max) = {
            let mut catalog = self.catalog();
            let Some(e) = catalog.index().peek(hash).copied() else {
                return Ok(None); // absent, or not indexed yet by the loader
            };
            let hot = catalog.get_hot(hash);
            let open = match hot {
                None => catalog.get_open(hash),
                Some(_) => None,
            };
            if let Some(h) = &hot {
                let Some(age) = plain_age(h.quick.as_ref(), &h.internal, &h.header, now) else {
                    return Ok(None);
                };
                let open = match h.body.len() as u64 >= file_from {
                    true => catalog.get_open(hash),
                    false => None,
                };
                let body = match open.filter(|o| o.header.file_len() == e.size) {
                    Some(open) => Body::File { open, pos: 0 },
                    None => Body::Memory(Some(h.body.clone())),
                };
                catalog.touch(hash, Instant::now());
                return Ok(Some(FreshHit {
                    header: h.header.clone(),
                    age,
                    body: FreshBody { zone: self, body },
                }));
            }
            (e, open, catalog.memory().max_body())
        };
        let open = match open {
            Some(open) => open,
            None => match self.open_file(hash, Some(e)) {
                Some((open, _)) => open,
                None => return Ok(None),
            },
        };
        self.serve_open(hash, e, open, (hot_max, file_from), now)
    }

    /// The open object `hash` (index entry `e` when the lookup began) as a fresh HIT; a body
    /// up to `hot_max` and under `file_from` is offered to the memory tier.
    fn serve_open(
        &'static self,
        hash: &Hash,
        e: Entry,
        open: Arc<OpenFile>,
        (hot_max, file_from): (u64, u64),
        now: SystemTime,
    ) -> Result<Option<FreshHit>> {
        let age = plain_age(open.quick.as_ref(), &open.internal, &open.response, now);
        let Some(age) = age.filter(|_| e.size == open.header.file_len()) else {
            return Ok(None);
        };
        if self.catalog().touch(hash, Instant::now()).is_none() {
            return Ok(None); // removed meanwhile
        }
        let header = open.response.clone();
        // A copy is read for the memory tier only when this caller would write it (a body it
        // sends from the file gets none; a caller that cannot will make it).
        let len = open.header.body_len;
        let body = match hot_max > 0 && len <= hot_max && len < file_from {
            true => self
                .read_hot(hash, &e, &open)?
                .map(|b| Body::Memory(Some(b))),
            false => None,
        };
        let body = body.unwrap_or(Body::File { open, pos: 0 });
        Ok(Some(FreshHit {
            header,
            age,
            body: FreshBody { zone: self, body },
        }))
    }
}
