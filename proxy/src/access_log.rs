//! The access log: one line per request in nginx's `combined` format or as JSON, written to
//! stdout, a file (appended, reopened on reload so rotation works), or nowhere.

use crate::config::{AccessLogSettings, LogFormat, LogTarget};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one line records.
pub struct LogRecord<'a> {
    /// The client address.
    pub client: Option<IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// Request target as received.
    pub uri: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0` …
    pub version: &'a str,
    /// Status sent (0 when nothing was sent).
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: usize,
    /// `Referer`, or `-`.
    pub referer: &'a str,
    /// `User-Agent`, or `-`.
    pub user_agent: &'a str,
    /// Host header, or `-`.
    pub host: &'a str,
    /// The route that matched, or `-`.
    pub route: &'a str,
    /// The upstream server that answered, if any.
    pub upstream: Option<std::net::SocketAddr>,
    /// Time from the request header to the end.
    pub duration: Duration,
    /// Why the request failed, if it did.
    pub error: Option<String>,
    /// The cache status (`HIT`, `MISS` …) on caching routes.
    pub cache: Option<&'static str>,
}

enum Sink {
    Off,
    Stdout,
    File(Mutex<File>),
}

/// An open access log.
pub struct AccessLog {
    sink: Sink,
    format: LogFormat,
}

impl AccessLog {
    /// Opens the log `settings` describe (creating a file when needed).
    pub fn open(settings: &AccessLogSettings) -> std::io::Result<Self> {
        let sink = match &settings.target {
            LogTarget::Off => Sink::Off,
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(p) => Sink::File(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        };
        Ok(AccessLog {
            sink,
            format: settings.format,
        })
    }

    /// True when lines go nowhere (the caller skips building the record).
    pub fn is_off(&self) -> bool {
        matches!(self.sink, Sink::Off)
    }

    /// Writes one line. A failed write is reported once per failure on stderr and dropped: the
    /// log never stops a request.
    pub fn write(&self, record: &LogRecord) {
        let line = match self.format {
            LogFormat::Combined => combined(record, SystemTime::now()),
            LogFormat::Json => json(record, SystemTime::now()),
        };
        let result = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Sink::File(f) => f
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(line.as_bytes()),
        };
        if let Err(e) = result {
            log::warn!("access log write failed: {e}");
        }
    }
}

/// nginx `combined`: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`.
fn combined(r: &LogRecord, now: SystemTime) -> String {
    let client = r.client.map_or_else(|| "-".to_string(), |c| c.to_string());
    format!(
        "{client} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        clf_time(now),
        r.method,
        escape(r.uri),
        r.version,
        r.status,
        r.body_bytes,
        escape(r.referer),
        escape(r.user_agent),
    )
}

fn json(r: &LogRecord, now: SystemTime) -> String {
    let v = serde_json::json!({
        "time": rfc3339(now),
        "client": r.client.map(|c| c.to_string()),
        "method": r.method,
        "uri": r.uri,
        "version": r.version,
        "host": r.host,
        "status": r.status,
        "bytes_sent": r.body_bytes,
        "referer": r.referer,
        "user_agent": r.user_agent,
        "route": r.route,
        "upstream": r.upstream.map(|u| u.to_string()),
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "error": r.error,
        "cache": r.cache,
    });
    format!("{v}\n")
}

/// Escapes `"`, `\` and bytes outside printable ASCII as nginx does (`\xHH`).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil-from-days.
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(now: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil((secs / 86_400) as i64);
    let t = secs % 86_400;
    (y, m, d, t / 3600, t / 60 % 60, t % 60)
}

/// `29/Nov/2026:21:07:25 +0000` (weir logs in UTC).
fn clf_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = split(now);
    format!(
        "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

/// `2026-11-29T21:07:25Z`.
pub(crate) fn rfc3339(now: SystemTime) -> String {
    let (y, m, d, hh, mm, ss) = split(now);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord<'static> {
        LogRecord {
            client: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            uri: "/a b\"",
            version: "HTTP/1.1",
            status: 200,
            body_bytes: 512,
            referer: "-",
            user_agent: "wrk",
            host: "img.example.com",
            route: "images",
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            duration: Duration::from_millis(3),
            error: None,
            cache: Some("HIT"),
        }
    }

    #[test]
    fn combined_format_matches_nginx() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_986_445); // 2026-11-29T21:07:25Z
        assert_eq!(
            combined(&record(), t),
            "127.0.0.1 - - [29/Nov/2026:21:07:25 +0000] \"GET /a b\\x22 HTTP/1.1\" 200 512 \"-\" \"wrk\"\n"
        );
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        let line = json(&record(), t);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["time"], "2000-02-29T00:00:00Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "127.0.0.1:9001");
        assert_eq!(v["cache"], "HIT");
    }
}
