//! nginx's configuration as a tree of directives, each with its file and line, and
//! `include` followed as nginx does: a path relative to the main file's directory, glob
//! patterns expanded in sorted order, the included directives spliced in place.

use super::directives::{block_kind, BlockKind};
use super::lexer::{tokenize, Spanned, Token};
use super::SyntaxError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a directive was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At {
    /// The file, relative to the main file's directory when it is inside it.
    pub file: Arc<str>,
    /// The line of the directive's name.
    pub line: u32,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive: `name args…;` or `name args… { block }`.
#[derive(Debug, Clone)]
pub struct Directive {
    /// Unique within one parse: lets the translator record what it used.
    pub id: usize,
    /// The directive's name.
    pub name: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
    /// The block's directives, for block directives.
    pub block: Option<Vec<Directive>>,
    /// Where it was written.
    pub at: At,
}

impl Directive {
    /// The directive as written, for comments and reports: `limit_req zone=ip burst=20;` or
    /// `location /img/ {`.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(&quote_arg(a));
        }
        s.push_str(if self.block.is_some() { " {" } else { ";" });
        s
    }

    /// `file:line text`, the form used in comments and reports.
    pub fn source(&self) -> String {
        format!("{} {}", self.at, self.text())
    }

    /// The directives of its block (empty for a simple directive).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// An argument as nginx would read it back: quoted when it holds white space, quotes or
/// punctuation, or is empty.
fn quote_arg(a: &str) -> String {
    let plain = !a.is_empty()
        && !a
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '{' | '}' | '#'));
    if plain {
        a.to_string()
    } else {
        // nginx reads `\n`, `\r` and `\t` in quotes as those characters: written back
        // escaped, so a report line stays one line.
        let escaped = a
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t");
        format!("\"{escaped}\"")
    }
}

/// Blocks whose entries are data (MIME types, map and geo values …), not directives.
const FREE_FORM_BLOCKS: &[&str] = &[
    "types",
    "map",
    "geo",
    "split_clients",
    "match",
    "charset_map",
];

/// Includes nested deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads and parses the main file at `path` with its includes.
pub fn parse_file(path: &Path) -> Result<Vec<Directive>, SyntaxError> {
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut parser = Parser { base, next_id: 0 };
    parser.file(path, None, 0)
}

#[cfg(test)]
/// Parses `text` as the main file named `name`, with includes relative to `base`.
pub fn parse_text(name: &str, text: &str, base: &Path) -> Result<Vec<Directive>, SyntaxError> {
    let mut parser = Parser {
        base: base.to_path_buf(),
        next_id: 0,
    };
    let file: Arc<str> = Arc::from(name);
    parser.tokens(&file, text, 0)
}

struct Parser {
    /// Where relative include paths start: the main file's directory.
    base: PathBuf,
    next_id: usize,
}

impl Parser {
    fn display_name(&self, path: &Path) -> Arc<str> {
        let shown = path.strip_prefix(&self.base).unwrap_or(path);
        Arc::from(shown.display().to_string())
    }

    fn file(
        &mut self,
        path: &Path,
        from: Option<&At>,
        depth: usize,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let text = std::fs::read_to_string(path).map_err(|e| match from {
            Some(at) => SyntaxError::at(at, format!("cannot read {}: {e}", path.display())),
            None => SyntaxError {
                file: Arc::from(path.display().to_string()),
                line: 0,
                message: format!("cannot read it: {e}"),
            },
        })?;
        let name = self.display_name(path);
        self.tokens(&name, &text, depth)
    }

    fn tokens(
        &mut self,
        file: &Arc<str>,
        text: &str,
        depth: usize,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let tokens = tokenize(file, text)?;
        let mut pos = 0;
        self.block(file, &tokens, &mut pos, depth, false, false)
    }

