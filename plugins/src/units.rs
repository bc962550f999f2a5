//! The value formats of the YAML file: durations (`250ms`, `5s`), sizes (`64MiB`, `10m`,
//! `1048576`) and nginx rates (`2r/s`, `30r/m`).
//!
//! Each is a small type with a `Deserialize` that parses once at load time, so the request
//! path only ever sees integers.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A duration written as an integer and a unit: `250ms`, `5s`, `10m`, `2h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// A size in bytes: `512KiB`, `64MiB`, `5GiB`, nginx's `10k`/`10m`/`1g`, or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigSize(pub u64);

/// An nginx rate in milli-requests per second: `2r/s` is 2000, `30r/m` is 30*1000/60 = 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Milli-requests per second, exactly as nginx stores it (integer division for `r/m`).
    pub milli_per_sec: u64,
}

const DURATION_HINT: &str = "expected a duration like 250ms, 5s, 10m, 2h or 7d";
const SIZE_HINT: &str = "expected a size like 1048576, 512KiB, 64MiB, 5GiB or 10m";
const RATE_HINT: &str = "expected a rate like 10r/s or 30r/m";

/// Splits `"250ms"` into `(250, "ms")`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Parses `250ms`, `5s`, `10m`, `2h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}`: {DURATION_HINT}");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => None,
    };
    d.ok_or_else(bad)
}

/// Parses `1048576`, `512KiB`, `64MiB`, `5GiB`, `10k`, `10m`, `1g`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}`: {SIZE_HINT}");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let mult: u64 = match unit {
        "" => 1,
        "KiB" | "k" | "K" => 1 << 10,
        "MiB" | "m" | "M" => 1 << 20,
        "GiB" | "g" | "G" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parses `Nr/s` and `Nr/m` (N a positive integer) into nginx's milli-requests per second.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("`{s}`: {RATE_HINT}");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    if n == 0 {
        return Err(format!("`{s}`: the rate must be positive"));
    }
    let milli = match unit {
        "r/s" => n.checked_mul(1000),
        "r/m" => n.checked_mul(1000).map(|m| m / 60),
        _ => None,
    }
    .ok_or_else(bad)?;
    if milli == 0 {
        return Err(format!("`{s}`: the rate must be positive"));
    }
    Ok(Rate {
        milli_per_sec: milli,
    })
}

/// A serde visitor that accepts a string (and, for sizes, an integer) and parses it.
struct ParseVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    integers: bool,
}

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        if self.integers {
            (self.parse)(&v.to_string()).map_err(E::custom)
        } else {
            Err(E::custom(format!("`{v}`: {}", self.expecting)))
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!("`{v}`: {}", self.expecting)))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParseVisitor {
            expecting: DURATION_HINT,
            parse: |s| parse_duration(s).map(ConfigDuration),
            integers: false,
        })
    }
}

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParseVisitor {
            expecting: SIZE_HINT,
            parse: |s| parse_size(s).map(ConfigSize),
            integers: true,
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParseVisitor {
            expecting: RATE_HINT,
            parse: parse_rate,
            integers: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "1.5s",
            "-1s",
            "5sec",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("5GiB"), Ok(5 << 30));
        assert_eq!(parse_size("10k"), Ok(10 << 10));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "MiB", "1.5MiB", "10kb", "-1", "1 MiB"] {
            assert!(parse_size(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn rates_use_nginx_integer_division() {
        assert_eq!(parse_rate("2r/s").unwrap().milli_per_sec, 2000);
        assert_eq!(parse_rate("30r/m").unwrap().milli_per_sec, 500);
        assert_eq!(parse_rate("1r/m").unwrap().milli_per_sec, 16);
        assert_eq!(parse_rate("7r/m").unwrap().milli_per_sec, 116);
        for bad in ["0r/s", "2r/h", "r/s", "2 r/s", "2.5r/s"] {
            assert!(parse_rate(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn serde_accepts_integer_sizes_but_not_integer_durations() {
        let s: ConfigSize = serde_yaml_ng::from_str("4096").unwrap();
        assert_eq!(s.0, 4096);
        assert!(serde_yaml_ng::from_str::<ConfigDuration>("5").is_err());
    }
}
