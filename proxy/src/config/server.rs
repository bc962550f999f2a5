//! The `server:` section: listeners, threads, shutdown, access log and request limits.

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_plugins::cidr::Cidr;
use weir_plugins::config::{checked, from_value, index, join, Checked};
use weir_plugins::units::{ConfigDuration, ConfigSize};
use weir_plugins::{ConfigError, ConfigErrors};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerWire {
    listen: Vec<Value>,
    threads: Option<Checked<usize>>,
    grace_period: Option<Checked<ConfigDuration>>,
    trusted_proxies: Option<Vec<String>>,
    real_ip_header: Option<String>,
    access_log: Option<AccessLogWire>,
    max_request_body: Option<Checked<ConfigSize>>,
    state_dir: Option<String>,
    max_header_line: Option<Checked<ConfigSize>>,
    max_uri: Option<Checked<ConfigSize>>,
    max_headers: Option<Checked<usize>>,
    client_header_timeout: Option<Checked<ConfigDuration>>,
    client_body_timeout: Option<Checked<ConfigDuration>>,
    send_timeout: Option<Checked<ConfigDuration>>,
    temp_dir: Option<String>,
    max_header_bytes: Option<Checked<ConfigSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenWire {
    addr: String,
    tls: Option<TlsWire>,
    #[serde(default)]
    http2: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsWire {
    cert: String,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogWire {
    path: Option<String>,
    format: Option<String>,
}

/// The validated `server:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Where weir accepts connections.
    pub listen: Vec<Listener>,
    /// Peers whose `real_ip_header` is believed (nginx `set_real_ip_from`).
    pub trusted_proxies: Vec<Cidr>,
    /// The header that names the client behind a trusted proxy (default X-Forwarded-For).
    pub real_ip_header: http::HeaderName,
    /// Worker threads (default: the number of CPUs).
    pub threads: usize,
    /// Longest a graceful stop waits for in-flight requests.
    pub grace_period: Duration,
    /// Where and how requests are logged.
    pub access_log: AccessLogSettings,
    /// Request bodies larger than this get 413 (nginx `client_max_body_size`, default 1 MiB).
    pub max_request_body: u64,
    /// Longest request header line (default 8 KiB).
    pub max_header_line: usize,
    /// Longest request URI (default 8 KiB).
    pub max_uri: usize,
    /// Most request headers (default 100).
    pub max_headers: usize,
    /// Most bytes of all request header lines together (default 32 KiB, nginx's
    /// `large_client_header_buffers 4 8k`).
    pub max_header_bytes: usize,
    /// Where the traffic counters and registered servers are kept (default /var/lib/weir).
    pub state_dir: std::path::PathBuf,
    /// How long a whole request header may take from its first byte (nginx
    /// `client_header_timeout`, default 60 s); on plain HTTP listeners
    /// also how long a new connection may stay silent.
    pub client_header_timeout: Duration,
    /// Longest wait between two reads of a request body (nginx `client_body_timeout`,
    /// default 60 s).
    pub client_body_timeout: Duration,
    /// Longest wait for a write to the client to make progress (nginx `send_timeout`,
    /// default 60 s).
    pub send_timeout: Duration,
    /// Where buffered request bodies larger than memory's share go (default
    /// `<state_dir>/tmp`).
    pub temp_dir: PathBuf,
}

/// One `listen` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Socket address to bind.
    pub addr: SocketAddr,
    /// Certificate and key files when the listener speaks TLS.
    pub tls: Option<TlsFiles>,
    /// Offer HTTP/2 by ALPN (TLS listeners only).
    pub http2: bool,
}

/// PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: String,
    /// Private key.
    pub key: String,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Nowhere.
    Off,
    /// Appended to a file.
    File(PathBuf),
}

/// The access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// nginx's `combined`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `server.access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Destination.
    pub target: LogTarget,
    /// Line format.
    pub format: LogFormat,
}

