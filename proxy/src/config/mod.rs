//! Loading the YAML file: parse → interpolate `${VAR}` → build validated runtime types.
//!
//! Each section, upstream, route and plugin is deserialized on its own, so one mistake does
//! not hide the next: [`load`] returns every error, each with its YAML path. Nothing here
//! runs on the request path.

pub mod admin;
mod env;
mod routes;
pub mod server;
mod temp_dir;
mod upstreams;

use crate::router::Router;
use crate::upstream::Upstream;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use weir_plugins::cache::{self, CacheZone};
use weir_plugins::config::{from_value, index, join};
use weir_plugins::limit_zone::{self, LimitZone};
use weir_plugins::{BuildContext, ConfigError, ConfigErrors, Registry};

pub use server::{AccessLogSettings, LogFormat, LogTarget, ServerSettings};

/// A whole validated config.
pub struct Config {
    /// `server:`.
    pub server: ServerSettings,
    /// `upstreams:` by name.
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// `routes:`, in order.
    pub router: Router,
    /// `limits:` zones by name (kept across reloads while unchanged).
    pub limits: BTreeMap<String, Arc<LimitZone>>,
    /// `admin:`, when the admin API is on.
    pub admin: Option<admin::AdminSettings>,
    /// `caches:` zones by name (their storage and lock are kept across reloads).
    pub caches: BTreeMap<String, Arc<CacheZone>>,
}

/// The top level of the file; each section is built separately.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    /// Required; an `Option` so that its absence is reported at `server`, not at the root.
    server: Option<Value>,
    admin: Option<Value>,
    #[serde(default)]
    limits: Mapping,
    #[serde(default)]
    upstreams: Mapping,
    #[serde(default)]
    caches: Mapping,
    #[serde(default)]
    routes: Vec<Value>,
}

/// Reads and builds the file at `path`, looking `${VAR}` up in the process environment.
/// `previous` is the running config on a reload: unchanged `limits:` zones keep their state,
/// and upstream servers keep their health and registrations.
pub fn load(
    path: &Path,
    registry: &Registry,
    previous: Option<&Config>,
) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    parse(&text, registry, &|name| std::env::var(name).ok(), previous)
}

/// Builds a config from YAML text.
pub fn parse(
    text: &str,
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
) -> Result<Config, ConfigErrors> {
    let mut root: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
    let mut errors = ConfigErrors::default();
    env::interpolate(&mut root, "", env, &mut errors);
    // A value whose variable is unset is reported once, not again as an invalid value.
    let unset: Vec<String> = errors.0.iter().map(|e| e.path.clone()).collect();
    if root.is_null() {
        return Err(ConfigError::new(
            "",
            "the file is empty; `server.listen` and `routes` are required",
        )
        .into());
    }
    if !root.is_mapping() {
        return Err(ConfigError::new(
            "",
            "the file must be a mapping of sections (server, upstreams, routes, …)",
        )
        .into());
    }
    let file: FileWire = from_value(&root, "")?;

    let server = match &file.server {
        Some(server) => errors.take(server::build(server, "server")),
        None => {
            errors.push("server", "required: `server.listen` names the listeners");
            None
        }
    };
    let admin = file
        .admin
        .as_ref()
        .and_then(|a| errors.take(admin::build(a, "admin")));
    if let (Some(a), Some(s)) = (&admin, &server) {
        if s.listen.iter().any(|l| l.addr == a.listen) {
            errors.push(
                "admin.listen",
                format!(
                    "{} is also a proxy listener; the admin API needs its own",
                    a.listen
                ),
            );
        }
    }
    let no_zones = BTreeMap::new();
    let previous_zones = previous.map_or(&no_zones, |p| &p.limits);
    let ctx = BuildContext {
        caches: cache::zone::build_section(&file.caches, "caches", &mut errors),
        limits: limit_zone::build_section(&file.limits, "limits", previous_zones, &mut errors),
    };

    let mut upstreams = BTreeMap::new();
    for (k, v) in &file.upstreams {
        let Some(name) = k.as_str() else {
            errors.push("upstreams", "upstream names must be strings");
            continue;
        };
        let built = errors.take(upstreams::build(name, v, &join("upstreams", name)));
        if let (Some(new), Some(old)) = (&built, previous.and_then(|p| p.upstreams.get(name))) {
            // Servers configured the same way keep their health; registrations stay.
            new.inherit(old);
        }
        upstreams.insert(name.to_string(), built.map(Arc::new));
    }

    if file.routes.is_empty() {
        errors.push("routes", "at least one route is required");
    }
    let refs = routes::RouteRefs {
        upstreams: &upstreams,
        plugins: &ctx,
        registry,
    };
    let mut built_routes = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, v) in file.routes.iter().enumerate() {
        let path = index("routes", i);
        if let Some(route) = errors.take(routes::build(i, v, &path, &refs)) {
            if let Some(first) = seen.insert(route.name.clone(), i) {
                errors.push(
                    join(&path, "name"),
                    format!("`{}` is already the name of routes[{first}]", route.name),
                );
            }
            built_routes.push(Arc::new(route));
        }
    }

    let interpolation_errors = unset.len();
    let (first, rest) = errors.0.split_at(interpolation_errors);
    let rest = rest
        .iter()
        .filter(|e| !unset.iter().any(|p| within(&e.path, p)));
    let errors = ConfigErrors(first.iter().chain(rest).cloned().collect());

    match server {
        Some(server) if errors.is_empty() => Ok(Config {
            server,
            upstreams: upstreams
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            router: Router::new(built_routes),
            limits: ctx.limits.into_built(),
            caches: ctx.caches.into_built(),
            admin,
        }),
        _ => Err(errors),
    }
}

