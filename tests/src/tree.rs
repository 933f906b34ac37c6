//! Trees on disk: writing test files (sizes and content from a small seeded PRNG, so runs are
//! repeatable and content is not trivially compressible), taking a snapshot of a tree, and
//! `SyncCheck`, which polls until a target tree equals a source tree — same relative paths,
//! types, permission bits, file bytes and symlink targets — and otherwise panics with a
//! readable diff and the fixtures' logs.
//!
//! Must not: follow symlinks, or call two trees equal without comparing file bytes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{wait, Diagnose};

/// xorshift64* — small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes files with repeatable pseudo-random content.
pub struct TreeWriter {
    rng: Rng,
}

impl TreeWriter {
    pub fn new(seed: u64) -> TreeWriter {
        TreeWriter {
            rng: Rng::new(seed),
        }
    }

    /// Write `size` pseudo-random bytes to `path`, creating parent directories.
    pub fn file(&mut self, path: &Path, size: usize) {
        let mut data = vec![0u8; size];
        self.rng.fill(&mut data);
        write_file(path, &data);
    }

    /// Write `count` files named `f00000`… spread round-robin over `dirs` (relative to
    /// `root`, created as needed), each `min..=max` bytes. Returns the paths written.
    pub fn files(
        &mut self,
        root: &Path,
        dirs: &[&str],
        count: usize,
        min: usize,
        max: usize,
    ) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let dir = root.join(dirs[i % dirs.len()]);
            let path = dir.join(format!("f{i:05}"));
            let size = self.rng.range(min as u64, max as u64) as usize;
            self.file(&path, size);
            out.push(path);
        }
        out
    }
}

/// File names that break a careless transport: spaces (leading, trailing), a newline,
/// leading dashes (`--delete` read as an option), shell and rsync pattern characters
/// (`*?[`, a backslash, quotes, `#`, `+ `), a `:` (`host:path`), non-UTF-8 bytes,
/// Unicode, 255 bytes. For tests of every kind of target.
pub fn hostile_names() -> Vec<OsString> {
    let names: [&[u8]; 18] = [
        b"with space",
        b" leading space",
        b"trailing space ",
        b"new\nline",
        b"-leading-dash",
        b"--delete",
        b"star*",
        b"[brackets]?",
        b"back\\slash",
        b"'quote\"",
        b"#hash",
        b"+ plus",
        b"host:path",
        b":colon",
        b"caf\xe9 latin1",
        b"\xff\xfe",
        "\u{fc}n\u{ef}c\u{f8}d\u{e9}-\u{65e5}\u{672c}".as_bytes(),
        &[b'n'; 255],
    ];
    names
        .iter()
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect()
}

/// Write `data` to `path`, creating parent directories; panics naming the path.
pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `rename` with a readable panic.
pub fn rename(from: &Path, to: &Path) {
    fs::rename(from, to)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", from.display(), to.display()));
}

/// `chmod` with a readable panic.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// What one path is, as far as the comparison cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64 },
    Dir,
    Symlink(PathBuf),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (`& 0o7777`); 0 for symlinks, whose bits mean nothing.
    pub mode: u32,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::File { size } => write!(f, "file {size} bytes mode {:o}", self.mode),
            Kind::Dir => write!(f, "dir mode {:o}", self.mode),
            Kind::Symlink(t) => write!(f, "symlink -> {t:?}"),
            Kind::Other => write!(f, "special file mode {:o}", self.mode),
        }
    }
}

/// Every path below `root` (relative, `root` itself left out), without following symlinks.
/// Entries that vanish while being read are left out (the tree may be changing).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                continue
            }
            Err(e) => panic!("read_dir {}: {e}", dir.display()),
        };
        for de in rd {
            let de = match de {
                Ok(de) => de,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => panic!("read_dir {}: {e}", dir.display()),
            };
            let child = rel.join(de.file_name());
            let path = root.join(&child);
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => panic!("lstat {}: {e}", path.display()),
            };
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let entry = if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(t) => Entry {
                        kind: Kind::Symlink(t),
                        mode: 0,
                    },
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => panic!("readlink {}: {e}", path.display()),
                }
            } else if ft.is_dir() {
                stack.push(child.clone());
                Entry {
                    kind: Kind::Dir,
                    mode,
                }
            } else if ft.is_file() {
                Entry {
                    kind: Kind::File { size: md.len() },
                    mode,
                }
            } else {
                Entry {
                    kind: Kind::Other,
                    mode,
                }
            };
            out.insert(child, entry);
        }
    }
    out
}

type PathPred<'a> = Box<dyn Fn(&Path) -> bool + 'a>;

/// Waits until `dst` equals `src`. Build with `new`, refine, then `wait()`.
pub struct SyncCheck<'a> {
    src: PathBuf,
    dst: PathBuf,
    ignore: Option<PathPred<'a>>,
    forbid: Option<PathPred<'a>>,
    fixtures: Vec<&'a dyn Diagnose>,
    timeout: Duration,
}

