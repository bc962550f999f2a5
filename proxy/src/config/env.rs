//! `${VAR}` interpolation: every string value of the YAML tree may name environment
//! variables, replaced once at load time. An unset variable is an error naming the variable
//! and the YAML path, so a missing secret is caught by `weir -t`, not by the first request.

use serde_yaml_ng::Value;
use weir_plugins::config::{index, join};
use weir_plugins::ConfigErrors;

/// Replaces `${VAR}` in every string value below `value` (keys are left alone), looking
/// variables up with `lookup`. `$${` stands for a literal `${`.
pub fn interpolate(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut ConfigErrors,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand(s, lookup) {
            Ok(expanded) => *s = expanded,
            Err(message) => errors.push(path, message),
        },
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate(v, &index(path, i), lookup, errors);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                interpolate(v, &join(path, &key), lookup, errors);
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, lookup, errors),
        _ => {}
    }
}

/// Expands one string.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{s}`"))?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            let v =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_and_reports_paths() {
        let mut v: Value = serde_yaml_ng::from_str(
            "admin: {token: 'Bearer ${TOKEN}!'}\nroutes: [{name: 'a-${MISSING}'}, {name: '$${TOKEN} $5'}]",
        )
        .unwrap();
        let mut errors = ConfigErrors::default();
        interpolate(&mut v, "", &lookup, &mut errors);
        assert_eq!(
            errors.to_string(),
            "routes[0].name: environment variable MISSING is not set"
        );
        assert_eq!(v["admin"]["token"].as_str(), Some("Bearer s3cret!"));
        assert_eq!(v["routes"][1]["name"].as_str(), Some("${TOKEN} $5"));
    }

    #[test]
    fn rejects_bad_names() {
        assert!(expand("${}", &lookup).is_err());
        assert!(expand("${1A}", &lookup).is_err());
        assert!(expand("${A-B}", &lookup).is_err());
        assert!(expand("${OPEN", &lookup).is_err());
    }
}