/// True when `path` is `prefix` or below it.
fn within(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> String {
        match parse(yaml, &Registry::builtin(), &|_| None, None) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const MINIMAL: &str = "server: {listen: ['127.0.0.1:0']}\nupstreams: {o: {tiers: [{name: a, servers: ['127.0.0.1:1']}]}}\nroutes: [{upstream: o}]\n";

    #[test]
    fn minimal_config_is_valid() {
        assert_eq!(errors(MINIMAL), "ok");
        let c = parse(MINIMAL, &Registry::builtin(), &|_| None, None)
            .ok()
            .unwrap();
        assert_eq!(c.server.max_request_body, 1 << 20);
        assert_eq!(c.server.max_headers, 100);
        assert_eq!(c.router.routes()[0].name.as_ref(), "route0");
    }

    #[test]
    fn unknown_top_level_key() {
        assert!(errors(&format!("{MINIMAL}servers: {{}}\n"))
            .starts_with("servers: unknown field `servers`"));
    }

    #[test]
    fn collects_errors_across_sections() {
        let yaml = "server: {listen: ['nope'], threads: 0}\n\
                    upstreams: {o: {tiers: [{name: a, servers: ['127.0.0.1:1']}], connect_timeout: 5}}\n\
                    routes: [{upstream: missing}, {upstream: o, plugins: [{headers: {bogus: 1}}]}]\n";
        assert_eq!(
            errors(yaml),
            "server.listen[0]: `nope` is not an IP:port address (e.g. 0.0.0.0:8080, [::]:8080)\n\
             server.threads: must be at least 1\n\
             upstreams.o.connect_timeout: `5`: expected a duration like 250ms, 5s, 10m, 2h or 7d\n\
             routes[0].upstream: no upstream `missing` under upstreams\n\
             routes[1].plugins[0].headers.bogus: unknown field `bogus`, expected one of `request`, `response`, `always`"
        );
    }

    #[test]
    fn a_missing_server_section_and_a_file_that_is_not_a_mapping() {
        assert_eq!(
            errors("routes: [{upstream: o}]\n"),
            "server: required: `server.listen` names the listeners\n\
             routes[0].upstream: no upstream `o` under upstreams"
        );
        assert_eq!(
            errors("just text\n"),
            "the file must be a mapping of sections (server, upstreams, routes, …)"
        );
    }

    #[test]
    fn unset_variable_names_variable_and_path() {
        let yaml = MINIMAL.replace("name: a", "name: '${TIER}'");
        assert_eq!(
            errors(&yaml),
            "upstreams.o.tiers[0].name: environment variable TIER is not set"
        );
    }
}
