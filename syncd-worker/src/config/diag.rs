//! Where a configuration value sits in its file and how problems with it are reported:
//! [`Pos`] (line and column), [`Problem`] (one message at one place) and [`ConfigError`]
//! (every problem found in one file). Loaders collect problems in [`Diags`] and keep going,
//! so one run shows the operator everything to fix. Pure: no I/O.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// The start of a file.
    pub const START: Pos = Pos { line: 1, col: 1 };

    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Pos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct At<T> {
    pub value: T,
    pub at: Pos,
}

impl<T> At<T> {
    pub fn new(value: T, at: Pos) -> At<T> {
        At { value, at }
    }
}

/// One problem at one place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// None only when the file could not be read at all.
    pub pos: Option<Pos>,
    pub message: String,
    /// Further lines: what to do instead, what is expected, or the offending line.
    pub detail: Vec<String>,
}

/// Everything wrong with one configuration file. Displayed as one `FILE:LINE:COL: message`
/// line per problem, each followed by indented lines saying what to do.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// In file order; never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.pos {
                Some(pos) => write!(f, "{}:{}: {}", self.file.display(), pos, p.message)?,
                None => write!(f, "{}: {}", self.file.display(), p.message)?,
            }
            for line in &p.detail {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A problem with the file as a whole (it could not be read).
    pub(super) fn whole_file(file: &Path, message: String, detail: Vec<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                pos: None,
                message,
                detail,
            }],
        }
    }
}

/// Problems and warnings collected while loading one file.
#[derive(Debug, Default)]
pub(super) struct Diags {
    problems: Vec<Problem>,
    warnings: Vec<(Pos, String)>,
}

impl Diags {
    /// Record an error.
    pub fn error(&mut self, at: Pos, message: impl Into<String>) {
        self.error_with(at, message, &[]);
    }

    /// Record an error with lines saying what to do.
    pub fn error_with(&mut self, at: Pos, message: impl Into<String>, detail: &[&str]) {
        self.problems.push(Problem {
            pos: Some(at),
            message: message.into(),
            detail: detail.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// Record a finished problem (e.g. one translated from a parser's error).
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Record something the operator should know that does not stop the start.
    pub fn warn(&mut self, at: Pos, message: impl Into<String>) {
        self.warnings.push((at, message.into()));
    }

    /// The errors as a [`ConfigError`] (sorted by position), or the warnings as
    /// `FILE:LINE:COL: text` lines.
    pub fn finish(self, file: &Path) -> Result<Vec<String>, ConfigError> {
        if self.problems.is_empty() {
            let mut warnings = self.warnings;
            warnings.sort_by_key(|(at, _)| *at);
            return Ok(warnings
                .into_iter()
                .map(|(at, w)| format!("{}:{at}: {w}", file.display()))
                .collect());
        }
        let mut problems = self.problems;
        problems.sort_by_key(|p| p.pos);
        Err(ConfigError {
            file: file.to_path_buf(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_char_columns() {
        let text = "ab\nçd = 1\n\nx";
        let cases = [
            (0, (1, 1)),
            (2, (1, 3)),
            (3, (2, 1)),
            (5, (2, 2)), // after the two-byte 'ç'
            (4, (2, 1)), // inside 'ç': clamped to its start
            (11, (3, 1)),
            (12, (4, 1)),
            (999, (4, 2)),
        ];
        for (offset, (line, col)) in cases {
            assert_eq!(
                Pos::of_offset(text, offset),
                Pos { line, col },
                "offset {offset}"
            );
        }
    }

    #[test]
    fn display_is_file_line_col_then_indented_detail() {
        let mut d = Diags::default();
        d.error_with(Pos { line: 7, col: 9 }, "second", &["do this"]);
        d.error(Pos { line: 2, col: 1 }, "first");
        let err = d.finish(Path::new("/etc/syncd/syncd.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/syncd/syncd.toml:2:1: first\n/etc/syncd/syncd.toml:7:9: second\n  do this"
        );
    }

    #[test]
    fn warnings_only_is_ok() {
        let mut d = Diags::default();
        d.warn(Pos { line: 3, col: 2 }, "careful");
        assert_eq!(
            d.finish(Path::new("f.toml")).unwrap(),
            vec!["f.toml:3:2: careful"]
        );
    }
}
