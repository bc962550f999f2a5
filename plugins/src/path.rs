//! The normalised request path: what every path-based decision compares (route
//! `match.path_prefix`, the cache key's `$uri`, the `uri` limit key), built once per request.
//!
//! nginx decodes and normalises the path before it chooses a location
//! (`ngx_http_parse_complex_uri`); comparing the raw target instead lets `/public/../private`,
//! `/%70rivate` or `/private%2fsecret` walk past a rule written for `/private/`. This module
//! follows nginx's rules byte for byte:
//!
//! - `%XX` is decoded; a `%` not followed by two hex digits is refused, and so is a NUL
//!   (`%00`, or sent as is: the request line parser refuses that before it gets here).
//! - A decoded `/` or `.` counts as a real one (`..%2f` climbs, `%2e%2e` is `..`), except that
//!   a decoded `%`, `?` or `#` is plain text: `%3F` never starts a query.
//! - `//` is merged into `/`; `.` segments are dropped; `..` removes the segment before it,
//!   and a `..` with nothing left to remove climbs above `/`: refused.
//! - The path ends at the first raw `?` (the query, which stays as sent) or `#`.
//! - `+` is a plain `+`, never a space.
//!
//! The request target itself is forwarded to the upstream exactly as the client sent it.

use std::fmt;

/// Why a path cannot be normalised; the request is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `..` climbs above `/`.
    AboveRoot,
    /// A `%` is not followed by two hex digits.
    BadEscape,
    /// A NUL byte, sent as is or as `%00`.
    Nul,
}

impl PathError {
    /// Words for the log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::AboveRoot => "path climbs above /",
            PathError::BadEscape => "bad percent-encoding in the path",
            PathError::Nul => "NUL byte in the path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// A request path after nginx's normalisation: percent-decoded, `//` merged, `.` and `..`
/// resolved. It always starts with `/`, holds no `//`, no `.` or `..` segment and no NUL; it
/// may hold any other byte (decoded `%FF` is the byte 0xFF), so it is bytes, not text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(Vec<u8>);

/// Where the state machine is within the current segment (nginx's states).
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside a segment that is not a dot segment.
    Usual,
    /// Right after a `/`.
    Slash,
    /// After `/.`.
    Dot,
    /// After `/..`.
    DotDot,
}

impl NormalizedPath {
    /// The root, `/`.
    pub fn root() -> Self {
        NormalizedPath(b"/".to_vec())
    }

    /// Normalises `target`, an origin-form request target (`/path?query`) or the path and
    /// query of an absolute-form one (which may be empty or start with `?`: the path is then
    /// `/`). The query is not part of the result.
    pub fn parse(target: &[u8]) -> Result<Self, PathError> {
        let mut out = Vec::with_capacity(target.len() + 1);
        let mut state = State::Slash;
        out.push(b'/');
        let mut i = usize::from(target.first() == Some(&b'/'));
        while i < target.len() {
            let mut ch = target[i];
            i += 1;
            let mut literal = false;
            if ch == b'%' {
                let (hi, lo) = match (target.get(i), target.get(i + 1)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                i += 2;
                ch = hi << 4 | lo;
                if ch == 0 {
                    return Err(PathError::Nul);
                }
                // nginx keeps a decoded `%`, `?` and `#` as text and leaves the segment's
                // dot state behind.
                literal = matches!(ch, b'%' | b'?' | b'#');
            } else if ch == b'?' || ch == b'#' {
                break;
            } else if ch == 0 {
                return Err(PathError::Nul);
            }
            if literal {
                out.push(ch);
                state = State::Usual;
                continue;
            }
            state = step(&mut out, state, ch)?;
        }
        finish(&mut out, state)?;
        Ok(NormalizedPath(out))
    }

    /// The path's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Does the path start with `prefix`?
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.0.starts_with(prefix)
    }
}

