//! Config errors that carry their YAML path, and the one place YAML values become typed structs.
//!
//! weir never stops at the first mistake in a file: every section, route and plugin is
//! deserialized on its own, and every error is collected with the path that names it
//! (`routes[0].plugins[1].limit_req.burst: …`), so `weir -t` can print them all at once.
//! The zones of a section (`limits:`, `caches:`) are kept as [`Zones`]: built or declared
//! with errors, one shape for both.

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One problem in a config file, with the YAML path it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Dotted YAML path, e.g. `routes[0].upstream`; empty for the whole file.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// The standard error for a key whose behaviour is not built yet: weir never accepts a
    /// key and then ignores it.
    pub fn not_implemented(path: impl Into<String>) -> Self {
        ConfigError::new(path, "not implemented yet")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every error found while building one config, in the order they were found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Records an error at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl fmt::Display) {
        self.0.push(ConfigError::new(path, message));
    }

    /// Records every error of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `value` when `result` is `Ok`, records its errors otherwise.
    pub fn take<T>(&mut self, result: Result<T, ConfigErrors>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.extend(e);
                None
            }
        }
    }

    /// `Ok(value)` when nothing was recorded, else every error.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The `status` a plugin answers with (`default` when absent), recording an error at
/// `path.status` unless it is from 400 to 599.
pub fn answer_status(
    status: Option<u16>,
    default: u16,
    path: &str,
    errors: &mut ConfigErrors,
) -> u16 {
    let status = status.unwrap_or(default);
    if !(400..=599).contains(&status) {
        errors.push(
            join(path, "status"),
            format!("{status} is not a status from 400 to 599"),
        );
    }
    status
}

/// `prefix.key`, or `key` at the root.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `prefix[index]`.
pub fn index(prefix: &str, i: usize) -> String {
    format!("{prefix}[{i}]")
}

/// Deserializes `value` as `T`, naming the exact path of the first mistake inside it.
///
/// Structs given to this are `deny_unknown_fields`, so a misspelt key is an error here
/// rather than a silently ignored setting.
pub fn from_value<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = match inner.as_str() {
            "." => path.to_string(),
            p if p.starts_with('[') => format!("{path}{p}"),
            p => join(path, p),
        };
        ConfigError::new(full, tidy_serde_message(&e.into_inner().to_string()))
    })
}

/// A field whose value is checked on its own: deserializing it never fails the enclosing
/// struct, so one bad value does not hide the errors of its siblings. The build step calls
/// [`Checked::get`] to report the error with the field's path.
#[derive(Debug, Clone)]
pub struct Checked<T>(Result<T, String>);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Checked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(Checked(
            serde_yaml_ng::from_value(value).map_err(|e| tidy_serde_message(&e.to_string())),
        ))
    }
}

impl<T> Checked<T> {
    /// The value, or `None` after recording its error at `path`.
    pub fn get(self, path: &str, errors: &mut ConfigErrors) -> Option<T> {
        match self.0 {
            Ok(v) => Some(v),
            Err(m) => {
                errors.push(path, m);
                None
            }
        }
    }
}

/// The value of an optional checked field: `None` when absent or invalid (the error is
/// recorded at `path`).
pub fn checked<T>(field: Option<Checked<T>>, path: &str, errors: &mut ConfigErrors) -> Option<T> {
    field.and_then(|c| c.get(path, errors))
}

/// serde_yaml appends " at line N column M" to some messages; the YAML path already says
/// where, and a line number after `${VAR}` interpolation would point at the wrong place.
/// Rust type names mean nothing to a YAML author, so they are replaced by words.
fn tidy_serde_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let mut out = msg.to_string();
    for (rust, words) in [
        ("expected u8", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(stripped) = out.strip_suffix(rust) {
            out = format!("{stripped}{words}");
        }
    }
    out
}

/// The zones declared under one section (`limits:`, `caches:`), by name: each one built, or
/// declared with errors (already reported where it is defined, so a plugin naming it does not
/// report it again).
#[derive(Debug)]
pub struct Zones<T>(BTreeMap<String, Option<Arc<T>>>);

