//! nginx's configuration tokens, read the way `ngx_conf_read_token` reads them: words split
//! by white space, `;` `{` `}` as punctuation, `"…"` and `'…'` quoted words, `\` escapes,
//! `#` comments at the start of a word, and `${var}` kept inside a word.

use super::SyntaxError;
use std::sync::Arc;

/// One token and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A word: a directive name or argument, quotes removed and escapes resolved.
    Word(String),
    /// `;`
    Semicolon,
    /// `{`
    Open,
    /// `}`
    Close,
}

/// A token with its line (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Its line in the file.
    pub line: u32,
}

/// Splits `text` (the content of `file`) into tokens; an unterminated quote is an error.
pub fn tokenize(file: &Arc<str>, text: &str) -> Result<Vec<Spanned>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1u32;
    let err = |line: u32, message: String| SyntaxError {
        file: file.clone(),
        line,
        message,
    };
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                chars.next();
                let token = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                out.push(Spanned { token, line });
            }
            '"' | '\'' => {
                let quote = c;
                let start = line;
                chars.next();
                let mut raw = String::new();
                let mut closed = false;
                while let Some(ch) = chars.next() {
                    if ch == quote {
                        closed = true;
                        break;
                    }
                    if ch == '\n' {
                        line += 1;
                    }
                    raw.push(ch);
                    if ch == '\\' {
                        if let Some(n) = chars.next() {
                            if n == '\n' {
                                line += 1;
                            }
                            raw.push(n);
                        }
                    }
                }
                if !closed {
                    return Err(err(
                        start,
                        "unexpected end of file, expecting a closing quote".into(),
                    ));
                }
                // nginx wants white space, `;`, `{` or `)` after a closing quote (`)` ends
                // an `if` condition: `if ($scheme = "http")`, and is a word of its own).
                if let Some(&n) = chars.peek() {
                    if !(n.is_whitespace() || n == ';' || n == '{' || n == ')') {
                        return Err(err(line, format!("unexpected \"{n}\"")));
                    }
                }
                out.push(Spanned {
                    token: Token::Word(unescape(&raw)),
                    line: start,
                });
            }
            _ => {
                let start = line;
                let mut raw = String::new();
                let mut variable = false;
                while let Some(&c) = chars.peek() {
                    if c == '{' && variable {
                        // `${name}`: the brace belongs to the word.
                        raw.push(c);
                        chars.next();
                        while let Some(&v) = chars.peek() {
                            raw.push(v);
                            chars.next();
                            if v == '}' {
                                break;
                            }
                        }
                        variable = false;
                        continue;
                    }
                    variable = false;
                    if c.is_whitespace() || c == ';' || c == '{' {
                        break;
                    }
                    chars.next();
                    raw.push(c);
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if n == '\n' {
                                    line += 1;
                                }
                                raw.push(n);
                            }
                        }
                        '$' => variable = true,
                        _ => {}
                    }
                }
                out.push(Spanned {
                    token: Token::Word(unescape(&raw)),
                    line: start,
                });
            }
        }
    }
    Ok(out)
}

/// nginx's escapes: `\"`, `\'`, `\\` give the character; `\t`, `\r`, `\n` the control
/// character; any other `\x` stays as written.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('"') | Some('\'') | Some('\\') => {
                out.extend(chars.next());
            }
            Some('t') => {
                chars.next();
                out.push('\t');
            }
            Some('r') => {
                chars.next();
                out.push('\r');
            }
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let file: Arc<str> = Arc::from("t.conf");
        tokenize(&file, text)
            .unwrap()
            .into_iter()
            .map(|t| match t.token {
                Token::Word(w) => w,
                Token::Semicolon => ";".into(),
                Token::Open => "{".into(),
                Token::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn words_punctuation_and_comments() {
        assert_eq!(
            words("a b;# c d;\n e { f; } #x"),
            ["a", "b", ";", "e", "{", "f", ";", "}"]
        );
        // `#` inside a word is part of it; `}` too.
        assert_eq!(words("a b#c d};"), ["a", "b#c", "d}", ";"]);
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            words(r#"add_header X "a b;{}";"#),
            ["add_header", "X", "a b;{}", ";"]
        );
        assert_eq!(
            words(r#"x "say \"hi\"" 'a\'b';"#),
            ["x", "say \"hi\"", "a'b", ";"]
        );
        // As nginx: `\;` keeps the `;` in the word, and the backslash with it.
        assert_eq!(
            words(r#"x a\;b "\t\n" \\;"#),
            ["x", "a\\;b", "\t\n", "\\", ";"]
        );
        assert_eq!(words(r#"x "\d+";"#), ["x", "\\d+", ";"]);
        assert_eq!(words("x \"\";"), ["x", "", ";"]);
    }

    #[test]
    fn variables_in_braces_stay_in_the_word() {
        assert_eq!(
            words("proxy_cache_key ${scheme}x{y};"),
            ["proxy_cache_key", "${scheme}x", "{", "y}", ";"]
        );
        assert_eq!(words("a $a${b}c;"), ["a", "$a${b}c", ";"]);
    }

    #[test]
    fn lines_are_counted_across_quotes_and_comments() {
        let file: Arc<str> = Arc::from("t.conf");
        let toks = tokenize(&file, "a;\n# c\n\"x\ny\" z;\nw;").unwrap();
        let lines: Vec<u32> = toks.iter().map(|t| t.line).collect();
        assert_eq!(lines, [1, 1, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn errors_name_the_line() {
        let file: Arc<str> = Arc::from("t.conf");
        let e = tokenize(&file, "a;\nb \"open;\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:2: unexpected end of file, expecting a closing quote"
        );
        let e = tokenize(&file, "a \"b\"c;").unwrap_err();
        assert_eq!(e.to_string(), "t.conf:1: unexpected \"c\"");
        // nginx: `}` right after a quote is an error, `)` (an `if` condition) is not.
        let e = tokenize(&file, "a { b \"c\"}").unwrap_err();
        assert_eq!(e.to_string(), "t.conf:1: unexpected \"}\"");
        assert_eq!(
            words("if ($scheme = \"http\") { }"),
            ["if", "($scheme", "=", "http", ")", "{", "}"]
        );
    }
}
