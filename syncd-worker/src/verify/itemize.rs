//! Reading rsync's itemized changes (`--out-format=%i %n`, rsync 3.x) into drift: what a
//! dry run (`-n --delete`) would send or delete. Pure: bytes in, counts and paths out; no
//! I/O, no clock.
//!
//! One line per entry: an 11-character change string `YXcstpoguax`, a space, the name
//! relative to the transfer root (a directory's with a trailing `/`). The name format is
//! `%n` alone, never `%L`: `%L` appends ` -> target` to a symlink and ` => other` to a
//! hard link, which a name holding ` -> ` would make ambiguous.
//!
//! Names with newlines or any other byte: rsync escapes every byte it will not print
//! (control characters such as a newline, and non-ASCII bytes without `-8`) as `\#ooo`
//! (three octal digits), and a backslash that would read as such an escape as `\#134`;
//! so one line is always one entry and [`unescape`] (shared with
//! [`crate::rsync::failures`]) gives back the exact bytes. A NUL
//! separated output is not needed (rsync's `--from0`/`-0` only affects lists it reads).
//!
//! What a line means (with `-n` the `>` lines mean "would send"):
//! * `*deleting   name` → **extra** on the target.
//! * every attribute `+` (`>f+++++++++`, `cd+++++++++`, `cL+++++++++`, `hf+++++++++`) →
//!   **missing** on the target.
//! * any other change to a file, symlink, device or special file (`>f.st......`,
//!   `>fc........` with `--checksum`, `.f...p.....`, `cL.......` for a symlink pointing
//!   elsewhere) → **different**.
//! * a directory that exists on both sides: **different** when its permissions, owner,
//!   group, ACL or xattrs differ; a directory whose only difference is its
//!   modification time (`.d..t......`) is not drift — the data below it is compared
//!   entry by entry, and a directory's mtime on the target is the time its last entry
//!   was written there whenever a push changed it without sending the directory itself.
//! * an entry with no change at all (`.f         `, only printed at higher verbosity)
//!   and every line that is not an itemized entry (`sending incremental file list`,
//!   `--stats` output, `-v` summaries) → ignored; the last of those are kept for
//!   [`Itemizer::other_lines`] (the `--stats` block).

use crate::batch::RelPath;
use crate::rsync::failures::unescape;

/// The kind of difference one itemized line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In the source, not on the target.
    Missing,
    /// On both sides, not the same.
    Different,
    /// On the target, not in the source.
    Extra,
}

/// One itemized entry that is drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    /// Relative to the transfer root, unescaped, without the trailing `/` of a directory.
    pub path: RelPath,
    pub dir: bool,
}

/// How many of one kind, and the first of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub count: u64,
    /// The first paths in rsync's order (at most the [`Itemizer`]'s `keep`).
    pub paths: Vec<RelPath>,
}

impl Found {
    /// Every one of `names`, counted (tables and tests).
    pub fn listing(names: &[&str]) -> Found {
        Found {
            count: names.len() as u64,
            paths: names.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }
}

/// Every kind, in report order.
pub const KINDS: [Kind; 3] = [Kind::Missing, Kind::Different, Kind::Extra];

/// Drift found by one dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub missing: Found,
    pub different: Found,
    pub extra: Found,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.count == 0 && self.different.count == 0 && self.extra.count == 0
    }

    pub fn total(&self) -> u64 {
        self.missing.count + self.different.count + self.extra.count
    }

    pub fn get(&self, kind: Kind) -> &Found {
        match kind {
            Kind::Missing => &self.missing,
            Kind::Different => &self.different,
            Kind::Extra => &self.extra,
        }
    }

    pub fn of(&mut self, kind: Kind) -> &mut Found {
        match kind {
            Kind::Missing => &mut self.missing,
            Kind::Different => &mut self.different,
            Kind::Extra => &mut self.extra,
        }
    }

    /// Every path kept, of every kind.
    pub fn all_paths(&self) -> impl Iterator<Item = &RelPath> {
        self.missing
            .paths
            .iter()
            .chain(&self.different.paths)
            .chain(&self.extra.paths)
    }
}

/// How many non-item lines are kept (enough for rsync's `--stats` block and summary).
const OTHER_KEEP: usize = 40;

