//! rsync's per-file error lines (stderr, `LC_ALL=C`) → which path failed, on which side,
//! and why; then → the path relative to the source root. Pure: reads only its arguments.
//!
//! A run that ended with exit 23 ("some files/attrs were not transferred") can be split
//! into what went and what did not only when *every* line of its stderr is understood:
//! one unknown line, or a read error on the sender while it built the file list (rsync
//! then skips deletions: "IO error encountered -- skipping file deletion"), and the run
//! counts as failed whole ([`parse`] returns None). Measured against rsync 3.5.0, to a
//! daemon module and to a local directory (the lines are in the table test):
//! * sender: `send_files failed to open "/SRC/a/b": Permission denied (13)` — the absolute
//!   path in the source; happens while sending, after the file list: deletions go on;
//! * receiver: `mkstemp "a/.b.XXXXXX" (in mod) failed: …` (a daemon names paths relative
//!   to the module and adds `(in mod)`; a local receiver prints the absolute path), the
//!   temporary file's name is `.NAME.` + 6 characters;
//! * receiver: `rename "a/.b.XXXXXX" (in mod) -> "a/b": …` (the second name is relative);
//! * generator: `recv_generator: mkdir "a/d" (in mod) failed: …`, followed by `*** Skipping
//!   any contents from this failed directory ***` — everything below it failed too;
//! * generator: `failed to set times on "a" (in mod): …`, `delete_file: unlink(a/x)
//!   failed: …` (unquoted, relative);
//! * `file has vanished: "…"` is no failure (exit 24, its delete event follows).
//!
//! Names: rsync prints a `./#name` entry (see [`super::args`]) cleaned, as `#name`, and
//! escapes unprintable bytes as `\#ooo` (octal), which [`unescape`] undoes.

use crate::batch::RelPath;

/// Which end of the transfer could not do its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// syncd's rsync could not read the file in the source.
    Source,
    /// The receiving rsync could not write, create, rename, set or delete it.
    Target,
}

/// One per-file error line, as rsync printed the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub side: Side,
    /// The path as printed (unescaped): absolute for the source and for a local receiver,
    /// relative to the module or destination otherwise.
    pub path: Vec<u8>,
    /// Everything below the path failed too (a directory that could not be created).
    pub below_too: bool,
    /// What could not be done, in words: "cannot be read on the source".
    pub what: &'static str,
    /// The system's error text: "Permission denied (13)".
    pub error: String,
}

/// What one line of stderr says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A path that failed.
    Failed(Failure),
    /// Nothing about a path that failed (a summary, a note, a vanished file).
    Harmless,
    /// rsync skipped its deletions, or a line this parser does not know: the run's
    /// failures cannot all be named.
    Unknown,
}

