//! The fail log: the paths one target still owes after failed pushes, kept on disk as
//! data so they survive a restart and are retried. One file per (sync, target) under
//! `<state_dir>/faillog/` (mode 0700), replaced durably (mode 0600, [`crate::durable`]).
//! A file that cannot be read back (torn or emptied by a power cut) is set aside and read
//! as a whole-tree push: it never stops a start.
//!
//! It is never a script and never executed (sersync's fail log is a world-writable shell
//! script run as root). This module owns the file format and nothing else: it does not
//! decide when to retry, and it never touches the synced trees.
//!
//! Format, binary-safe because paths are bytes and may hold newlines:
//!
//! ```text
//! syncd-faillog v1 sync="web" target="backup"\n
//! full\0
//! p <path>\0
//! t <path>\0
//! ```
//!
//! The first line names the format version and, for people, the sync and target (as
//! quoted strings). Then NUL-terminated records: `p` a path pushed as it is, `t` a
//! directory pushed whole, `full` a whole-tree push. Linux paths cannot hold NUL.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::batch::{Batch, RelPath};
use crate::durable::{self, Flush};
use crate::state_dir::StateDir;

/// The first word of the header line, and the version this code writes and reads.
const MAGIC: &str = "syncd-faillog";
const VERSION: &str = "v1";
/// Longest sanitized name part kept in a file name (the hash keeps names distinct).
const MAX_NAME_PART: usize = 80;

/// The fail log file of one (sync, target) pair.
#[derive(Debug, Clone)]
pub struct FailLog {
    path: PathBuf,
    header: String,
}

impl FailLog {
    /// Prepare the fail log of `sync` → `target`: creates `<state_dir>/faillog/` (mode
    /// 0700, [`StateDir::ensure_faillog_dir`]) if needed and removes the temp files a
    /// killed write of this fail log left (the caller holds the state directory's lock:
    /// no other writer). Does not read or create the file itself.
    pub fn open(state_dir: &Path, sync: &str, target: &str) -> anyhow::Result<FailLog> {
        let dir = StateDir::at(state_dir).ensure_faillog_dir()?;
        let path = dir.join(file_name(sync, target));
        durable::remove_leftover_temps(&path);
        Ok(FailLog {
            path,
            header: format!("{MAGIC} {VERSION} sync={sync:?} target={target:?}\n"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the pending work. A missing file is an empty batch. A file that cannot be
    /// read or decoded (torn or emptied by a power cut, written by another version) never
    /// stops a start: it is set aside (`<file>.corrupt-<unix time>`), a warning says so,
    /// and the answer is a whole-tree push, which covers whatever it held. That push is
    /// saved as the new fail log at once: the debt must survive another crash (a
    /// catch-up walk would not find what the damaged file held).
    pub fn load(&self) -> Batch {
        let why = match fs::read(&self.path) {
            Ok(data) => match decode(&data, &self.header) {
                Ok(batch) => return batch,
                Err(why) => format!("is damaged: {why}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Batch::default(),
            Err(e) => format!("cannot be read: {e}"),
        };
        let moved = match durable::set_aside(&self.path) {
            Ok(aside) => format!("moved it to {}", aside.display()),
            Err(e) => format!("could not move it aside ({e}); the next save replaces it"),
        };
        log::warn!(
            "fail log {} {why}; {moved}. syncd pushes the whole tree to this target instead \
             of the paths it held",
            self.path.display()
        );
        if let Err(e) = self.save(&Batch::full()) {
            log::error!("{e:#}; the whole-tree push owed is only in memory");
        }
        Batch::full()
    }

    /// Replace the file with `pending` (atomic, mode 0600). An empty batch removes it.
    pub fn save(&self, pending: &Batch) -> anyhow::Result<()> {
        if pending.is_empty() {
            return match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e)
                    .with_context(|| format!("failed to remove fail log {}", self.path.display())),
            };
        }
        let data = encode(pending, &self.header);
        durable::replace(&self.path, &data, 0o600, Flush::Durable)
            .with_context(|| format!("failed to save fail log {}", self.path.display()))
    }
}

/// `<sync>__<target>.<hash>.faillog`, names reduced to `[A-Za-z0-9._-]`, the hash taken
/// over the raw names so that names which sanitize alike still get different files.
fn file_name(sync: &str, target: &str) -> String {
    let mut raw = Vec::with_capacity(sync.len() + target.len() + 1);
    raw.extend_from_slice(sync.as_bytes());
    raw.push(0);
    raw.extend_from_slice(target.as_bytes());
    let hash = fnv1a64(&raw) >> 16; // 48 bits, 12 hex digits
    format!(
        "{}__{}.{hash:012x}.faillog",
        sanitize(sync),
        sanitize(target)
    )
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_PART)
        .collect()
}

/// FNV-1a, 64 bits: tiny and, unlike `DefaultHasher`, stable across Rust releases.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode(batch: &Batch, header: &str) -> Vec<u8> {
    let mut out = header.as_bytes().to_vec();
    if batch.full {
        out.extend_from_slice(b"full\0");
    }
    for (tag, list) in [(b'p', &batch.paths), (b't', &batch.trees)] {
        for path in list {
            out.push(tag);
            out.push(b' ');
            out.extend_from_slice(path);
            out.push(0);
        }
    }
    out
}

/// Parse a fail log; the error says what is wrong where (the caller adds the file name).
fn decode(data: &[u8], header: &str) -> Result<Batch, String> {
    let nl = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("it has no header line")?;
    let first = String::from_utf8_lossy(&data[..nl]);
    let mut words = first.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(format!(
            "the header line {first:?} does not start with {MAGIC:?}"
        ));
    }
    let version = words.next().unwrap_or("");
    if version != VERSION {
        return Err(format!(
            "format version {version:?} is not {VERSION:?} (written by another syncd version?)"
        ));
    }
    if first != header.trim_end_matches('\n') {
        return Err(format!(
            "the header {first:?} names another sync or target than {:?}",
            header.trim_end_matches('\n')
        ));
    }

    let mut batch = Batch::default();
    let mut rest = &data[nl + 1..];
    let mut offset = nl + 1;
    let mut index = 0usize;
    while !rest.is_empty() {
        index += 1;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            format!("record {index} at byte {offset} is cut short (no NUL terminator)")
        })?;
        let record = &rest[..end];
        let bad = || {
            let shown = String::from_utf8_lossy(&record[..record.len().min(60)]).into_owned();
            format!("record {index} at byte {offset} ({shown:?}) is not `full`, `p <path>` or `t <path>`")
        };
        match record {
            b"full" => batch.full = true,
            [tag @ (b'p' | b't'), b' ', path @ ..] if valid_rel(path) => {
                let list = if *tag == b'p' {
                    &mut batch.paths
                } else {
                    &mut batch.trees
                };
                list.push(path.to_vec());
            }
            _ => return Err(bad()),
        }
        rest = &rest[end + 1..];
        offset += end + 1;
    }
    normalize(&mut batch);
    Ok(batch)
}