    /// Directives until the end of the file (top level) or the `}` closing a block.
    fn block(
        &mut self,
        file: &Arc<str>,
        tokens: &[Spanned],
        pos: &mut usize,
        depth: usize,
        in_block: bool,
        free_form: bool,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let mut out = Vec::new();
        let last_line = tokens.last().map_or(1, |t| t.line);
        let err = |line: u32, message: String| SyntaxError {
            file: file.clone(),
            line,
            message,
        };
        loop {
            let Some(t) = tokens.get(*pos) else {
                if in_block {
                    return Err(err(
                        last_line,
                        "unexpected end of file, expecting \"}\"".into(),
                    ));
                }
                return Ok(out);
            };
            *pos += 1;
            let name = match &t.token {
                Token::Word(w) => w.clone(),
                Token::Close if in_block => return Ok(out),
                Token::Close => return Err(err(t.line, "unexpected \"}\"".into())),
                Token::Semicolon => return Err(err(t.line, "unexpected \";\"".into())),
                Token::Open => return Err(err(t.line, "unexpected \"{\"".into())),
            };
            let at = At {
                file: file.clone(),
                line: t.line,
            };
            let mut args = Vec::new();
            let opens = loop {
                let Some(t) = tokens.get(*pos) else {
                    return Err(err(
                        last_line,
                        "unexpected end of file, expecting \";\" or \"}\"".into(),
                    ));
                };
                *pos += 1;
                match &t.token {
                    Token::Word(w) => args.push(w.clone()),
                    Token::Semicolon => break false,
                    Token::Open => break true,
                    Token::Close => return Err(err(t.line, "unexpected \"}\"".into())),
                }
            };
            // The entries of `types`, `map`, `geo` … are data, not directives.
            let kind = if free_form {
                if opens {
                    BlockKind::Block
                } else {
                    BlockKind::Simple
                }
            } else {
                block_kind(&name)
                    .ok_or_else(|| SyntaxError::at(&at, format!("unknown directive \"{name}\"")))?
            };
            match (kind, opens) {
                (BlockKind::Block, false) => {
                    return Err(SyntaxError::at(
                        &at,
                        format!("directive \"{name}\" has no opening \"{{\""),
                    ))
                }
                (BlockKind::Simple, true) => {
                    return Err(SyntaxError::at(
                        &at,
                        format!("directive \"{name}\" is not terminated by \";\""),
                    ))
                }
                _ => {}
            }
            if name == "include" && !free_form {
                if args.len() != 1 {
                    return Err(SyntaxError::at(
                        &at,
                        "invalid number of arguments in \"include\" directive".into(),
                    ));
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(SyntaxError::at(
                        &at,
                        format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"),
                    ));
                }
                for path in self.include_paths(&args[0], &at)? {
                    out.extend(self.file(&path, Some(&at), depth + 1)?);
                }
                continue;
            }
            let block = if opens {
                let data = free_form || FREE_FORM_BLOCKS.contains(&name.as_str());
                Some(self.block(file, tokens, pos, depth, true, data)?)
            } else {
                None
            };
            let id = self.next_id;
            self.next_id += 1;
            out.push(Directive {
                id,
                name,
                args,
                block,
                at,
            });
        }
    }

    /// The files an `include` names, sorted; a pattern without wildcards must exist.
    fn include_paths(&self, pattern: &str, at: &At) -> Result<Vec<PathBuf>, SyntaxError> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.base.join(pattern)
        };
        if !pattern.contains(['*', '?', '[']) {
            if !full.is_file() {
                return Err(SyntaxError::at(
                    at,
                    format!("open() \"{}\" failed: no such file", full.display()),
                ));
            }
            return Ok(vec![full]);
        }
        let mut found = Vec::new();
        glob(&full, &mut found);
        found.sort();
        Ok(found)
    }
}

/// Expands `pattern` (an absolute or base-relative path whose components may hold `*`, `?`
/// and `[…]`, as glob(3)) into the files it names.
fn glob(pattern: &Path, found: &mut Vec<PathBuf>) {
    let mut current = vec![PathBuf::new()];
    let components: Vec<_> = pattern.components().collect();
    for (i, comp) in components.iter().enumerate() {
        let part = comp.as_os_str().to_string_lossy();
        let last = i + 1 == components.len();
        let mut next = Vec::new();
        for dir in &current {
            if !part.contains(['*', '?', '[']) {
                next.push(dir.join(comp.as_os_str()));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // As glob(3): a leading dot is matched only by a leading dot.
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if wildcard_match(part.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(&name));
                }
            }
        }
        current = next;
        if last {
            found.extend(current.iter().filter(|p| p.is_file()).cloned());
        }
    }
}

