//! The YAML the importer writes: a small tree of maps, lists and scalars whose entries
//! carry comments (the nginx lines they came from), written in block style with short
//! comment-free parts in flow style (`{ zone: ip, burst: 20 }`).

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A string, quoted when YAML would read it as something else.
    Str(String),
    /// Written as is: integers, booleans.
    Raw(String),
    /// A map, in insertion order.
    Map(Vec<Entry>),
    /// A list.
    List(Vec<Item>),
}

/// One `key: value` of a map, with the comment lines written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Node,
    /// Comment lines (without `# `).
    pub comments: Vec<String>,
}

/// One `- value` of a list, with the comment lines written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The value.
    pub value: Node,
    /// Comment lines (without `# `).
    pub comments: Vec<String>,
}

impl Node {
    /// A string.
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// An integer.
    pub fn int(n: impl std::fmt::Display) -> Node {
        Node::Raw(n.to_string())
    }

    /// A boolean.
    pub fn bool(b: bool) -> Node {
        Node::Raw(b.to_string())
    }

    /// An empty map.
    pub fn map() -> Node {
        Node::Map(Vec::new())
    }

    /// A list of strings.
    pub fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Node {
        Node::List(
            items
                .into_iter()
                .map(|s| Item {
                    value: Node::str(s),
                    comments: Vec::new(),
                })
                .collect(),
        )
    }

    /// Adds `key: value` to a map (no-op on other nodes).
    pub fn set(&mut self, key: impl Into<String>, value: Node) -> &mut Self {
        self.set_commented(key, value, Vec::new())
    }

    /// Adds `key: value` with comments above it.
    pub fn set_commented(
        &mut self,
        key: impl Into<String>,
        value: Node,
        comments: Vec<String>,
    ) -> &mut Self {
        if let Node::Map(entries) = self {
            entries.push(Entry {
                key: key.into(),
                value,
                comments,
            });
        }
        self
    }

    /// Appends an item to a list (no-op on other nodes).
    pub fn push(&mut self, value: Node, comments: Vec<String>) {
        if let Node::List(items) = self {
            items.push(Item { value, comments });
        }
    }

    fn has_comments(&self) -> bool {
        match self {
            Node::Map(es) => es
                .iter()
                .any(|e| !e.comments.is_empty() || e.value.has_comments()),
            Node::List(is) => is
                .iter()
                .any(|i| !i.comments.is_empty() || i.value.has_comments()),
            _ => false,
        }
    }