/// A relative path as `Batch` holds it: not empty, no leading or trailing `/`.
fn valid_rel(path: &[u8]) -> bool {
    !path.is_empty() && path[0] != b'/' && path[path.len() - 1] != b'/'
}

/// Restore `Batch`'s invariants whatever the file held: a full push covers everything,
/// lists sorted without duplicates, no path below a tree.
fn normalize(batch: &mut Batch) {
    if batch.full {
        batch.paths.clear();
        batch.trees.clear();
        return;
    }
    batch.trees.sort();
    batch.trees.dedup();
    let trees = std::mem::take(&mut batch.trees);
    let mut kept: Vec<RelPath> = Vec::with_capacity(trees.len());
    for t in trees {
        if !kept.iter().any(|k| is_below(&t, k)) {
            kept.push(t);
        }
    }
    batch.trees = kept;
    batch.paths.sort();
    batch.paths.dedup();
    let trees = &batch.trees;
    batch
        .paths
        .retain(|p| !trees.iter().any(|t| is_below(p, t)));
}

/// Is `path` strictly below directory `dir`?
fn is_below(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn round_trip_hard_names_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let log = FailLog::open(dir.path(), "web", "backup").unwrap();
        assert_eq!(log.load(), Batch::default(), "missing file is empty");
        let batch = Batch {
            full: false,
            periodic: false,
            paths: vec![
                b"a b/new\nline.txt".to_vec(),
                b"latin1-\xe9\xff".to_vec(),
                b"p x".to_vec(),
                b"zz/full".to_vec(),
            ],
            trees: vec![b"dir\nwith newline".to_vec(), b"t".to_vec()],
            moves: Vec::new(),
        };
        log.save(&batch).unwrap();
        assert_eq!(log.load(), batch);
        assert_eq!(mode(log.path()), 0o600);
        assert_eq!(mode(&StateDir::at(dir.path()).faillog_dir()), 0o700);
        let data = fs::read(log.path()).unwrap();
        assert!(data.starts_with(b"syncd-faillog v1 sync=\"web\" target=\"backup\"\n"));

        log.save(&Batch::full()).unwrap();
        assert_eq!(log.load(), Batch::full());
    }

    #[test]
    fn empty_batch_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = FailLog::open(dir.path(), "s", "t").unwrap();
        log.save(&Batch::full()).unwrap();
        assert!(log.path().exists());
        log.save(&Batch::default()).unwrap();
        assert!(!log.path().exists());
        log.save(&Batch::default()).unwrap(); // already gone: fine
    }

    #[test]
    fn existing_wide_directory_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let fl = StateDir::at(dir.path()).faillog_dir();
        fs::create_dir(&fl).unwrap();
        fs::set_permissions(&fl, fs::Permissions::from_mode(0o777)).unwrap();
        FailLog::open(dir.path(), "s", "t").unwrap();
        assert_eq!(mode(&fl), 0o700);
    }

    #[test]
    fn file_names_are_sanitized_and_distinct() {
        let a = file_name("web/site", "bk 1");
        assert!(a.starts_with("web_site__bk_1."), "{a}");
        assert!(a.ends_with(".faillog"));
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        // Same sanitized form, different raw names: different files.
        assert_ne!(a, file_name("web_site", "bk 1"));
        assert_ne!(file_name("a", "b__c"), file_name("a__b", "c"));
        // Stable: the same names always give the same file.
        assert_eq!(a, file_name("web/site", "bk 1"));
        assert!(file_name(&"x".repeat(300), &"y".repeat(300)).len() < 255);
    }

    #[test]
    fn damaged_files_are_set_aside_and_answered_by_a_full_push() {
        let head = "syncd-faillog v1 sync=\"web\" target=\"backup\"\n";
        let cases: &[&[u8]] = &[
            b"",                                  // zero length: power cut after rename
            b"syncd-faillog v1 sync=\"web\" tar", // torn header
            b"#!/bin/sh\nrsync ...\n",
            b"syncd-faillog v9 sync=\"web\" target=\"backup\"\n",
            b"syncd-faillog v1 sync=\"other\" target=\"backup\"\n",
            b"HEADp ok\0x what\0",
            b"HEADp ok\0p \0",
            b"HEADp /abs\0",
            b"HEADp cu", // torn record
        ];
        for body in cases {
            let dir = tempfile::tempdir().unwrap();
            let log = FailLog::open(dir.path(), "web", "backup").unwrap();
            let data = match body.strip_prefix(b"HEAD") {
                Some(rest) => [head.as_bytes(), rest].concat(),
                None => body.to_vec(),
            };
            fs::write(log.path(), &data).unwrap();
            assert_eq!(log.load(), Batch::full(), "{body:?}");
            let aside: Vec<PathBuf> = fs::read_dir(StateDir::at(dir.path()).faillog_dir())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p != log.path())
                .collect();
            assert_eq!(aside.len(), 1, "{aside:?}");
            let name = aside[0].file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.contains(".faillog.corrupt-"), "{name}");
            assert_eq!(fs::read(&aside[0]).unwrap(), data, "kept as it was");
            // The whole-tree push owed is on disk at once, readable.
            assert!(log.path().exists(), "{body:?}");
            assert_eq!(log.load(), Batch::full());
            assert_eq!(
                fs::read_dir(StateDir::at(dir.path()).faillog_dir())
                    .unwrap()
                    .count(),
                2
            );
        }
    }

    #[test]
    fn decode_says_what_is_wrong_where() {
        let head = "syncd-faillog v1 sync=\"web\" target=\"backup\"\n";
        let cases: &[(&[u8], &str)] = &[
            (b"", "no header line"),
            (b"#!/bin/sh\nrsync ...\n", "does not start with"),
            (b"syncd-faillog v9 x\n", "format version"),
            (
                b"syncd-faillog v1 sync=\"other\" target=\"backup\"\n",
                "another sync",
            ),
            (b"HEADp ok\0x what\0", "record 2 at byte"),
            (b"HEADp /abs\0", "record 1"),
            (b"HEADp cut", "cut short"),
        ];
        for (body, want) in cases {
            let data = match body.strip_prefix(b"HEAD") {
                Some(rest) => [head.as_bytes(), rest].concat(),
                None => body.to_vec(),
            };
            let err = decode(&data, head).unwrap_err();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    #[test]
    fn load_restores_batch_invariants() {
        let dir = tempfile::tempdir().unwrap();
        let log = FailLog::open(dir.path(), "s", "t").unwrap();
        let head = log.header.clone();
        let mut data = head.into_bytes();
        data.extend_from_slice(b"p b\0p a\0p b\0t d\0p d/x\0t d/e\0p dd\0");
        fs::write(log.path(), &data).unwrap();
        let got = log.load();
        assert_eq!(
            got.paths,
            vec![b"a".to_vec(), b"b".to_vec(), b"dd".to_vec()]
        );
        assert_eq!(got.trees, vec![b"d".to_vec()]);

        data.extend_from_slice(b"full\0");
        fs::write(log.path(), &data).unwrap();
        assert_eq!(log.load(), Batch::full());
    }
}
