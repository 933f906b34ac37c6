//! Regular-expression path filters (sersync's `<filter>`), matched against the path
//! relative to the source root. A path is excluded when it or any of its ancestors
//! matches, so excluding a directory excludes everything below it. Pure: no I/O.

use regex::bytes::Regex;

/// A compiled list of expressions, kept with their source text for messages.
#[derive(Debug, Clone, Default)]
pub struct ExcludeSet {
    patterns: Vec<Regex>,
}

impl ExcludeSet {
    /// Compile `patterns`; the error names the pattern that failed.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<ExcludeSet, String> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            let re = Regex::new(p).map_err(|e| format!("invalid regular expression {p:?}: {e}"))?;
            out.push(re);
        }
        Ok(ExcludeSet { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|r| r.as_str())
    }

    /// The expressions rsync can match itself, as rsync patterns of the same meaning: a
    /// name ending (`\.log$` → `*.log`) and a top-level name (`^cache$` → `/cache`);
    /// others are left to the concrete paths a walk finds. Given to rsync as sender-side
    /// hide rules, they keep a file created under an excluded name after that walk out of
    /// a whole-tree run (without them it reached the target), and change nothing on the
    /// receiver (a hide rule does not protect).
    pub fn rsync_patterns(&self) -> Vec<String> {
        self.patterns()
            .filter_map(|p| {
                let word = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                };
                if let Some(ext) = p.strip_prefix(r"\.").and_then(|r| r.strip_suffix('$')) {
                    return word(ext).then(|| format!("*.{ext}"));
                }
                let name = p.strip_prefix('^').and_then(|r| r.strip_suffix('$'))?;
                word(name).then(|| format!("/{name}"))
            })
            .collect()
    }

    /// Does one expression match this exact relative path (not looking at ancestors)?
    pub fn matches_self(&self, rel: &[u8]) -> bool {
        self.patterns.iter().any(|r| r.is_match(rel))
    }

    /// Is `rel` (e.g. `a/b/c.txt`, no leading slash) excluded, by itself or an ancestor?
    /// Paths are bytes: Linux file names need not be UTF-8.
    pub fn is_excluded(&self, rel: &[u8]) -> bool {
        if self.patterns.is_empty() || rel.is_empty() {
            return false;
        }
        if self.matches_self(rel) {
            return true;
        }
        rel.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.matches_self(&rel[..i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_exclude_children() {
        let set = ExcludeSet::new(&["^cache$", r"\.tmp$"]).unwrap();
        let cases = [
            ("cache", true),
            ("cache/a/b", true),
            ("x/cache", false),
            ("a.tmp", true),
            ("d.tmp/inner.txt", true),
            ("tmp", false),
            ("keep/me.txt", false),
        ];
        assert!(set.is_excluded(b"cache/\xff\xfe"));
        for (path, want) in cases {
            assert_eq!(set.is_excluded(path.as_bytes()), want, "{path}");
        }
    }

    #[test]
    fn rsync_patterns_only_where_the_meaning_is_the_same() {
        let cases = [
            (r"\.log$", Some("*.log")),
            (r"\.tar_gz-1$", Some("*.tar_gz-1")),
            ("^cache$", Some("/cache")),
            (r"\.log", None),    // also matches a.log.1 and a.logx
            (r"\..*$", None),    // any extension: a wildcard rsync reads otherwise
            ("^cache", None),    // also cache2
            ("cache$", None),    // also a/xcache
            ("^ca.he$", None),   // `.` is any character
            (r"^a/b$", None),    // a path, not a name
            (r"\.$", None),      // no extension at all
            (r"\.l[o]g$", None), // a class
        ];
        for (re, want) in cases {
            let set = ExcludeSet::new(&[re]).unwrap();
            let got = set.rsync_patterns();
            assert_eq!(got.first().map(String::as_str), want, "{re}");
        }
        // The translated forms agree with the regex on names and their children.
        let set = ExcludeSet::new(&[r"\.log$", "^cache$"]).unwrap();
        for (path, excluded) in [
            ("a/b.log", true),
            ("b.log/child", true),
            (".log", true),
            ("a/b.logx", false),
            ("cache", true),
            ("cache/x", true),
            ("a/cache", false),
        ] {
            assert_eq!(set.is_excluded(path.as_bytes()), excluded, "{path}");
        }
    }

    #[test]
    fn empty_set_excludes_nothing() {
        let set = ExcludeSet::default();
        assert!(!set.is_excluded(b"anything"));
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = ExcludeSet::new(&["(unclosed"]).unwrap_err();
        assert!(err.contains("(unclosed"), "{err}");
    }
}
