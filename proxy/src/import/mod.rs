//! `weir import nginx FILE`: reads an nginx configuration (with its includes) and writes
//! weir YAML, each block commented with the nginx lines it came from, followed by the list
//! of what did not translate and why. nginx syntax errors name file:line, as `nginx -t`.
//!
//! The parser is our own small tokenizer (lexer.rs, parser.rs): the crates looked at
//! (`nginx-config`, which rejects directives it does not model and is unmaintained;
//! `nginx-lint-parser`, a rowan syntax tree for a linter; `misc-conf`, barely documented)
//! either refuse half of a real nginx.conf or carry more than the ~300 lines they replace.

mod directives;
mod lexer;
mod parser;
mod report;
mod translate;
mod yaml;

use std::path::Path;
use std::sync::Arc;

/// An nginx syntax error (or an invalid argument), with its file and line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SyntaxError {
    /// The file, as shown in comments.
    pub file: Arc<str>,
    /// The line (0 when the file itself cannot be read).
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

impl SyntaxError {
    /// An error at a directive's place.
    pub fn at(at: &parser::At, message: String) -> SyntaxError {
        SyntaxError {
            file: at.file.clone(),
            line: at.line,
            message,
        }
    }
}

/// The imported configuration.
pub struct Imported {
    /// The YAML text, report included (as comments at the end).
    pub yaml: String,
    /// Directives not translated (what `--strict` counts).
    pub left: usize,
    /// Directives ignored as without effect in weir.
    pub ignored: usize,
    /// Notes on translated directives.
    pub notes: usize,
}

/// Imports the nginx configuration at `path`.
pub fn import_nginx(path: &Path) -> Result<Imported, SyntaxError> {
    let tree = parser::parse_file(path)?;
    let conf_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf);
    let conf_dir = std::fs::canonicalize(&conf_dir).unwrap_or(conf_dir);
    let t = translate::translate(&tree, &conf_dir)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut yaml = format!(
        "# weir configuration imported from {name} by `weir import nginx`.\n\
         # Each block names the nginx lines it came from; what did not translate is listed at\n\
         # the end. Check it with `weir -t -c FILE`.\n"
    );
    yaml.push_str(&yaml::write(&t.doc));
    yaml.push_str(&t.report.comment_block());
    Ok(Imported {
        yaml,
        left: t.report.left.len(),
        ignored: t.report.ignored.len(),
        notes: t.report.notes.len(),
    })
}

#[cfg(test)]
mod tests;