/// Feeds one (decoded) byte to the state machine.
fn step(out: &mut Vec<u8>, state: State, ch: u8) -> Result<State, PathError> {
    Ok(match (state, ch) {
        (State::Slash, b'/') => State::Slash, // `//` merged
        (_, b'/') => {
            match state {
                State::Dot => {
                    out.pop(); // `/./` is `/`
                }
                State::DotDot => climb(out)?,
                _ => out.push(b'/'),
            }
            State::Slash
        }
        (State::Slash, b'.') => {
            out.push(b'.');
            State::Dot
        }
        (State::Dot, b'.') => {
            out.push(b'.');
            State::DotDot
        }
        (_, ch) => {
            out.push(ch);
            State::Usual
        }
    })
}

/// The path ended in `state`: a trailing `/.` or `/..` resolves like one followed by `/`.
fn finish(out: &mut Vec<u8>, state: State) -> Result<(), PathError> {
    match state {
        State::Dot => {
            out.pop();
        }
        State::DotDot => climb(out)?,
        State::Usual | State::Slash => {}
    }
    Ok(())
}

/// `out` ends in `/..`: removes it and the segment before it, keeping that segment's `/`.
fn climb(out: &mut Vec<u8>) -> Result<(), PathError> {
    out.truncate(out.len().saturating_sub(3));
    let Some(slash) = out.iter().rposition(|&b| b == b'/') else {
        return Err(PathError::AboveRoot);
    };
    out.truncate(slash + 1);
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NormalizedPath({})", self.0.escape_ascii())
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        NormalizedPath::parse(s.as_bytes()).map(|p| String::from_utf8_lossy(p.as_bytes()).into())
    }

    #[test]
    fn every_spelling_of_a_private_path_is_the_same_path() {
        for dodge in [
            "/private/secret",
            "/public/../private/secret",
            "/public/%2e%2e/private/secret",
            "/public/%2E%2E/private/secret",
            "/public/..%2fprivate/secret",
            "/public/..%2Fprivate/secret",
            "//private/secret",
            "/./private/secret",
            "/%2e/private/secret",
            "/%70rivate/secret",
            "/private%2fsecret",
            "/private%2Fsecret",
            "/private//secret",
            "/private/./secret",
            "/a/b/../../private/secret",
            "/%2fprivate/secret",
            "/private/secret?x=/public/",
        ] {
            assert_eq!(norm(dodge).as_deref(), Ok("/private/secret"), "{dodge}");
        }
    }

    #[test]
    fn dot_segments_resolve_as_nginx() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("?a=1", "/"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a/./", "/a/"),
            ("/a/../b", "/b"),
            ("/...x/...", "/...x/..."),
            ("/a./.b/..c/c..", "/a./.b/..c/c.."),
            ("/a/..?x=..", "/"),
            ("/a/.#frag", "/a/"),
            ("//a//..//b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn climbing_above_root_is_refused() {
        for raw in [
            "/..",
            "/../",
            "/../etc/passwd",
            "/a/../..",
            "/a/../../x",
            "/%2e%2e/x",
            "/./..",
            "/a/..%2f..%2f..%2fetc/passwd",
            "//..",
            "/..?q",
        ] {
            assert_eq!(norm(raw), Err(PathError::AboveRoot), "{raw}");
        }
    }

    #[test]
    fn escapes_follow_nginx() {
        // A decoded `?`, `#` or `%` is text; `+` stays `+`.
        assert_eq!(norm("/a%3Fb?c").as_deref(), Ok("/a?b"));
        assert_eq!(norm("/a%23b").as_deref(), Ok("/a#b"));
        assert_eq!(norm("/a%252e").as_deref(), Ok("/a%2e"));
        assert_eq!(norm("/a+b%2B").as_deref(), Ok("/a+b+"));
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a b"));
        // A decoded `?` after a dot is not a dot segment.
        assert_eq!(norm("/.%3f").as_deref(), Ok("/.?"));
        assert_eq!(
            NormalizedPath::parse(b"/%ff%C3%A9").unwrap().as_bytes(),
            b"/\xff\xc3\xa9"
        );
        for bad in ["/%", "/%2", "/%zz", "/%2g", "/a%g0"] {
            assert_eq!(norm(bad), Err(PathError::BadEscape), "{bad}");
        }
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("/a\0b"), Err(PathError::Nul));
        // The query is never decoded or judged.
        assert_eq!(norm("/a?%zz/../..").as_deref(), Ok("/a"));
    }
}