/// A streaming reader of rsync's stdout: feed it chunks as they come (they need not end
/// on a line), then [`Itemizer::finish`].
#[derive(Debug)]
pub struct Itemizer {
    keep: usize,
    partial: Vec<u8>,
    drift: Drift,
    /// Items seen so far (drift or not): a progress figure.
    pub seen: u64,
    other: std::collections::VecDeque<String>,
}

impl Itemizer {
    /// Keep at most `keep` paths of each kind (`usize::MAX`: every path, for `--fix`).
    pub fn new(keep: usize) -> Itemizer {
        Itemizer {
            keep,
            partial: Vec::new(),
            drift: Drift::default(),
            seen: 0,
            other: std::collections::VecDeque::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line = self.partial[start..start + nl].to_vec();
            self.line(&line);
            start += nl + 1;
        }
        self.partial.drain(..start);
    }

    /// The drift, once rsync's stdout has ended, and the last other lines.
    pub fn finish(self) -> (Drift, Vec<String>) {
        let (drift, other, _) = self.finish_counted();
        (drift, other)
    }

    /// [`Itemizer::finish`], and how many itemized entries there were (drift or not).
    pub fn finish_counted(mut self) -> (Drift, Vec<String>, u64) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest);
        }
        (self.drift, self.other.into_iter().collect(), self.seen)
    }

    /// The drift counted so far.
    pub fn so_far(&self) -> &Drift {
        &self.drift
    }

    fn line(&mut self, line: &[u8]) {
        match parse_line(line) {
            Some(Some(item)) => {
                self.seen += 1;
                let keep = self.keep;
                let found = self.drift.of(item.kind);
                found.count += 1;
                if found.paths.len() < keep {
                    found.paths.push(item.path);
                }
            }
            Some(None) => self.seen += 1,
            None => {
                if self.other.len() == OTHER_KEEP {
                    self.other.pop_front();
                }
                self.other
                    .push_back(String::from_utf8_lossy(line).into_owned());
            }
        }
    }
}

/// One line of `--out-format=%i %n` output: None when it is not an itemized entry,
/// Some(None) for an entry that is not drift, Some(Some(item)) for drift.
pub fn parse_line(line: &[u8]) -> Option<Option<Item>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < 13 || line[11] != b' ' {
        return None;
    }
    let (code, name) = (&line[..11], &line[12..]);
    if name.is_empty() {
        return None;
    }
    let (path, dir) = match name.strip_suffix(b"/") {
        Some(p) => (unescape(p), true),
        None => (unescape(name), false),
    };
    if path.is_empty() {
        // `./`: the transfer root itself (attributes of the root directory).
        return Some(None);
    }
    if code == b"*deleting  " {
        return Some(Some(Item {
            kind: Kind::Extra,
            path,
            dir,
        }));
    }
    let (y, x, attrs) = (code[0], code[1], &code[2..]);
    if !b"<>ch.".contains(&y) || !b"fdLDS".contains(&x) {
        return None;
    }
    if !attrs
        .iter()
        .all(|a| a.is_ascii_alphabetic() || b".+ ?".contains(a))
    {
        return None;
    }
    let unchanged = attrs.iter().all(|a| *a == b'.' || *a == b' ');
    let kind = if attrs.iter().all(|a| *a == b'+') {
        Kind::Missing
    } else if y == b'.' && (unchanged || (x == b'd' && only_time(attrs))) {
        return Some(None);
    } else {
        Kind::Different
    };
    Some(Some(Item {
        kind,
        path,
        dir: x == b'd' || dir,
    }))
}