    /// The value in flow style, on one line.
    fn flow(&self) -> String {
        match self {
            Node::Str(s) => scalar(s),
            Node::Raw(s) => s.clone(),
            Node::Map(es) if es.is_empty() => "{}".into(),
            Node::List(is) if is.is_empty() => "[]".into(),
            Node::Map(es) => {
                let parts: Vec<String> = es
                    .iter()
                    .map(|e| format!("{}: {}", scalar(&e.key), e.value.flow()))
                    .collect();
                format!("{{ {} }}", parts.join(", "))
            }
            Node::List(is) => {
                let parts: Vec<String> = is.iter().map(|i| i.value.flow()).collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }

    /// Whether the value is written on its key's line.
    fn inline(&self, indent: usize) -> bool {
        match self {
            Node::Str(_) | Node::Raw(_) => true,
            Node::Map(es) if es.is_empty() => true,
            Node::List(is) if is.is_empty() => true,
            _ => !self.has_comments() && indent + self.flow().len() <= 96 && !self.nested_deep(),
        }
    }

    /// A map holding a map holding a non-empty map or list: clearer in block style.
    fn nested_deep(&self) -> bool {
        fn depth(n: &Node) -> usize {
            match n {
                Node::Map(es) => 1 + es.iter().map(|e| depth(&e.value)).max().unwrap_or(0),
                Node::List(is) => 1 + is.iter().map(|i| depth(&i.value)).max().unwrap_or(0),
                _ => 0,
            }
        }
        depth(self) > 3
    }
}

/// Writes a top-level map as a YAML document.
pub fn write(doc: &Node) -> String {
    let mut out = String::new();
    if let Node::Map(entries) = doc {
        write_entries(entries, 0, &mut out);
    }
    out
}

fn comments(lines: &[String], indent: usize, out: &mut String) {
    for l in lines {
        out.push_str(&" ".repeat(indent));
        out.push_str("# ");
        out.push_str(l);
        out.push('\n');
    }
}

fn write_entries(entries: &[Entry], indent: usize, out: &mut String) {
    for e in entries {
        comments(&e.comments, indent, out);
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(&e.key));
        out.push(':');
        write_value(&e.value, indent, indent + 2 + e.key.len(), out);
    }
}

/// Writes `value` after `key:` or `- ` (the cursor is at `column`).
fn write_value(value: &Node, indent: usize, column: usize, out: &mut String) {
    if value.inline(column) {
        out.push(' ');
        out.push_str(&value.flow());
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        Node::Map(es) => write_entries(es, indent + 2, out),
        Node::List(is) => write_items(is, indent + 2, out),
        _ => {}
    }
}

fn write_items(items: &[Item], indent: usize, out: &mut String) {
    for i in items {
        comments(&i.comments, indent, out);
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match &i.value {
            // A map item that is not flow-style: its first key on the dash's line.
            Node::Map(es) if !i.value.inline(indent + 2) => {
                let mut first = true;
                for e in es {
                    if !first || !e.comments.is_empty() {
                        if first {
                            out.push('\n');
                        }
                        comments(&e.comments, indent + 2, out);
                        out.push_str(&" ".repeat(indent + 2));
                    } else {
                        out.push(' ');
                    }
                    first = false;
                    out.push_str(&scalar(&e.key));
                    out.push(':');
                    write_value(&e.value, indent + 2, indent + 4 + e.key.len(), out);
                }
            }
            // `- name: {…}`: a one-key map (a plugin) keeps its key on the dash's line.
            Node::Map(es) if es.len() == 1 && es[0].comments.is_empty() => {
                let e = &es[0];
                out.push(' ');
                out.push_str(&scalar(&e.key));
                out.push(':');
                write_value(&e.value, indent + 2, indent + 4 + e.key.len(), out);
            }
            v => write_value(v, indent, indent + 2, out),
        }
    }
}

/// A string as a YAML scalar: plain when YAML reads it back as the same string, else
/// double-quoted with escapes.
pub fn scalar(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn plain_ok(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
    if !safe || s.ends_with('.') {
        return false;
    }
    if first.is_ascii_alphabetic() || first == '/' || first == '_' {
        return true;
    }
    // Durations, sizes and rates such as 10m, 64MiB, 5r/s: digits then letters.
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let unit = &s[digits..];
    digits > 0
        && !unit.is_empty()
        && matches!(
            unit,
            "ms" | "s"
                | "m"
                | "h"
                | "d"
                | "k"
                | "K"
                | "M"
                | "g"
                | "G"
                | "KiB"
                | "MiB"
                | "GiB"
                | "TiB"
                | "r/s"
                | "r/m"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_through_a_yaml_parser() {
        for s in [
            "a",
            "10m",
            "5r/s",
            "200",
            "on",
            "true",
            "",
            "a: b",
            "#x",
            "$scheme$host",
            "*.a.com",
            "127.0.0.1:80",
            "x\"y",
            "1.5",
            "0x10",
            "a,b",
            "[x]",
            "/tmp/a b",
            "64MiB",
            "-",
        ] {
            let text = format!("k: {}\n", scalar(s));
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(v["k"], serde_yaml_ng::Value::String(s.into()), "{text}");
            let flow = format!("k: [{}]\n", scalar(s));
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&flow).unwrap();
            assert_eq!(v["k"][0], serde_yaml_ng::Value::String(s.into()), "{flow}");
        }
        assert_eq!(scalar("10m"), "10m");
        assert_eq!(scalar("200"), "\"200\"");
    }

    #[test]
    fn block_and_flow_with_comments() {
        let mut limit = Node::map();
        limit
            .set("zone", Node::str("ip"))
            .set("burst", Node::int(20));
        let mut plugin = Node::map();
        plugin.set("limit_req", limit);
        let mut plugins = Node::List(Vec::new());
        plugins.push(
            plugin,
            vec!["nginx.conf:42 limit_req zone=ip burst=20;".into()],
        );
        let mut route = Node::map();
        route
            .set("name", Node::str("r"))
            .set("upstream", Node::str("u"))
            .set("plugins", plugins);
        let mut routes = Node::List(Vec::new());
        routes.push(route, vec!["nginx.conf:40 location / {".into()]);
        let mut doc = Node::map();
        doc.set("routes", routes);
        let text = write(&doc);
        assert_eq!(
            text,
            "routes:\n  # nginx.conf:40 location / {\n  - name: r\n    upstream: u\n    plugins:\n      \
             # nginx.conf:42 limit_req zone=ip burst=20;\n      - limit_req: { zone: ip, burst: 20 }\n"
        );
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["routes"][0]["plugins"][0]["limit_req"]["burst"], 20);
    }
}
