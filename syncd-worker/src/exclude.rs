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