/// Defaults when a key is absent.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY: u64 = 1 << 20;
const DEFAULT_MAX_LINE: u64 = 8 << 10;
const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_HEADER_BYTES: u64 = 32 << 10;

/// Builds `server:` found at `path`.
pub fn build(value: &Value, path: &str) -> Result<ServerSettings, ConfigErrors> {
    let wire: ServerWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let at = |key: &str| join(path, key);

    if wire.listen.is_empty() {
        errors.push(at("listen"), "at least one address is required");
    }
    let mut listen: Vec<Listener> = Vec::new();
    for (i, v) in wire.listen.iter().enumerate() {
        let at_i = index(&at("listen"), i);
        let Some(l) = errors.take(build_listener(v, &at_i)) else {
            continue;
        };
        if listen.iter().any(|o| o.addr == l.addr) {
            errors.push(at_i, format!("{} is listed twice", l.addr));
        }
        listen.push(l);
    }

    let threads = match checked(wire.threads, &at("threads"), &mut errors) {
        Some(0) => {
            errors.push(at("threads"), "must be at least 1");
            1
        }
        Some(n) if n > 1024 => {
            errors.push(at("threads"), "must be at most 1024");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };

    let state_dir = std::path::PathBuf::from(wire.state_dir.as_deref().unwrap_or("/var/lib/weir"));
    if !state_dir.is_absolute() {
        errors.push(at("state_dir"), "must be an absolute directory path");
    }
    let mut trusted_proxies = Vec::new();
    for (i, entry) in wire.trusted_proxies.iter().flatten().enumerate() {
        match Cidr::parse(entry) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => errors.push(index(&at("trusted_proxies"), i), e),
        }
    }
    let real_ip_header = match wire.real_ip_header.as_deref() {
        None => http::HeaderName::from_static("x-forwarded-for"),
        Some(h) => http::HeaderName::from_bytes(h.as_bytes()).unwrap_or_else(|_| {
            errors.push(
                at("real_ip_header"),
                format!("`{h}` is not a valid header name"),
            );
            http::HeaderName::from_static("x-forwarded-for")
        }),
    };
    if wire.real_ip_header.is_some() && trusted_proxies.is_empty() {
        errors.push(at("real_ip_header"), "only applies with `trusted_proxies`");
    }

    let access_log = wire
        .access_log
        .map(|a| build_access_log(a, &at("access_log"), &mut errors))
        .unwrap_or(AccessLogSettings {
            target: LogTarget::Stdout,
            format: LogFormat::Combined,
        });

    let mut limit = |key: &str, v: Option<Checked<ConfigSize>>, min: u64, max: u64| -> usize {
        let default = match key {
            "max_header_bytes" => DEFAULT_MAX_HEADER_BYTES,
            _ => DEFAULT_MAX_LINE,
        };
        let n = checked(v, &at(key), &mut errors).map_or(default, |s| s.0);
        if !(min..=max).contains(&n) {
            errors.push(at(key), format!("must be from {min} to {max} bytes"));
        }
        n as usize
    };
    let max_header_line = limit("max_header_line", wire.max_header_line, 256, 1 << 20);
    let max_uri = limit("max_uri", wire.max_uri, 256, 1 << 20);
    let max_header_bytes = limit("max_header_bytes", wire.max_header_bytes, 1 << 10, 1 << 20);
    let max_headers = checked(wire.max_headers, &at("max_headers"), &mut errors).unwrap_or(100);
    if !(1..=256).contains(&max_headers) {
        errors.push(at("max_headers"), "must be from 1 to 256");
    }

    let mut client_timeout = |key: &str, v: Option<Checked<ConfigDuration>>| -> Duration {
        let d = checked(v, &at(key), &mut errors).map_or(DEFAULT_CLIENT_TIMEOUT, |d| d.0);
        if d.is_zero() {
            errors.push(at(key), "must be longer than 0s");
        }
        d
    };
    let client_header_timeout = client_timeout("client_header_timeout", wire.client_header_timeout);
    let client_body_timeout = client_timeout("client_body_timeout", wire.client_body_timeout);
    let send_timeout = client_timeout("send_timeout", wire.send_timeout);
    let temp_dir = match wire.temp_dir.as_deref() {
        None => state_dir.join("tmp"),
        Some(dir) => PathBuf::from(dir),
    };
    if !temp_dir.is_absolute() {
        // A default under a relative state_dir: that error is reported already.
        if wire.temp_dir.is_some() {
            errors.push(at("temp_dir"), "must be an absolute directory path");
        }
    } else if let Err(why) = super::temp_dir::check(&temp_dir) {
        errors.push(at("temp_dir"), why);
    }

    let grace_period =
        checked(wire.grace_period, &at("grace_period"), &mut errors).map_or(DEFAULT_GRACE, |d| d.0);
    let max_request_body = checked(wire.max_request_body, &at("max_request_body"), &mut errors)
        .map_or(DEFAULT_MAX_BODY, |s| s.0);
    errors.into_result(ServerSettings {
        trusted_proxies,
        real_ip_header,
        listen,
        threads,
        grace_period,
        access_log,
        max_request_body,
        max_header_line,
        max_uri,
        max_headers,
        max_header_bytes,
        state_dir,
        client_header_timeout,
        client_body_timeout,
        send_timeout,
        temp_dir,
    })
}