/// Only the modification time (`t`/`T`) differs.
fn only_time(attrs: &[u8]) -> bool {
    attrs
        .iter()
        .enumerate()
        .all(|(i, a)| matches!(a, b'.' | b' ') || (i == 2 && matches!(a, b't' | b'T')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind, path: &[u8], dir: bool) -> Option<Option<Item>> {
        Some(Some(Item {
            kind,
            path: path.to_vec(),
            dir,
        }))
    }

    /// Lines as rsync 3.5.0 prints them (`-a -n --delete --out-format='%i %n'`, with and
    /// without `-c`), and what each means.
    #[test]
    fn line_table() {
        use Kind::*;
        let cases: Vec<(&[u8], Option<Option<Item>>)> = vec![
            (b">f+++++++++ new.txt", item(Missing, b"new.txt", false)),
            (
                b">f+++++++++ with space",
                item(Missing, b"with space", false),
            ),
            (
                b">f+++++++++ new\\#012line",
                item(Missing, b"new\nline", false),
            ),
            (
                b">f+++++++++ a\\#134#012b",
                item(Missing, b"a\\#012b", false),
            ),
            (
                b">f+++++++++ back\\#slash",
                item(Missing, b"back\\#slash", false),
            ),
            (
                b">f+++++++++ caf\\#303\\#251",
                item(Missing, "café".as_bytes(), false),
            ),
            (b"cd+++++++++ newdir/", item(Missing, b"newdir", true)),
            (
                b"cd+++++++++ newdir/sub/",
                item(Missing, b"newdir/sub", true),
            ),
            (b"cL+++++++++ link", item(Missing, b"link", false)),
            (b"hf+++++++++ hardlink", item(Missing, b"hardlink", false)),
            (b"cS+++++++++ fifo", item(Missing, b"fifo", false)),
            (b">f.st...... dir/f", item(Different, b"dir/f", false)),
            (b">f.s....... dir/f", item(Different, b"dir/f", false)),
            (b">fc........ samesize", item(Different, b"samesize", false)),
            (b">fcs....... dir/f", item(Different, b"dir/f", false)),
            (b".f...p..... mode", item(Different, b"mode", false)),
            (b"cL.......... link", None), // 12-char code: not rsync's shape
            (b"cL..T...... link", item(Different, b"link", false)),
            (b"cLc.T...... link", item(Different, b"link", false)),
            (b".d...p..... dir/", item(Different, b"dir", true)),
            (b".d....o.... dir/", item(Different, b"dir", true)),
            (b".d..t...... dir/", Some(None)),
            (b".d..T...... dir/", Some(None)),
            (b".f          same", Some(None)),
            (b".d..t...... ./", Some(None)),
            (b"*deleting   extra", item(Extra, b"extra", false)),
            (b"*deleting   gone/deep/", item(Extra, b"gone/deep", true)),
            (
                b"*deleting   two  spaces",
                item(Extra, b"two  spaces", false),
            ),
            (b"sending incremental file list", None),
            (b"Number of files: 13 (reg: 8, dir: 4, link: 1)", None),
            (b"sent 356 bytes  received 99 bytes  910.00 bytes/sec", None),
            (b"total size is 22  speedup is 0.05 (DRY RUN)", None),
            (b"created directory /x", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_line(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn counts_keep_the_first_paths_and_lines_may_arrive_in_pieces() {
        let out = b"sending incremental file list\n*deleting   gone/x\n*deleting   gone/\n\
            >f+++++++++ a\n>f+++++++++ b\n>f+++++++++ c\n>f.st...... d\n.d..t...... dir/\n\
            \nNumber of files: 4 (reg: 3, dir: 1)\nNumber of deleted files: 2\n";
        for cut in [1usize, 3, 7, out.len()] {
            let mut it = Itemizer::new(2);
            for chunk in out.chunks(cut) {
                it.feed(chunk);
            }
            assert_eq!(it.seen, 7);
            let (drift, other) = it.finish();
            assert_eq!(drift.missing.count, 3);
            assert_eq!(drift.missing.paths, vec![b"a".to_vec(), b"b".to_vec()]);
            assert_eq!(drift.different.count, 1);
            assert_eq!(drift.extra.count, 2);
            assert_eq!(
                drift.extra.paths,
                vec![b"gone/x".to_vec(), b"gone".to_vec()]
            );
            assert_eq!(drift.total(), 6);
            assert!(
                other.iter().any(|l| l == "Number of deleted files: 2"),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        let mut it = Itemizer::new(10);
        it.feed(b">f+++++++++ a");
        assert_eq!(it.finish().0.missing.count, 1);
    }

    #[test]
    fn nothing_is_no_drift() {
        let (drift, _) = Itemizer::new(10).finish();
        assert!(drift.is_empty());
    }
}
