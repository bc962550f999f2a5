//! The built-in `headers` plugin: set, add and remove headers on the request sent upstream
//! (nginx `proxy_set_header`) and on the response sent to the client (nginx `add_header`).
//!
//! ```yaml
//! - headers:
//!     request:  { set: { X-Env: prod }, remove: [Cookie] }
//!     response: { set: { X-Served-By: weir }, add: { Vary: Accept }, remove: [Server] }
//! ```
//! Edits apply in the order remove, set, add. Names and values are checked at load time.
//! `always: false` limits the response edits to the statuses nginx's `add_header` without
//! `always` is limited to (2xx and 3xx ones, [`NGINX_ADD_HEADER_STATUSES`]).

use crate::build::{BuildContext, BuildPlugin};
use crate::config::{join, ConfigErrors};
use crate::{Plugin, RequestCtx};
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use std::collections::BTreeMap;

/// YAML config of the `headers` plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Edits of the request sent upstream.
    #[serde(default)]
    pub request: EditsConfig,
    /// Edits of the response sent to the client.
    #[serde(default)]
    pub response: EditsConfig,
    /// `false`: the response edits apply to [`NGINX_ADD_HEADER_STATUSES`] only (nginx's
    /// `add_header` without `always`). Default `true`: every response.
    pub always: Option<bool>,
}

/// The statuses nginx's `add_header` (without `always`) applies to.
pub const NGINX_ADD_HEADER_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

/// One side's edits, as written in YAML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditsConfig {
    /// Replace the header (or create it).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append another value, keeping existing ones.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Delete every value of these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Validated edits of one side, ready to apply.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

/// The two header types Pingora has, seen through the three operations the plugin needs.
trait EditableHeader {
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
}

macro_rules! editable_header {
    ($t:ty) => {
        impl EditableHeader for $t {
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
                self.insert_header(name.clone(), value.clone())
            }
            fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
                self.append_header(name.clone(), value.clone()).map(|_| ())
            }
        }
    };
}
editable_header!(RequestHeader);
editable_header!(ResponseHeader);

impl HeaderEdits {
    /// Validates `config` found at `path`.
    pub fn build(config: EditsConfig, path: &str) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut name = |key: &str, field: &str| match HeaderName::from_bytes(key.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(join(&join(path, field), key), "not a valid header name");
                None
            }
        };
        let remove: Vec<_> = config
            .remove
            .iter()
            .filter_map(|k| name(k, "remove"))
            .collect();
        let pairs = |map: BTreeMap<String, String>, field: &str, errors: &mut ConfigErrors| {
            let mut out = Vec::new();
            for (k, v) in map {
                let n = HeaderName::from_bytes(k.as_bytes());
                let val = HeaderValue::from_str(&v);
                match (n, val) {
                    (Ok(n), Ok(v)) => out.push((n, v)),
                    (Err(_), _) => {
                        errors.push(join(&join(path, field), &k), "not a valid header name")
                    }
                    (_, Err(_)) => errors.push(
                        join(&join(path, field), &k),
                        "not a valid header value (control characters?)",
                    ),
                }
            }
            out
        };
        let set = pairs(config.set, "set", &mut errors);
        let add = pairs(config.add, "add", &mut errors);
        errors.into_result(HeaderEdits { remove, set, add })
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    fn apply(&self, header: &mut impl EditableHeader) -> Result<()> {
        for n in &self.remove {
            header.remove(n);
        }
        for (n, v) in &self.set {
            header.set(n, v)?;
        }
        for (n, v) in &self.add {
            header.add(n, v)?;
        }
        Ok(())
    }
}

/// The `headers` plugin.
#[derive(Debug)]
pub struct Headers {
    request: HeaderEdits,
    response: HeaderEdits,
    always: bool,
}

impl BuildPlugin for Headers {
    const NAME: &'static str = "headers";
    type Config = HeadersConfig;

    fn build(config: HeadersConfig, path: &str, _ctx: &BuildContext) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let request = errors.take(HeaderEdits::build(config.request, &join(path, "request")));
        let response = errors.take(HeaderEdits::build(config.response, &join(path, "response")));
        match (request, response) {
            (Some(request), Some(response)) if errors.is_empty() => Ok(Headers {
                request,
                response,
                always: config.always.unwrap_or(true),
            }),
            _ => Err(errors),
        }
    }
}

impl Headers {
    /// Whether the response edits apply to a response with `status`.
    fn edits_response(&self, status: u16) -> bool {
        self.always || NGINX_ADD_HEADER_STATUSES.contains(&status)
    }
}

#[async_trait]
impl Plugin for Headers {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.request.apply(request)
    }

    fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !self.edits_response(response.status.as_u16()) {
            return Ok(());
        }
        self.response.apply(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_value;

    fn build(yaml: &str) -> Result<Headers, ConfigErrors> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let c: HeadersConfig = from_value(&v, "h").map_err(ConfigErrors::from)?;
        Headers::build(c, "h", &BuildContext::default())
    }

    #[test]
    fn applies_remove_then_set_then_add() {
        let h =
            build("response: {remove: [Server], set: {X-A: one}, add: {X-A: two, Vary: Accept}}")
                .unwrap();
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("Server", "origin").unwrap();
        r.insert_header("X-A", "old").unwrap();
        h.response.apply(&mut r).unwrap();
        assert!(r.headers.get("server").is_none());
        let xa: Vec<_> = r
            .headers
            .get_all("x-a")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(xa, ["one", "two"]);
        assert_eq!(r.headers.get("vary").unwrap(), "Accept");
    }

    #[test]
    fn request_edits_apply_to_request_headers() {
        let h = build("request: {set: {X-Env: prod}, remove: [Cookie]}").unwrap();
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("Cookie", "a=b").unwrap();
        h.request.apply(&mut r).unwrap();
        assert!(r.headers.get("cookie").is_none());
        assert_eq!(r.headers.get("x-env").unwrap(), "prod");
        assert!(h.response.is_empty());
    }

    #[test]
    fn always_false_edits_only_nginx_statuses() {
        let limited = build("always: false\nresponse: {set: {X-A: one}}").unwrap();
        let every = build("response: {set: {X-A: one}}").unwrap();
        for status in [200, 201, 204, 206, 301, 302, 303, 304, 307, 308] {
            assert!(limited.edits_response(status), "{status}");
        }
        for status in [100, 202, 203, 300, 305, 401, 403, 404, 500, 502, 503] {
            assert!(!limited.edits_response(status), "{status}");
            assert!(every.edits_response(status), "{status}");
        }
    }

    #[test]
    fn reports_every_bad_name_and_value() {
        let e = build("request: {set: {'bad name': x}}\nresponse: {add: {X-Ok: \"a\\nb\"}, remove: ['no:pe']}")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "h.request.set.bad name: not a valid header name\n\
             h.response.remove.no:pe: not a valid header name\n\
             h.response.add.X-Ok: not a valid header value (control characters?)"
        );
    }
}