fn build_listener(value: &Value, path: &str) -> Result<Listener, ConfigErrors> {
    let wire = match value {
        Value::String(s) => ListenWire {
            addr: s.clone(),
            tls: None,
            http2: false,
        },
        other => from_value::<ListenWire>(other, path)?,
    };
    let addr_path = if value.is_string() {
        path.to_string()
    } else {
        join(path, "addr")
    };
    let mut errors = ConfigErrors::default();
    let addr = wire.addr.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(
            &addr_path,
            format!(
                "`{}` is not an IP:port address (e.g. 0.0.0.0:8080, [::]:8080)",
                wire.addr
            ),
        )
    });
    let addr = errors.take(addr.map_err(ConfigErrors::from));
    if let Some(tls) = &wire.tls {
        let tls_path = join(path, "tls");
        match pingora::tls::load_certs_and_key_files(&tls.cert, &tls.key) {
            Ok(Some(_)) => {}
            Ok(None) => errors.push(
                tls_path,
                format!(
                    "no certificate in `{}` or no private key in `{}`",
                    tls.cert, tls.key
                ),
            ),
            Err(e) => errors.push(
                tls_path,
                format!("cannot load `{}` / `{}`: {}", tls.cert, tls.key, e),
            ),
        }
    }
    if wire.http2 && wire.tls.is_none() {
        errors.push(
            join(path, "http2"),
            "HTTP/2 is offered by ALPN and needs `tls`",
        );
    }
    match addr {
        Some(addr) if errors.is_empty() => Ok(Listener {
            addr,
            tls: wire.tls.map(|t| TlsFiles {
                cert: t.cert,
                key: t.key,
            }),
            http2: wire.http2,
        }),
        _ => Err(errors),
    }
}

fn build_access_log(
    wire: AccessLogWire,
    path: &str,
    errors: &mut ConfigErrors,
) -> AccessLogSettings {
    let target = match wire.path.as_deref() {
        None | Some("stdout") => LogTarget::Stdout,
        Some("off") => LogTarget::Off,
        Some("") => {
            errors.push(join(path, "path"), "expected stdout, off or a file path");
            LogTarget::Off
        }
        Some(file) => {
            let file = PathBuf::from(file);
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                errors.push(
                    join(path, "path"),
                    format!("directory {} does not exist", dir.display()),
                );
            }
            LogTarget::File(file)
        }
    };
    let format = match wire.format.as_deref() {
        None | Some("combined") => LogFormat::Combined,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errors.push(
                join(path, "format"),
                format!("`{other}`: expected combined or json"),
            );
            LogFormat::Combined
        }
    };
    AccessLogSettings { target, format }
}