impl<'a> SyncCheck<'a> {
    pub fn new(src: &Path, dst: &Path) -> SyncCheck<'a> {
        SyncCheck {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            ignore: None,
            forbid: None,
            fixtures: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Leave out of the comparison, on both sides, every path for which `f(rel)` is true
    /// for the path itself or one of its ancestors (an excluded dir takes its subtree).
    pub fn ignore(mut self, f: impl Fn(&Path) -> bool + 'a) -> Self {
        self.ignore = Some(Box::new(f));
        self
    }

    /// Panic at once if the target ever holds a path for which `f(rel)` is true (checked
    /// on every poll, before the comparison).
    pub fn forbid_on_target(mut self, f: impl Fn(&Path) -> bool + 'a) -> Self {
        self.forbid = Some(Box::new(f));
        self
    }

    /// Show this fixture's diagnostics on failure.
    pub fn with(mut self, f: &'a dyn Diagnose) -> Self {
        self.fixtures.push(f);
        self
    }

    pub fn within(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Look at the target once and panic if it holds a forbidden path.
    pub fn assert_nothing_forbidden(&self) {
        self.check_forbidden(&snapshot(&self.dst));
    }

    /// The differences right now (empty when in sync), at most `limit` of them.
    pub fn differences(&self, limit: usize) -> Vec<String> {
        let src = self.filtered(snapshot(&self.src));
        let dst_all = snapshot(&self.dst);
        self.check_forbidden(&dst_all);
        let dst = self.filtered(dst_all);
        let mut diffs = Vec::new();
        let mut same_files = Vec::new();
        for (rel, s) in &src {
            match dst.get(rel) {
                None => diffs.push(format!("only in source: {rel:?} ({s})")),
                Some(d) if d != s => diffs.push(format!("differs: {rel:?} source {s}, target {d}")),
                Some(_) => {
                    if matches!(s.kind, Kind::File { .. }) {
                        same_files.push(rel);
                    }
                }
            }
        }
        for (rel, d) in &dst {
            if !src.contains_key(rel) {
                diffs.push(format!("only in target: {rel:?} ({d})"));
            }
        }
        if diffs.is_empty() {
            // Metadata agrees; now the bytes (only now: reading big trees on every poll
            // while they still differ would be wasted work).
            for rel in same_files {
                if diffs.len() >= limit {
                    break;
                }
                match same_content(&self.src.join(rel), &self.dst.join(rel)) {
                    Ok(true) => {}
                    Ok(false) => diffs.push(format!("content differs: {rel:?}")),
                    // A file replaced between snapshot and read: report, poll again.
                    Err(e) => diffs.push(format!("could not compare {rel:?}: {e}")),
                }
            }
        }
        diffs.truncate(limit);
        diffs
    }

    /// Poll until the trees are equal, or panic after the timeout with the first 20
    /// differences and the fixtures' diagnostics.
    pub fn wait(self) {
        wait::must(
            format_args!(
                "target {} to match source {}",
                self.dst.display(),
                self.src.display()
            ),
            self.timeout,
            &self.fixtures,
            || {
                let diffs = self.differences(20);
                if diffs.is_empty() {
                    Ok(())
                } else {
                    Err(format!("first differences:\n  {}", diffs.join("\n  ")))
                }
            },
        );
    }

    fn filtered(&self, snap: BTreeMap<PathBuf, Entry>) -> BTreeMap<PathBuf, Entry> {
        match &self.ignore {
            None => snap,
            Some(f) => snap
                .into_iter()
                .filter(|(rel, _)| !rel.ancestors().filter(|a| !a.as_os_str().is_empty()).any(f))
                .collect(),
        }
    }

    fn check_forbidden(&self, dst: &BTreeMap<PathBuf, Entry>) {
        if let Some(f) = &self.forbid {
            let bad: Vec<_> = dst.keys().filter(|rel| f(rel)).take(20).collect();
            assert!(
                bad.is_empty(),
                "target {} holds paths that must never reach it: {bad:?}\n{}",
                self.dst.display(),
                crate::diagnostics(&self.fixtures)
            );
        }
    }
}

/// Wait (up to `timeout`) until `dst` equals `src`; on failure show the fixtures' logs.
pub fn assert_in_sync(src: &Path, dst: &Path, timeout: Duration, fixtures: &[&dyn Diagnose]) {
    let mut check = SyncCheck::new(src, dst).within(timeout);
    for f in fixtures {
        check = check.with(*f);
    }
    check.wait();
}

fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let mut fa = fs::File::open(a)?;
    let mut fb = fs::File::open(b)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A source dir in its own tempdir (removed on Drop).
pub fn source_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("syncd-e2e-src.")
        .tempdir()
        .expect("create a source tempdir")
}

/// Newest ctime in the tree (the root included).
pub fn newest_ctime(root: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let ctime = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(m.ctime()).expect("ctime after 1970"))
            + Duration::from_nanos(u64::try_from(m.ctime_nsec()).expect("ns"));
        newest = newest.max(ctime);
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap_or_else(|e| panic!("ls {}: {e}", p.display())) {
                stack.push(e.expect("dir entry").path());
            }
        }
    }
    newest
}

/// Wait until the clock is past the tree's newest ctime plus the worker's slack (2 s) and
/// a margin, so a stop now records a time after the seeding: the catch-up then finds only
/// what the test changes while the worker is stopped. (A wait for a clock condition, not a
/// guess: the duration is computed from the tree.)
pub fn wait_past_seed(root: &Path) {
    let until = newest_ctime(root) + Duration::from_millis(2600);
    wait::must(
        "the clock past the tree's newest ctime",
        Duration::from_secs(10),
        &[],
        || SystemTime::now() >= until,
    );
}
