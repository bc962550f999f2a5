//! nginx's value formats turned into weir's: sizes (`10m` → `10MiB`), times (`1h30m` →
//! `90m`), listen and server addresses, and the request attributes of limit keys.

/// An nginx size (`512`, `10k`, `10m`, `1g`) in bytes.
pub fn size_bytes(s: &str) -> Option<u64> {
    let (digits, unit) = split_number(s)?;
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A size in weir's spelling: the largest binary unit that divides it.
pub fn size(bytes: u64) -> String {
    for (unit, mult) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= mult && bytes.is_multiple_of(mult) {
            return format!("{}{unit}", bytes / mult);
        }
    }
    bytes.to_string()
}

/// An nginx time (`30`, `500ms`, `10s`, `5m`, `1h30m`, `2d`, `1w`, `1M`, `1y`) in ms.
pub fn time_ms(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = match unit {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// A time in weir's spelling: the largest unit that divides it.
pub fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    for (unit, mult) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(mult) {
            return format!("{}{unit}", ms / mult);
        }
    }
    format!("{ms}ms")
}

fn split_number(s: &str) -> Option<(&str, &str)> {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    (digits > 0).then(|| s.split_at(digits))
}

/// A `listen` address as weir's `IP:port`: `80`, `*:80`, `127.0.0.1:8080`, `[::]:443`,
/// `localhost:80`. `Err` says why it cannot be one (a Unix socket, a host name).
pub fn listen_addr(arg: &str) -> Result<String, String> {
    if arg.starts_with("unix:") {
        return Err("weir listens on TCP addresses only, not on Unix sockets".into());
    }
    if let Ok(port) = arg.parse::<u16>() {
        return Ok(format!("0.0.0.0:{port}"));
    }
    let (host, port) = match arg.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (arg, "80"),
        Some((h, p)) => (h, p),
        None => (arg, "80"),
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("`{port}` is not a port"));
    }
    let host = match host {
        "*" | "" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        h => h,
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "`{host}` is a host name; weir listens on IP addresses (write the address)"
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// An upstream server address `host[:port]` with the port made explicit.
pub fn server_addr(arg: &str, default_port: u16) -> Result<String, String> {
    if arg.starts_with("unix:") {
        return Err("weir connects to TCP addresses only, not to Unix sockets".into());
    }
    if arg.starts_with('[') {
        return Ok(if arg.ends_with(']') {
            format!("{arg}:{default_port}")
        } else {
            arg.to_string()
        });
    }
    match arg.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => Ok(arg.to_string()),
        Some(_) => Err(format!("`{arg}` is not a host:port address")),
        None => Ok(format!("{arg}:{default_port}")),
    }
}

/// One request attribute of an nginx key as weir's limit key: `$binary_remote_addr` →
/// `client_ip`, `$http_x_api_key` → `header:X-Api-Key`.
pub fn limit_key_part(var: &str) -> Option<String> {
    match var {
        "binary_remote_addr" | "remote_addr" => Some("client_ip".into()),
        "host" => Some("host".into()),
        "request_uri" => Some("uri".into()),
        v => {
            if let Some(h) = v.strip_prefix("http_") {
                Some(format!("header:{}", header_name(h)))
            } else {
                v.strip_prefix("cookie_").map(|c| format!("cookie:{c}"))
            }
        }
    }
}

/// `x_api_key` → `X-Api-Key`: the header an `$http_` variable reads.
pub fn header_name(var: &str) -> String {
    var.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Splits a value into text and variables: `$scheme://$host$uri` → `[Var(scheme), Text(://),
/// Var(host), Var(uri)]`; `${name}` is a variable too.
pub fn split_vars(s: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let mut name = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            for v in chars.by_ref() {
                if v == '}' {
                    break;
                }
                name.push(v);
            }
        } else {
            while let Some(&v) = chars.peek() {
                if v.is_ascii_alphanumeric() || v == '_' {
                    name.push(v);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        if name.is_empty() {
            text.push('$');
            continue;
        }
        if !text.is_empty() {
            out.push(Part::Text(std::mem::take(&mut text)));
        }
        out.push(Part::Var(name));
    }
    if !text.is_empty() {
        out.push(Part::Text(text));
    }
    out
}

/// A piece of a value with variables.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A variable's name, without `$`.
    Var(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(size_bytes("10m"), Some(10 << 20));
        assert_eq!(size_bytes("512"), Some(512));
        assert_eq!(size_bytes("1.5m"), None);
        assert_eq!(size(10 << 20), "10MiB");
        assert_eq!(size(1536), "1536");
        assert_eq!(size(8 << 30), "8GiB");
        assert_eq!(time_ms("1h30m"), Some(90 * 60_000));
        assert_eq!(time_ms("30"), Some(30_000));
        assert_eq!(time_ms("500ms"), Some(500));
        assert_eq!(time_ms("5x"), None);
        assert_eq!(duration(90 * 60_000), "90m");
        assert_eq!(duration(1500), "1500ms");
        assert_eq!(duration(86_400_000), "1d");
    }

    #[test]
    fn addresses() {
        assert_eq!(listen_addr("80").unwrap(), "0.0.0.0:80");
        assert_eq!(listen_addr("*:8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(listen_addr("127.0.0.1:81").unwrap(), "127.0.0.1:81");
        assert_eq!(listen_addr("[::]:443").unwrap(), "[::]:443");
        assert_eq!(listen_addr("localhost:80").unwrap(), "127.0.0.1:80");
        assert_eq!(listen_addr("10.0.0.1").unwrap(), "10.0.0.1:80");
        assert!(listen_addr("unix:/run/x.sock").is_err());
        assert!(listen_addr("example.com:80").is_err());
        assert_eq!(
            server_addr("origin.internal", 80).unwrap(),
            "origin.internal:80"
        );
        assert_eq!(server_addr("10.0.0.1:8080", 80).unwrap(), "10.0.0.1:8080");
        assert_eq!(server_addr("[::1]", 443).unwrap(), "[::1]:443");
        assert!(server_addr("unix:/x", 80).is_err());
    }

    #[test]
    fn keys_and_variables() {
        assert_eq!(limit_key_part("binary_remote_addr").unwrap(), "client_ip");
        assert_eq!(
            limit_key_part("http_x_api_key").unwrap(),
            "header:X-Api-Key"
        );
        assert_eq!(limit_key_part("cookie_session").unwrap(), "cookie:session");
        assert_eq!(limit_key_part("server_name"), None);
        assert_eq!(
            split_vars("$scheme://${host}x$1$"),
            [
                Part::Var("scheme".into()),
                Part::Text("://".into()),
                Part::Var("host".into()),
                Part::Text("x".into()),
                Part::Var("1".into()),
                Part::Text("$".into()),
            ]
        );
    }
}