impl<T> Default for Zones<T> {
    fn default() -> Self {
        Zones(BTreeMap::new())
    }
}

impl<T> Clone for Zones<T> {
    fn clone(&self) -> Self {
        Zones(self.0.clone())
    }
}

impl<T> Zones<T> {
    /// Records zone `name`: `Some` when it built, `None` when its definition had errors.
    pub fn declare(&mut self, name: impl Into<String>, zone: Option<Arc<T>>) {
        self.0.insert(name.into(), zone);
    }

    /// True when `name` is declared, built or not.
    pub fn is_declared(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The zone `name` when it built.
    pub fn get(&self, name: &str) -> Option<&Arc<T>> {
        self.0.get(name)?.as_ref()
    }

    /// The zone `name` that a plugin's field at `path` refers to: the zone when it built;
    /// `None` and an error at `path` (`no zone `name` under section`) when no such zone is
    /// declared; `None` alone when it was declared with errors.
    pub fn find(
        &self,
        name: &str,
        section: &str,
        path: &str,
        errors: &mut ConfigErrors,
    ) -> Option<Arc<T>> {
        if !self.is_declared(name) {
            errors.push(path, format!("no zone `{name}` under {section}"));
        }
        self.get(name).cloned()
    }

    /// The zones that built, by name.
    pub fn into_built(self) -> BTreeMap<String, Arc<T>> {
        self.0
            .into_iter()
            .filter_map(|(name, zone)| Some((name, zone?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        burst: u32,
        #[serde(default)]
        nodelay: bool,
    }

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn zones_tell_built_declared_and_unknown_apart() {
        let mut zones: Zones<u32> = Zones::default();
        zones.declare("good", Some(Arc::new(7)));
        zones.declare("broken", None);
        let mut errors = ConfigErrors::default();
        let good = zones.find("good", "limits", "p.zone", &mut errors);
        assert_eq!(good.as_deref(), Some(&7));
        assert_eq!(zones.find("broken", "limits", "p.zone", &mut errors), None);
        assert!(
            errors.is_empty(),
            "a zone with errors is not reported again"
        );
        assert_eq!(zones.find("nope", "caches", "p.zone", &mut errors), None);
        let messages: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["p.zone: no zone `nope` under caches"]);
        let built: Vec<String> = zones.into_built().into_keys().collect();
        assert_eq!(built, ["good"]);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e =
            from_value::<Item>(&yaml("burst: -1"), "routes[0].plugins[1].limit_req").unwrap_err();
        assert_eq!(e.path, "routes[0].plugins[1].limit_req.burst");
        assert!(
            e.message.starts_with("invalid value: integer `-1`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = from_value::<Item>(&yaml("burst: 1\nnodely: true"), "x").unwrap_err();
        assert_eq!(e.path, "x.nodely");
        assert!(
            e.message.starts_with("unknown field `nodely`"),
            "{}",
            e.message
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lenient {
        a: Option<Checked<u32>>,
        b: Option<Checked<u32>>,
    }

    #[test]
    fn checked_fields_report_every_bad_sibling() {
        let l: Lenient = from_value(&yaml("a: x\nb: -2"), "p").unwrap();
        let mut errors = ConfigErrors::default();
        assert_eq!(checked(l.a, "p.a", &mut errors), None);
        assert_eq!(checked(l.b, "p.b", &mut errors), None);
        assert_eq!(
            errors.to_string(),
            "p.a: invalid type: string \"x\", expected a non-negative integer\np.b: invalid value: integer `-2`, expected a non-negative integer"
        );
    }

    #[test]
    fn sequence_paths_have_no_dot() {
        let e = from_value::<Vec<Item>>(&yaml("- burst: 1\n- burst: x"), "list").unwrap_err();
        assert_eq!(
            e.to_string(),
            "list[1].burst: invalid type: string \"x\", expected a non-negative integer"
        );
    }
}
