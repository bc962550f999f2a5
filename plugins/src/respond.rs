//! Short local answers a plugin writes itself (403, 429, 503 …) and a log limiter so a flood
//! of refusals does not flood the log.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes a complete `text/plain` response with `body` and `headers`, keeping the client
/// connection open.
pub async fn respond_text(
    session: &mut Session,
    status: u16,
    body: &'static str,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3 + headers.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

/// The client for a log line: its address, or `-`.
pub fn client_for_log(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "-".into(), |ip| ip.to_string())
}

/// The request target for a log line, cut at 200 characters.
pub fn path_for_log(req: &RequestHeader) -> String {
    String::from_utf8_lossy(req.raw_path())
        .chars()
        .take(200)
        .collect()
}

/// `" (N similar lines suppressed)"` after a line a [`LogLimiter`] let through, or nothing.
pub fn suppressed_note(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} similar lines suppressed)"),
    }
}

/// Lets one log line through per second and counts the ones it holds back, so the next
/// line can say how many were suppressed.
#[derive(Debug, Default)]
pub struct LogLimiter {
    second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// `Some(n)` when a line may be written now (`n` lines were suppressed since the last
    /// one), `None` when this one should be dropped.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prev = self.second.load(Ordering::Relaxed);
        if prev != now
            && self
                .second
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second() {
        let l = LogLimiter::default();
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.second.store(0, Ordering::Relaxed); // as if a second passed
        assert_eq!(l.allow(), Some(2));
    }
}
