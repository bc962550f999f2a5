//! What the importer could not carry over, each with file:line and why: directives left
//! behind (weir would behave differently), directives with no effect in weir, and notes on
//! translated directives where weir's behaviour differs in a detail.

use super::parser::{At, Directive};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Where the directive is.
    pub at: At,
    /// The directive as written.
    pub text: String,
    /// Why.
    pub why: String,
}

/// Everything the import did not translate one to one.
#[derive(Debug, Default)]
pub struct Report {
    /// Not translated: the behaviour is lost or changed (`--strict` fails on these).
    pub left: Vec<Finding>,
    /// Without effect in weir (process settings, buffers, file-serving defaults …).
    pub ignored: Vec<Finding>,
    /// Translated, but weir differs in a detail worth knowing.
    pub notes: Vec<Finding>,
}

fn finding(d: &Directive, why: impl Into<String>) -> Finding {
    Finding {
        at: d.at.clone(),
        text: d.text(),
        why: why.into(),
    }
}

impl Report {
    /// Records `d` as not translated.
    pub fn left(&mut self, d: &Directive, why: impl Into<String>) {
        let f = finding(d, why);
        if !self.left.contains(&f) {
            self.left.push(f);
        }
    }

    /// Records `d` as without effect in weir.
    pub fn ignored(&mut self, d: &Directive, why: impl Into<String>) {
        let f = finding(d, why);
        if !self.ignored.contains(&f) {
            self.ignored.push(f);
        }
    }

    /// Records a note about translated `d`.
    pub fn note(&mut self, d: &Directive, why: impl Into<String>) {
        let f = finding(d, why);
        if !self.notes.contains(&f) {
            self.notes.push(f);
        }
    }

    /// The report as YAML comment lines for the end of the output, sorted by file and line.
    pub fn comment_block(&self) -> String {
        let mut out = String::new();
        let sections = [
            (
                "NOT TRANSLATED: weir does not do what these lines do; review each",
                &self.left,
            ),
            ("Translated with a difference", &self.notes),
            ("Ignored: no effect in weir", &self.ignored),
        ];
        for (title, list) in sections {
            if list.is_empty() {
                continue;
            }
            let mut list = list.clone();
            list.sort();
            out.push_str(&format!("\n# {title} ({}):\n", list.len()));
            for f in &list {
                out.push_str(&format!("#   {} {}\n#       {}\n", f.at, f.text, f.why));
            }
        }
        out
    }
}