/// Every failure a run's stderr names, or None when they cannot all be named (an unknown
/// line, deletions skipped after a read error, or no failure line at all).
pub fn parse(stderr: &str) -> Option<Vec<Failure>> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        match parse_line(line) {
            Line::Failed(f) => out.push(f),
            Line::Harmless => {}
            Line::Unknown => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One line: see the module doc for the forms known.
pub fn parse_line(line: &str) -> Line {
    let line = line.trim_end();
    let harmless = [
        "rsync error: some files/attrs were not transferred",
        "rsync error: some files vanished before they could be transferred",
        "*** Skipping any contents from this failed directory ***",
        "file has vanished: ",
    ];
    if line.trim().is_empty() || harmless.iter().any(|h| line.starts_with(h)) {
        return Line::Harmless;
    }
    let Some(rest) = line.strip_prefix("rsync: ") else {
        return Line::Unknown;
    };
    let (role, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((role, rest)) => (role, rest),
        None => ("", rest),
    };
    let failed = |side, path: &str, below_too, what, error: &str| {
        Line::Failed(Failure {
            side,
            path: unescape(path),
            below_too,
            what,
            error: error.to_string(),
        })
    };
    match role {
        "sender" => {
            if let Some(r) = rest.strip_prefix("send_files failed to open \"") {
                if let Some((path, error)) = r.rsplit_once("\": ") {
                    return failed(
                        Side::Source,
                        path,
                        false,
                        "cannot be read on the source",
                        error,
                    );
                }
            }
            Line::Unknown
        }
        "receiver" => {
            if let Some(r) = rest.strip_prefix("mkstemp \"") {
                if let Some((path, error)) = quoted_then(r, " failed: ") {
                    return match real_name(path) {
                        Some(p) => Line::Failed(Failure {
                            side: Side::Target,
                            path: p,
                            below_too: false,
                            what: "the target cannot create it",
                            error: error.to_string(),
                        }),
                        None => Line::Unknown,
                    };
                }
            }
            if let Some(r) = rest.strip_prefix("rename \"") {
                // rename "TMP"[ (in mod)] -> "NAME": error
                if let Some((_, r)) = r.split_once("\" -> \"").or_else(|| r.split_once(") -> \"")) {
                    if let Some((path, error)) = r.rsplit_once("\": ") {
                        return failed(
                            Side::Target,
                            path,
                            false,
                            "the target cannot put it in place",
                            error,
                        );
                    }
                }
            }
            Line::Unknown
        }
        "generator" => {
            if let Some(r) = rest.strip_prefix("recv_generator: mkdir \"") {
                if let Some((path, error)) = quoted_then(r, " failed: ") {
                    return failed(
                        Side::Target,
                        path,
                        true,
                        "the target cannot create the directory",
                        error,
                    );
                }
            }
            for (prefix, what) in [
                (
                    "failed to set times on \"",
                    "the target cannot set its times",
                ),
                (
                    "failed to set permissions on \"",
                    "the target cannot set its permissions",
                ),
            ] {
                if let Some(r) = rest.strip_prefix(prefix) {
                    if let Some((path, error)) = quoted_then(r, ": ") {
                        return failed(Side::Target, path, false, what, error);
                    }
                }
            }
            for call in ["unlink(", "rmdir("] {
                if let Some(r) = rest
                    .strip_prefix("delete_file: ")
                    .and_then(|r| r.strip_prefix(call))
                {
                    if let Some((path, error)) = r.rsplit_once(") failed: ") {
                        return failed(
                            Side::Target,
                            path,
                            false,
                            "the target cannot delete it",
                            error,
                        );
                    }
                }
            }
            Line::Unknown
        }
        _ => Line::Unknown,
    }
}

/// `PATH"[ (in MODULE)]SEP ERROR` → (PATH, ERROR): the closing quote is the last one
/// followed by the separator (or by ` (in `).
fn quoted_then<'a>(r: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let (head, error) = r.rsplit_once(sep)?;
    let path = match head.rsplit_once("\" (in ") {
        Some((path, module)) if module.ends_with(')') && !module.contains('"') => path,
        _ => head.strip_suffix('"')?,
    };
    Some((path, error))
}

/// The file a temporary name stands for: `dir/.NAME.XXXXXX` → `dir/NAME`. None when the
/// name is not of that form (a long name rsync shortened, a `--temp-dir`).
fn real_name(tmp: &str) -> Option<Vec<u8>> {
    let (dir, base) = match tmp.rsplit_once('/') {
        Some((d, b)) => (Some(d), b),
        None => (None, tmp),
    };
    let base = base.strip_prefix('.')?;
    let (name, suffix) = base.rsplit_once('.')?;
    if name.is_empty() || suffix.len() != 6 {
        return None;
    }
    let mut out = Vec::new();
    if let Some(d) = dir {
        out.extend(unescape(d));
        out.push(b'/');
    }
    out.extend(unescape(name));
    Some(out)
}

/// Undo rsync's escaping of unprintable bytes in names (`\#ooo`, octal; a backslash
/// that would read as one is itself escaped, `\#134`). Also for itemized output
/// ([`crate::verify::itemize`]).
pub fn unescape(s: impl AsRef<[u8]>) -> Vec<u8> {
    let b = s.as_ref();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'#') && b.len() >= i + 5 {
            let digits = &b[i + 2..i + 5];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 5;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Where the printed paths are rooted, to make them relative to the source root.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// The source directory (absolute, as rsync was given it).
    pub source: Vec<u8>,
    /// The destination directory when the receiver prints absolute paths (a local
    /// target, an ssh target with an absolute path, `/sub` for a daemon destination
    /// `mod/sub`); None for a daemon module itself.
    pub dest: Option<Vec<u8>>,
}