/// `*`, `?` and `[…]` (with `!`/`^` negation and ranges) against one file name.
fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildcard_match(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && wildcard_match(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(2).position(|&b| b == b']').map(|i| i + 2) else {
                return s.first() == Some(&b'[') && wildcard_match(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else {
                return false;
            };
            let mut set = &p[1..end];
            let negate = matches!(set.first(), Some(b'!') | Some(b'^'));
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && wildcard_match(&p[end + 1..], &s[1..])
        }
        Some(&b) => s.first() == Some(&b) && wildcard_match(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
        parse_text("nginx.conf", text, Path::new("/nonexistent"))
    }

    #[test]
    fn a_tree_with_lines() {
        let d = parse("worker_processes 2;\nhttp {\n  server {\n    listen 80;\n  }\n}\n").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].source(), "nginx.conf:1 worker_processes 2;");
        let server = &d[1].children()[0];
        assert_eq!(server.source(), "nginx.conf:3 server {");
        assert_eq!(server.children()[0].source(), "nginx.conf:4 listen 80;");
    }

    #[test]
    fn text_quotes_what_needs_it() {
        let d =
            parse("http { add_header X-A \"a b\"; proxy_set_header Connection \"\"; }").unwrap();
        let texts: Vec<String> = d[0].children().iter().map(Directive::text).collect();
        assert_eq!(
            texts,
            [
                "add_header X-A \"a b\";",
                "proxy_set_header Connection \"\";"
            ]
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let cases = [
            (
                "http {\n  server {\n",
                "nginx.conf:2: unexpected end of file, expecting \"}\"",
            ),
            ("http {}\n}\n", "nginx.conf:2: unexpected \"}\""),
            (
                "worker_processes 2",
                "nginx.conf:1: unexpected end of file, expecting \";\" or \"}\"",
            ),
            (
                "http {\n  bogus_directive on;\n}",
                "nginx.conf:2: unknown directive \"bogus_directive\"",
            ),
            (
                "http;",
                "nginx.conf:1: directive \"http\" has no opening \"{\"",
            ),
            (
                "worker_processes 2 { }",
                "nginx.conf:1: directive \"worker_processes\" is not terminated by \";\"",
            ),
            ("http { ; }", "nginx.conf:1: unexpected \";\""),
            ("http {\n listen 80 }", "nginx.conf:2: unexpected \"}\""),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "{text}");
        }
    }

    #[test]
    fn includes_with_globs_relative_to_the_main_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "server { listen 82; }\n").unwrap();
        std::fs::write(d.join("conf.d/a.conf"), "\nserver { listen 81; }\n").unwrap();
        std::fs::write(d.join("conf.d/c.txt"), "not nginx at all {").unwrap();
        std::fs::write(
            d.join("zones"),
            "limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;",
        )
        .unwrap();
        std::fs::write(
            d.join("nginx.conf"),
            "http {\n  include zones;\n  include conf.d/*.conf;\n  include none/*.conf;\n}\n",
        )
        .unwrap();
        let tree = parse_file(&d.join("nginx.conf")).unwrap();
        let http = tree[0].children();
        let got: Vec<String> = http.iter().map(Directive::source).collect();
        assert_eq!(
            got,
            [
                "zones:1 limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;",
                "conf.d/a.conf:2 server {",
                "conf.d/b.conf:1 server {",
            ]
        );
        // A missing file without wildcards is an error at the include line.
        std::fs::write(
            d.join("nginx.conf"),
            "http {\n\n  include missing.conf;\n}\n",
        )
        .unwrap();
        let e = parse_file(&d.join("nginx.conf")).unwrap_err().to_string();
        assert!(e.starts_with("nginx.conf:3: open() \""), "{e}");
        // Errors inside an included file name that file.
        std::fs::write(d.join("conf.d/b.conf"), "server {\n  listen 82\n}\n").unwrap();
        std::fs::write(d.join("nginx.conf"), "http { include conf.d/*.conf; }").unwrap();
        let e = parse_file(&d.join("nginx.conf")).unwrap_err().to_string();
        assert_eq!(e, "conf.d/b.conf:3: unexpected \"}\"");
        // An include loop ends.
        std::fs::write(d.join("nginx.conf"), "include nginx.conf;").unwrap();
        let e = parse_file(&d.join("nginx.conf")).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(!wildcard_match(b"*.conf", b"a.confx"));
        assert!(wildcard_match(b"site-?.conf", b"site-1.conf"));
        assert!(wildcard_match(b"[a-c]*", b"b1"));
        assert!(!wildcard_match(b"[!a-c]*", b"b1"));
    }
}