/// The path of `f` relative to the source root (= to the destination), or None when it
/// lies outside or cannot be told.
pub fn relative(f: &Failure, roots: &Roots) -> Option<RelPath> {
    let root = match f.side {
        Side::Source => Some(&roots.source),
        Side::Target => roots.dest.as_ref(),
    };
    let rel: &[u8] = if f.path.first() == Some(&b'/') {
        strip_dir(&f.path, root?)?
    } else if f.side == Side::Source {
        return None;
    } else {
        &f.path
    };
    let mut rel = rel;
    while let Some(r) = rel.strip_prefix(b"./") {
        rel = r;
    }
    while let Some(r) = rel.strip_suffix(b"/") {
        rel = r;
    }
    let bad = rel.is_empty()
        || rel.starts_with(b"/")
        || rel
            .split(|b| *b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..");
    (!bad).then(|| rel.to_vec())
}

/// `path` below `dir` (with or without its trailing slash), without the `dir/` part.
fn strip_dir<'a>(path: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    let mut dir = dir;
    while let Some(d) = dir.strip_suffix(b"/") {
        dir = d;
    }
    path.strip_prefix(dir)?.strip_prefix(b"/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line as rsync 3.5.0 printed it, side, path, below_too, what) — None: not a failure.
    type Row = (
        &'static str,
        Option<(Side, &'static str, bool, &'static str)>,
    );

    #[test]
    fn real_lines() {
        use Side::*;
        let rows: &[Row] = &[
            (
                "rsync: [sender] send_files failed to open \"/tmp/hx/src/a/b.txt\": Permission denied (13)",
                Some((Source, "/tmp/hx/src/a/b.txt", false, "cannot be read on the source")),
            ),
            (
                // A quote inside the name is printed as it is.
                "rsync: [sender] send_files failed to open \"/tmp/hx/src/sp/we ird\"q.txt\": Permission denied (13)",
                Some((Source, "/tmp/hx/src/sp/we ird\"q.txt", false, "cannot be read on the source")),
            ),
            (
                // Listed as ./#hash, printed cleaned.
                "rsync: [sender] send_files failed to open \"/tmp/hx/src/#hash\": Permission denied (13)",
                Some((Source, "/tmp/hx/src/#hash", false, "cannot be read on the source")),
            ),
            (
                "rsync: [receiver] mkstemp \"imm/.f2.ArriHF\" (in mod) failed: Operation not permitted (1)",
                Some((Target, "imm/f2", false, "the target cannot create it")),
            ),
            (
                "rsync: [receiver] mkstemp \"/tmp/hx/dst/imm/.f.IgmPev\" failed: Operation not permitted (1)",
                Some((Target, "/tmp/hx/dst/imm/f", false, "the target cannot create it")),
            ),
            (
                "rsync: [receiver] mkstemp \".top.txt.Ab12Cd\" (in mod) failed: Permission denied (13)",
                Some((Target, "top.txt", false, "the target cannot create it")),
            ),
            (
                // A daemon destination below the module (`mod/sub/`).
                "rsync: [receiver] mkstemp \"/sub/imm/.f.FtTVnW\" (in mod) failed: Operation not permitted (1)",
                Some((Target, "/sub/imm/f", false, "the target cannot create it")),
            ),
            (
                "rsync: [receiver] rename \"/sub/imm/.f.Hhvh5n\" (in mod) -> \"imm/f\": Operation not permitted (1)",
                Some((Target, "imm/f", false, "the target cannot put it in place")),
            ),
            (
                "rsync: [receiver] rename \"imm/.f.eMhl4x\" (in mod) -> \"imm/f\": Operation not permitted (1)",
                Some((Target, "imm/f", false, "the target cannot put it in place")),
            ),
            (
                "rsync: [receiver] rename \"/tmp/hx/dst/imm/.f.I71dgo\" -> \"imm/f\": Operation not permitted (1)",
                Some((Target, "imm/f", false, "the target cannot put it in place")),
            ),
            (
                "rsync: [generator] recv_generator: mkdir \"imm/newsub\" (in mod) failed: Operation not permitted (1)",
                Some((Target, "imm/newsub", true, "the target cannot create the directory")),
            ),
            (
                "rsync: [generator] recv_generator: mkdir \"/tmp/hx/dst/imm/newsub\" failed: Operation not permitted (1)",
                Some((Target, "/tmp/hx/dst/imm/newsub", true, "the target cannot create the directory")),
            ),
            (
                "rsync: [generator] failed to set times on \"imm\" (in mod): Operation not permitted (1)",
                Some((Target, "imm", false, "the target cannot set its times")),
            ),
            (
                "rsync: [generator] failed to set times on \"/tmp/hx/dst/imm\": Operation not permitted (1)",
                Some((Target, "/tmp/hx/dst/imm", false, "the target cannot set its times")),
            ),
            (
                "rsync: [generator] delete_file: unlink(imm/del) failed: Operation not permitted (1)",
                Some((Target, "imm/del", false, "the target cannot delete it")),
            ),
            (
                "rsync: [receiver] mkstemp \"a/.\\#012nl.Xy12Zq\" (in mod) failed: Permission denied (13)",
                Some((Target, "a/\nnl", false, "the target cannot create it")),
            ),
        ];
        for (line, want) in rows {
            let got = parse_line(line);
            match (want, &got) {
                (Some((side, path, below, what)), Line::Failed(f)) => {
                    assert_eq!(f.side, *side, "{line}");
                    assert_eq!(String::from_utf8_lossy(&f.path), *path, "{line}");
                    assert_eq!(f.below_too, *below, "{line}");
                    assert_eq!(f.what, *what, "{line}");
                    assert!(f.error.ends_with(')'), "{line}: {:?}", f.error);
                }
                _ => panic!("{line}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn lines_that_name_no_failure_or_cannot_be_split() {
        let rows: &[(&str, Line)] = &[
            ("rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]", Line::Harmless),
            ("*** Skipping any contents from this failed directory ***", Line::Harmless),
            ("file has vanished: \"/tmp/hx/src/tmp.1\"", Line::Harmless),
            ("", Line::Harmless),
            // A read error while building the file list: deletions were skipped.
            ("rsync: [sender] opendir \"/tmp/hx/src/t/locked\" failed: Permission denied (13)", Line::Unknown),
            ("rsync: [sender] link_stat \"/tmp/hx/src/x\" failed: No such file or directory (2)", Line::Unknown),
            ("rsync: [sender] read errors mapping \"/d/bad\": Input/output error (5)", Line::Unknown),
            ("IO error encountered -- skipping file deletion", Line::Unknown),
            // The daemon's module directory is gone (exit 3/5 — never split).
            ("rsync: [Receiver] change_dir#3 \"/srv/gone\" (in mod) failed: No such file or directory (2)", Line::Unknown),
            ("@ERROR: chdir failed", Line::Unknown),
            ("rsync: [receiver] write failed on \"a/b\" (in mod): No space left on device (28)", Line::Unknown),
            // A shortened temporary name cannot be told back.
            ("rsync: [receiver] mkstemp \"a/.b\" (in mod) failed: Permission denied (13)", Line::Unknown),
            ("something else entirely", Line::Unknown),
        ];
        for (line, want) in rows {
            assert_eq!(&parse_line(line), want, "{line}");
        }
    }

    #[test]
    fn a_run_is_split_only_when_every_line_is_understood() {
        let ok = "rsync: [sender] send_files failed to open \"/s/a\": Permission denied (13)\n\
                  rsync: [receiver] mkstemp \"b/.c.AbCdEf\" (in mod) failed: Permission denied (13)\n\
                  rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]\n";
        let got = parse(ok).expect("every line understood");
        assert_eq!(got.len(), 2);
        let unknown =
            format!("{ok}rsync: [sender] opendir \"/s/d\" failed: Permission denied (13)\n");
        assert_eq!(parse(&unknown), None);
        assert_eq!(
            parse("rsync error: some files/attrs were not transferred (code 23)\n"),
            None
        );
        assert_eq!(parse(""), None);
    }

    #[test]
    fn paths_relative_to_the_source_root() {
        let daemon = Roots {
            source: b"/data/".to_vec(),
            dest: None,
        };
        let daemon_sub = Roots {
            source: b"/data".to_vec(),
            dest: Some(b"/sub/dir".to_vec()),
        };
        let local = Roots {
            source: b"/data".to_vec(),
            dest: Some(b"/backup/".to_vec()),
        };
        let f = |side, path: &str| Failure {
            side,
            path: path.as_bytes().to_vec(),
            below_too: false,
            what: "",
            error: String::new(),
        };
        use Side::*;
        let rows: &[(&Roots, Failure, Option<&str>)] = &[
            (&daemon, f(Source, "/data/a/b.txt"), Some("a/b.txt")),
            (&daemon, f(Source, "/data/#hash"), Some("#hash")),
            (&daemon, f(Source, "/data/./#hash"), Some("#hash")),
            (&daemon, f(Source, "/database/x"), None),
            (&daemon, f(Source, "/other/x"), None),
            (&daemon, f(Source, "a/b"), None),
            (&daemon, f(Target, "a/b.txt"), Some("a/b.txt")),
            (&daemon, f(Target, "/backup/a"), None),
            (&daemon, f(Target, "../etc/x"), None),
            (&daemon_sub, f(Target, "/sub/dir/a/b.txt"), Some("a/b.txt")),
            (&daemon_sub, f(Target, "a/b.txt"), Some("a/b.txt")),
            (&daemon_sub, f(Target, "/sub/a/b.txt"), None),
            (&local, f(Target, "/backup/a/b.txt"), Some("a/b.txt")),
            (&local, f(Target, "a/b.txt"), Some("a/b.txt")),
            (&local, f(Target, "/backupx/a"), None),
            (&local, f(Target, "/backup/"), None),
        ];
        for (roots, fail, want) in rows {
            let got = relative(fail, roots).map(|p| String::from_utf8_lossy(&p).into_owned());
            assert_eq!(got.as_deref(), *want, "{fail:?} in {roots:?}");
        }
    }
}
