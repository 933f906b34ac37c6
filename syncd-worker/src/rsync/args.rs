//! The rsync argument planner: turns one [`Batch`] for one [`Target`] into the argv, the
//! environment and the stdin of each rsync run. Pure: no I/O, no clock, no processes; the
//! caller runs the [`Invocation`]s (see [`super::run`]) in order.
//!
//! Every path travels over stdin as NUL-separated data (`--from0`), never on the command
//! line, so names with spaces, newlines, leading dashes, glob characters or non-UTF-8
//! bytes need no quoting. Secrets never appear in argv or the summary: only the password
//! *file's* name does.
//!
//! Run kinds:
//! * paths run: `--files-from=- --delete-missing-args --force`; no `-r`, so a listed
//!   directory is created but not descended.
//! * paths run, filter form (the target's rsync rejects `--delete-missing-args` with
//!   `--files-from`, rsync 3.4.3): lsyncd's include list, `-r --delete` with every listed
//!   path and its ancestors included and everything else excluded by a *perishable*
//!   `-p *`. Plain `--exclude=*` (lsyncd's form) would protect the contents of a deleted
//!   non-empty directory and rsync would leave it behind ("cannot delete non-empty
//!   directory", exit 0); a perishable rule is ignored inside directories being deleted.
//! * trees run: directories pushed whole, `-r --delete` scoped to the trees by merge rules
//!   read from stdin (`--filter=". -"`), excluded paths hidden and protected.
//! * full run: `SOURCE/ DEST` with `-r --delete`, excluded paths from stdin.
//! * seed runs, for directories renamed in the source ([`Batch::seeds`]), before the
//!   batch's runs: first one prepare run (`--files-from=-`, no `-r`, nothing deleted)
//!   makes each new path and its ancestors real directories on the target, so that
//!   nothing below can follow a symlink the target still has there; then one seed run
//!   per move, `SOURCE/to/ DEST/to/ -r --delete --copy-dest=<from, relative to to>`
//!   with the excluded paths under `to` (relative to it) and the unanchored hide
//!   patterns: the trees run for `to`, rooted at `to`, with the target's old copy as a
//!   local basis (see `push.rs` for why `--copy-dest`).
//!
//! No run passes `--ignore-errors`: after a read error on the source (EIO, a directory
//! it may not read, root_squash NFS) rsync then skips the deletions that follow ("IO
//! error encountered -- skipping file deletion", exit 23, retried) instead of deleting
//! the target's copy of what it could not read. A file that merely vanished (exit 24) is
//! not such an error: deletions go on.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::batch::{is_within, Batch, Move, RelPath};
use crate::config::model::{SyncJob, Target};
use crate::config::ConnectTimeouts;

/// What the rsync pair (local binary and target) supports, found by [`super::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `--delete-missing-args` works together with `--files-from`.
    pub delete_missing_args: bool,
}

/// One rsync process to run: argv without a shell, extra environment, bytes for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Set on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    pub stdin: Vec<u8>,
    /// Paths or trees this run covers (1 for a full run), for status counters.
    pub entries: usize,
    /// Short text for logs: "42 paths", "3 trees", "full tree". Never a secret.
    pub summary: String,
    /// What rsync resolves from the source root itself, following any symlink on the
    /// way (`--files-from` implies `--relative`): looked at again just before the run
    /// starts ([`crate::parents::look::recheck`]). None for runs that walk from a root.
    pub listed: Option<Listed>,
}

/// The paths a run lists, relative to `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub source: PathBuf,
    pub paths: Vec<RelPath>,
}

impl Invocation {
    /// The same run, asking rsync (3.1 or later) to report its overall progress on stdout
    /// (`--info=progress2`; an explicit `--info` outranks `-P`/`--progress` in the params,
    /// and `-q` silences it). Put among the options, before `SOURCE DEST`.
    pub fn with_progress(mut self) -> Invocation {
        let at = self.args.len().saturating_sub(2);
        self.args.insert(at, "--info=progress2".into());
        self
    }
}

impl Invocation {
    /// The same run with rsync's `--max-delete=N` (deletions past N are skipped): the
    /// deletion guard's cap (see [`crate::guard`]).
    pub fn with_max_delete(mut self, n: u64) -> Invocation {
        let at = self.args.len().saturating_sub(2);
        self.args.insert(at, format!("--max-delete={n}").into());
        self
    }

    /// The same run as a dry run reporting `--stats` (and no progress): what the
    /// deletion guard counts before a whole-tree push.
    pub fn with_dry_run_stats(mut self) -> Invocation {
        self.args.retain(|a| a != "--info=progress2");
        let at = self.args.len().saturating_sub(2);
        self.args.insert(at, "--stats".into());
        self.args.insert(at, "--dry-run".into());
        self.summary = format!("{} (dry run, counting deletions)", self.summary);
        self
    }
}

/// The dry run of `syncd verify` for one target: the whole-tree push's run (`-r --delete
/// --force`, the sync's `params`/`extra`, the target's transport, the concrete excluded
/// paths on stdin and the sync's hide patterns), made a dry run by
/// [`Invocation::into_verify`]. `excluded`: as for [`plan`] with [`Batch::full`].
pub fn verify_run(job: &SyncJob, target: &Target, excluded: &[RelPath], deep: bool) -> Invocation {
    full_run(job, target, excluded, &job.exclude.rsync_patterns()).into_verify(deep)
}

impl Invocation {
    /// The same run as a dry run that itemizes every difference on stdout
    /// (`--dry-run --out-format=%i %n --stats`, see [`crate::verify::itemize`]), with
    /// `--checksum` when `deep`; any `-q`/`--quiet` of the sync's params is taken out
    /// (it would silence the itemized lines). Nothing else changes: the same argv
    /// builder as the push, so the comparison is the one a push would act on.
    pub fn into_verify(mut self, deep: bool) -> Invocation {
        let ends = self.args.len().saturating_sub(2);
        let tail = self.args.split_off(ends);
        self.args = self
            .args
            .into_iter()
            .filter(|a| a != "--info=progress2")
            .filter_map(without_quiet)
            .collect();
        self.args.extend([
            OsString::from("--dry-run"),
            OsString::from("--out-format=%i %n"),
            OsString::from("--stats"),
        ]);
        if deep {
            self.args.push("--checksum".into());
        }
        self.args.extend(tail);
        self.summary = format!(
            "{} (dry run{})",
            self.summary,
            if deep { ", checksums" } else { "" }
        );
        self
    }
}

/// One option word without rsync's quiet flag: None for `--quiet` or `-q`, `-az` for
/// `-aqz`; a short option's value (`-e ssh -q`) is left alone.
fn without_quiet(word: OsString) -> Option<OsString> {
    const WITH_VALUE: &[u8] = b"BeTfM@";
    let bytes = word.as_bytes();
    if bytes == b"--quiet" {
        return None;
    }
    if bytes.len() < 2 || bytes[0] != b'-' || bytes[1] == b'-' {
        return Some(word);
    }
    let mut out = vec![b'-'];
    let mut in_value = false;
    for &c in &bytes[1..] {
        if !in_value && c == b'q' {
            continue;
        }
        in_value |= WITH_VALUE.contains(&c);
        out.push(c);
    }
    (out.len() > 1).then(|| OsString::from_vec(out))
}

/// The rsync runs that push `batch` to `target`, in the order they must run. Empty when
/// the batch is empty. `excluded` holds the concrete excluded paths under the batch's
/// trees (under the whole source for a full push): highest excluded path only, sorted.
pub fn plan(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    excluded: &[RelPath],
) -> Vec<Invocation> {
    if batch.is_empty() {
        return Vec::new();
    }
    let hide = hide_patterns(job, batch);
    if batch.whole_tree(job.mode) {
        return vec![full_run(job, target, excluded, &hide)];
    }
    let chunk = job.max_batch.max(1);
    let mut out = Vec::new();
    for paths in batch.paths.chunks(chunk) {
        out.push(if caps.delete_missing_args {
            paths_run(job, target, paths)
        } else {
            paths_filter_run(job, target, paths)
        });
    }
    for trees in batch.trees.chunks(chunk) {
        out.push(trees_run(job, target, trees, excluded, &hide));
    }
    out
}

/// The excludes rsync can match itself ([`crate::exclude::ExcludeSet::rsync_patterns`]),
/// hidden on the sending side after the concrete excluded paths (which also protect the
/// receiver's copies): a file created under an excluded name after the walk that found
/// those paths stays out of the run. The periodic full push hides `full_sync.exclude`'s
/// too.
fn hide_patterns(job: &SyncJob, batch: &Batch) -> Vec<String> {
    let mut hide = job.exclude.rsync_patterns();
    if let Some(periodic) = job.full_sync.exclude.as_ref() {
        if batch.full && batch.periodic {
            hide.extend(periodic.rsync_patterns());
        }
    }
    hide
}

fn paths_run(job: &SyncJob, target: &Target, paths: &[RelPath]) -> Invocation {
    let mut stdin = Vec::with_capacity(paths.iter().map(|p| p.len() + 1).sum());
    for p in paths {
        // rsync skips --files-from lines starting with `#` or `;` as comments, even with
        // --from0; `./#name` is the same path and is read.
        if matches!(p.first(), Some(b'#' | b';')) {
            stdin.extend_from_slice(b"./");
        }
        stdin.extend_from_slice(p);
        stdin.push(0);
    }
    let opts = [
        "--from0",
        "--files-from=-",
        "--delete-missing-args",
        "--force",
    ];
    let inv = invocation(
        job,
        target,
        &opts,
        stdin,
        paths.len(),
        count(paths.len(), "path"),
    );
    Invocation {
        listed: Some(Listed {
            source: job.source.clone(),
            paths: paths.to_vec(),
        }),
        ..inv
    }
}

fn paths_filter_run(job: &SyncJob, target: &Target, paths: &[RelPath]) -> Invocation {
    let mut rules = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in paths {
        for anc in ancestors(p) {
            if seen.insert(anc) {
                rules.push(pattern(anc, b"/"));
            }
        }
        rules.push(pattern(p, b""));
    }
    let opts = [
        "-r",
        "--delete",
        "--force",
        "--from0",
        "--include-from=-",
        "--filter=-p *",
    ];
    let summary = format!("{} (filter form)", count(paths.len(), "path"));
    invocation(job, target, &opts, nul_join(&rules), paths.len(), summary)
}

fn trees_run(
    job: &SyncJob,
    target: &Target,
    trees: &[RelPath],
    excluded: &[RelPath],
    hide: &[String],
) -> Invocation {
    let mut rules = Vec::new();
    for e in excluded
        .iter()
        .filter(|e| trees.iter().any(|t| is_within(e, t)))
    {
        rules.push(rule(b"- ", pattern(e, b"")));
    }
    for h in hide {
        rules.push(rule(b"H ", h.as_bytes().to_vec()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in trees {
        for anc in ancestors(t) {
            if seen.insert(anc) {
                rules.push(rule(b"+ ", pattern(anc, b"/")));
            }
        }
    }
    for t in trees {
        rules.push(rule(b"+ ", pattern(t, b"/***")));
    }
    rules.push(b"-p *".to_vec());
    let opts = ["-r", "--delete", "--force", "--from0", "--filter=. -"];
    invocation(
        job,
        target,
        &opts,
        nul_join(&rules),
        trees.len(),
        count(trees.len(), "tree"),
    )
}

fn full_run(job: &SyncJob, target: &Target, excluded: &[RelPath], hide: &[String]) -> Invocation {
    let mut opts = vec!["-r", "--delete", "--force"];
    let mut stdin = Vec::new();
    if !excluded.is_empty() {
        opts.extend(["--from0", "--exclude-from=-"]);
        let rules: Vec<Vec<u8>> = excluded.iter().map(|e| pattern(e, b"")).collect();
        stdin = nul_join(&rules);
    }
    // After the concrete paths: a path both name stays protected on the receiver.
    let hide_args: Vec<String> = hide.iter().map(|h| format!("--filter=H {h}")).collect();
    opts.extend(hide_args.iter().map(String::as_str));
    let summary = match excluded.len() {
        0 => "full tree".to_string(),
        n => format!("full tree ({} excluded)", count(n, "path")),
    };
    invocation(job, target, &opts, stdin, 1, summary)
}

/// The prepare run before seeds: each `to` (and, implied, its ancestors) pushed as a
/// directory, not descended and deleting nothing, so that it is a real directory on the
/// target (a symlink or file the target still holds there is replaced, as any push
/// would) before a seed run enters it as its destination.
pub fn prepare_run(job: &SyncJob, target: &Target, moves: &[Move]) -> Invocation {
    let tos: Vec<RelPath> = moves.iter().map(|m| m.to.clone()).collect();
    let mut inv = paths_run(job, target, &tos);
    inv.args
        .retain(|a| a != "--delete-missing-args" && a != "--force");
    inv.entries = 0;
    inv.summary = format!("{} to seed (prepare)", count(tos.len(), "directory"));
    inv
}

/// The seed run of one move: `to` pushed whole from its own root into `DEST/to/`, with
/// the target's copy of `from` as `--copy-dest` basis (relative to `DEST/to/`, so a
/// daemon module, an ssh path and a local path take the same form), `-r --delete` and
/// excludes as the trees run has them (the sync's `exclude`). `excluded`: concrete
/// excluded paths (any; those under `to` are used). An ssh target gets `--protect-args`: the
/// names travel in argv here, and must not meet the remote shell.
pub fn seed_run(job: &SyncJob, target: &Target, mv: &Move, excluded: &[RelPath]) -> Invocation {
    let mut rules = Vec::new();
    for e in excluded
        .iter()
        .filter(|e| is_within(e, &mv.to) && e.len() > mv.to.len())
    {
        rules.push(rule(b"- ", pattern(&e[mv.to.len() + 1..], b"")));
    }
    // An anchored hide pattern (`/name`) names a top-level entry of the source, never
    // one inside `to`; rooted at `to` it would hide the wrong thing.
    for h in job
        .exclude
        .rsync_patterns()
        .iter()
        .filter(|h| !h.starts_with('/'))
    {
        rules.push(rule(b"H ", h.as_bytes().to_vec()));
    }
    let mut basis = b"--copy-dest=".to_vec();
    basis.extend(relative_basis(&mv.from, &mv.to));
    let mut opts: Vec<OsString> = ["-r", "--delete", "--force"]
        .iter()
        .map(OsString::from)
        .collect();
    if matches!(target.kind, crate::config::TargetKind::Ssh { .. }) {
        opts.push("--protect-args".into());
    }
    if !rules.is_empty() {
        opts.extend(["--from0".into(), "--filter=. -".into()]);
    }
    opts.push(OsString::from_vec(basis));
    let mut inv = invocation(job, target, &[], nul_join(&rules), 1, String::new());
    let at = inv.args.len() - 2;
    inv.args.splice(at..at, opts);
    let n = inv.args.len();
    for arg in [n - 2, n - 1] {
        // Both end in `/` (or an ssh `host:` with an empty path): `to/` goes after.
        let mut bytes = inv.args[arg].as_bytes().to_vec();
        bytes.extend_from_slice(&mv.to);
        bytes.push(b'/');
        inv.args[arg] = OsString::from_vec(bytes);
    }
    inv.summary = format!(
        "seed {} from {}",
        String::from_utf8_lossy(&mv.to),
        String::from_utf8_lossy(&mv.from)
    );
    // `SOURCE/to/`: rsync follows `to` and every directory above it; `to/` lists them
    // all as ancestors to look at.
    let mut to = mv.to.clone();
    to.push(b'/');
    inv.listed = Some(Listed {
        source: job.source.clone(),
        paths: vec![to],
    });
    inv
}

/// Whether seed runs are safe with this sync's own rsync options: not when they make
/// the receiver keep a symlink where the source has a directory (`--keep-dirlinks`,
/// `-K`) or keep the symlinks it finds on the way to a listed path
/// (`--no-implied-dirs`): the prepare run could then not make sure that a seed's
/// destination is a real directory.
pub fn seeding_safe(job: &SyncJob) -> bool {
    !job.rsync.params.iter().chain(&job.rsync.extra).any(|a| {
        a == "--keep-dirlinks"
            || a == "--no-implied-dirs"
            || (a.starts_with('-') && !a.starts_with("--") && a.contains('K'))
    })
}

/// `from` as seen from the directory `to`/// `from` as seen from the directory `to` (both relative to the same root): up out of
/// `to` to their common ancestor, then down. `a/d1` from `a/d2` is `../d1`.
pub fn relative_basis(from: &[u8], to: &[u8]) -> Vec<u8> {
    let f: Vec<&[u8]> = from.split(|b| *b == b'/').collect();
    let t: Vec<&[u8]> = to.split(|b| *b == b'/').collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = Vec::new();
    for _ in common..t.len() {
        out.extend_from_slice(b"../");
    }
    out.extend_from_slice(&f[common..].join(&b'/'));
    out
}

/// Common prefix + run options + `SOURCE/ DEST`.
fn invocation(
    job: &SyncJob,
    target: &Target,
    run_opts: &[&str],
    stdin: Vec<u8>,
    entries: usize,
    summary: String,
) -> Invocation {
    let mut args: Vec<OsString> = job.rsync.params.iter().map(OsString::from).collect();
    let secs = job.rsync.timeout.map(whole_seconds);
    if let Some(secs) = secs {
        args.push(format!("--timeout={secs}").into());
    }
    // A daemon gets `--contimeout` too; ssh's connect timeout is left to ssh.
    args.extend(target.kind.transport_args(ConnectTimeouts {
        daemon: secs,
        ssh: None,
    }));
    args.extend(job.rsync.extra.iter().map(OsString::from));
    args.extend(run_opts.iter().map(OsString::from));
    let mut source = job.source.as_os_str().as_bytes().to_vec();
    with_trailing_slash(&mut source);
    args.push(OsString::from_vec(source));
    args.push(target.kind.dest_arg());
    Invocation {
        program: job.rsync.binary.clone(),
        args,
        // C locale: rsync's messages (`@ERROR: ...`) are parsed by `exit::classify`.
        env: vec![("LC_ALL".into(), "C".into())],
        stdin,
        entries,
        summary,
        listed: None,
    }
}

/// An anchored rsync filter pattern `/rel<suffix>`. rsync treats `\` as an escape only in
/// patterns holding a wildcard (`*?[`); so when the final pattern has one (from the name
/// or from the `***` suffix) every `*?[\` of the name is escaped, otherwise the name is
/// matched literally and left alone.
fn pattern(rel: &[u8], suffix: &[u8]) -> Vec<u8> {
    let wild = |b: &u8| matches!(b, b'*' | b'?' | b'[');
    let escape = rel.iter().any(wild) || suffix.iter().any(wild);
    let mut out = Vec::with_capacity(rel.len() + suffix.len() + 8);
    out.push(b'/');
    for &b in rel {
        if escape && (wild(&b) || b == b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.extend_from_slice(suffix);
    out
}

fn rule(prefix: &[u8], pattern: Vec<u8>) -> Vec<u8> {
    let mut r = prefix.to_vec();
    r.extend(pattern);
    r
}

/// `a/b/c` -> `a`, `a/b` (outermost first).
fn ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &rel[..i])
}

fn nul_join(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum());
    for i in items {
        out.extend_from_slice(i);
        out.push(0);
    }
    out
}

fn with_trailing_slash(bytes: &mut Vec<u8>) {
    if bytes.last() != Some(&b'/') {
        bytes.push(b'/');
    }
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, TargetKind};
    use crate::exclude::ExcludeSet;
    use crate::rsync::tests::{job, local, os};

    fn daemon() -> Target {
        Target {
            name: "backup".into(),
            kind: TargetKind::Daemon {
                user: Some("rsync_backup".into()),
                host: "127.0.0.1".into(),
                module: "nfsbackup".into(),
                port: Some(18873),
                password_file: Some("/etc/rsync.password".into()),
            },
        }
    }

    fn ssh(port: Option<u16>, ssh_args: &[&str]) -> Target {
        Target {
            name: "ssh".into(),
            kind: TargetKind::Ssh {
                user: Some("root".into()),
                host: "backup.example".into(),
                path: "/srv/data".into(),
                port,
                ssh_args: ssh_args.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn paths(list: &[&str]) -> Batch {
        Batch {
            paths: list.iter().map(|p| p.as_bytes().to_vec()).collect(),
            ..Batch::default()
        }
    }

    fn argv(inv: &Invocation) -> Vec<String> {
        inv.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn stdin_items(inv: &Invocation) -> Vec<String> {
        let s = inv.stdin.strip_suffix(b"\0").unwrap_or(&inv.stdin);
        if s.is_empty() {
            return Vec::new();
        }
        s.split(|b| *b == 0)
            .map(|i| String::from_utf8_lossy(i).into_owned())
            .collect()
    }

    const DMA: Caps = Caps {
        delete_missing_args: true,
    };
    const FILTER: Caps = Caps {
        delete_missing_args: false,
    };

    #[test]
    fn runs_that_resolve_names_from_the_source_root_list_them_for_the_last_look() {
        let j = job("/data", vec![daemon()]);
        let rel = |s: &str| s.as_bytes().to_vec();
        let listed = |inv: &Invocation| {
            inv.listed
                .as_ref()
                .map(|l| (l.source.clone(), l.paths.clone()))
        };
        let b = Batch {
            paths: vec![rel("a/b.txt"), rel("c")],
            trees: vec![rel("t")],
            ..Batch::default()
        };
        let runs = plan(&j, &daemon(), &b, DMA, &[]);
        assert_eq!(
            listed(&runs[0]),
            Some(("/data".into(), vec![rel("a/b.txt"), rel("c")]))
        );
        assert_eq!(listed(&runs[1]), None, "a trees run walks from the root");
        assert_eq!(
            listed(&plan(&j, &daemon(), &b, FILTER, &[])[0]),
            None,
            "so does the filter form"
        );
        assert_eq!(
            listed(&plan(&j, &daemon(), &Batch::full(), DMA, &[])[0]),
            None
        );
        let mv = Move {
            from: rel("x/d1"),
            to: rel("y/d2"),
        };
        let prepare = prepare_run(&j, &daemon(), std::slice::from_ref(&mv));
        assert_eq!(listed(&prepare), Some(("/data".into(), vec![rel("y/d2")])));
        // `SOURCE/y/d2/`: `y/d2` itself is looked at too.
        let seed = seed_run(&j, &daemon(), &mv, &[]);
        assert_eq!(listed(&seed), Some(("/data".into(), vec![rel("y/d2/")])));
    }

    #[test]
    fn paths_run_to_daemon_with_port_password_and_timeout() {
        let j = job("/data", vec![daemon()]);
        let inv = plan(&j, &daemon(), &paths(&["a/b.txt", "c"]), DMA, &[]);
        assert_eq!(inv.len(), 1);
        assert_eq!(
            argv(&inv[0]),
            [
                "-a",
                "--timeout=300",
                "--sockopts=TCP_NODELAY",
                "--contimeout=300",
                "--port=18873",
                "--password-file=/etc/rsync.password",
                "--from0",
                "--files-from=-",
                "--delete-missing-args",
                "--force",
                "/data/",
                "rsync_backup@127.0.0.1::nfsbackup/",
            ]
        );
        assert!(!argv(&inv[0]).contains(&"-r".to_string()));
        assert_eq!(inv[0].stdin, b"a/b.txt\0c\0");
        assert_eq!(inv[0].env, [(os("LC_ALL"), os("C"))]);
        assert_eq!(inv[0].program, PathBuf::from("rsync"));
        assert_eq!(inv[0].entries, 2);
        assert_eq!(inv[0].summary, "2 paths");
    }

    #[test]
    fn with_progress_goes_before_source_and_dest() {
        let j = job("/data", vec![daemon()]);
        let inv = plan(&j, &daemon(), &Batch::full(), DMA, &[]).remove(0);
        let plain = argv(&inv);
        let with = argv(&inv.clone().with_progress());
        assert_eq!(with.len(), plain.len() + 1);
        assert_eq!(
            &with[with.len() - 3..],
            [
                "--info=progress2",
                "/data/",
                "rsync_backup@127.0.0.1::nfsbackup/"
            ]
        );
        assert_eq!(&with[..with.len() - 3], &plain[..plain.len() - 2]);
    }

    #[test]
    fn ssh_target_quotes_the_remote_shell_words() {
        let cases: Vec<(Option<u16>, Vec<&str>, &str)> = vec![
            (None, vec![], "ssh -o BatchMode=yes"),
            (
                Some(2222),
                vec!["-i", "/root/.ssh/backup_key"],
                "ssh -p 2222 -o BatchMode=yes -i /root/.ssh/backup_key",
            ),
            (
                None,
                vec!["-i", "/root/my keys/id", "-o", "ProxyCommand=nc -X 5 %h %p"],
                "ssh -o BatchMode=yes -i '/root/my keys/id' -o 'ProxyCommand=nc -X 5 %h %p'",
            ),
            (
                None,
                vec!["it's", "say \"hi\"", ""],
                "ssh -o BatchMode=yes 'it''s' 'say \"hi\"' ''",
            ),
            (
                None,
                vec!["back\\slash"],
                "ssh -o BatchMode=yes back\\slash",
            ),
        ];
        for (port, extra, want) in cases {
            let t = ssh(port, &extra);
            let mut j = job("/data", vec![t.clone()]);
            j.rsync.timeout = None;
            let inv = plan(&j, &t, &paths(&["f"]), DMA, &[]);
            let a = argv(&inv[0]);
            assert_eq!(a[..3], ["-a", "-e", want], "{extra:?}");
            assert_eq!(
                a.last().map(String::as_str),
                Some("root@backup.example:/srv/data/")
            );
            assert!(!a
                .iter()
                .any(|w| w.starts_with("--contimeout") || w.starts_with("--port")));
        }
    }

    #[test]
    fn local_target_with_extra_and_no_timeout() {
        let mut j = job("/data", vec![local("/backup")]);
        j.rsync.timeout = None;
        j.rsync.params = vec!["-rlt".into(), "-z".into()];
        j.rsync.extra = vec!["--bwlimit=20m".into()];
        let inv = plan(&j, &local("/backup"), &paths(&["f"]), DMA, &[]);
        assert_eq!(
            argv(&inv[0]),
            [
                "-rlt",
                "-z",
                "--bwlimit=20m",
                "--from0",
                "--files-from=-",
                "--delete-missing-args",
                "--force",
                "/data/",
                "/backup/",
            ]
        );
    }

    #[test]
    fn sub_second_timeout_rounds_up_local_has_no_contimeout() {
        let mut j = job("/data", vec![local("/b")]);
        j.rsync.timeout = Some(Duration::from_millis(1500));
        let inv = plan(&j, &local("/b"), &paths(&["f"]), DMA, &[]);
        assert_eq!(argv(&inv[0])[1], "--timeout=2");
        assert!(!argv(&inv[0]).iter().any(|a| a.starts_with("--contimeout")));
    }

    #[test]
    fn paths_are_split_at_max_batch() {
        let mut j = job("/data", vec![local("/b")]);
        j.max_batch = 2;
        let b = paths(&["a", "b", "c", "d", "e"]);
        for caps in [DMA, FILTER] {
            let inv = plan(&j, &local("/b"), &b, caps, &[]);
            let counts: Vec<usize> = inv.iter().map(|i| i.entries).collect();
            assert_eq!(counts, [2, 2, 1], "{caps:?}");
        }
        let inv = plan(&j, &local("/b"), &b, DMA, &[]);
        let lists: Vec<Vec<String>> = inv.iter().map(stdin_items).collect();
        assert_eq!(lists, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(inv[2].summary, "1 path");
    }

    #[test]
    fn paths_filter_form_includes_ancestors_once() {
        let j = job("/data", vec![local("/b")]);
        let inv = plan(
            &j,
            &local("/b"),
            &paths(&["a/b/c", "a/b/d", "a/e", "f"]),
            FILTER,
            &[],
        );
        assert_eq!(inv.len(), 1);
        assert_eq!(
            argv(&inv[0])[2..],
            [
                "-r",
                "--delete",
                "--force",
                "--from0",
                "--include-from=-",
                "--filter=-p *",
                "/data/",
                "/b/",
            ]
        );
        assert_eq!(
            stdin_items(&inv[0]),
            ["/a/", "/a/b/", "/a/b/c", "/a/b/d", "/a/e", "/f"]
        );
        assert_eq!(inv[0].summary, "4 paths (filter form)");
    }

    #[test]
    fn patterns_escape_only_when_wild() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"plain", b"", b"/plain"),
            (b"back\\slash", b"", b"/back\\slash"),
            (b"back\\slash", b"/", b"/back\\slash/"),
            (b"a*b", b"", b"/a\\*b"),
            (b"a[1]", b"", b"/a\\[1]"),
            (b"q?", b"", b"/q\\?"),
            (b"d\\x*", b"", b"/d\\\\x\\*"),
            (b"back\\slash", b"/***", b"/back\\\\slash/***"),
            (b"dir/sub", b"/***", b"/dir/sub/***"),
            (b"sp ace\nnl", b"", b"/sp ace\nnl"),
        ];
        for (rel, suffix, want) in cases {
            assert_eq!(
                pattern(rel, suffix),
                want.to_vec(),
                "{:?}",
                String::from_utf8_lossy(rel)
            );
        }
    }

    #[test]
    fn trees_run_scopes_delete_to_trees_and_hides_excluded() {
        let j = job("/data", vec![local("/b")]);
        let b = Batch {
            trees: vec![b"a/new".to_vec(), b"top*".to_vec()],
            ..Batch::default()
        };
        let excluded = [
            b"a/new/cache".to_vec(),
            b"a/newer".to_vec(), // not under a tree: left out
            b"z".to_vec(),
        ];
        let inv = plan(&j, &local("/b"), &b, DMA, &excluded);
        assert_eq!(inv.len(), 1);
        assert_eq!(
            argv(&inv[0])[2..],
            [
                "-r",
                "--delete",
                "--force",
                "--from0",
                "--filter=. -",
                "/data/",
                "/b/",
            ]
        );
        assert_eq!(
            stdin_items(&inv[0]),
            [
                "- /a/new/cache",
                "+ /a/",
                "+ /a/new/***",
                "+ /top\\*/***",
                "-p *"
            ]
        );
        assert_eq!(inv[0].summary, "2 trees");
        assert_eq!(inv[0].entries, 2);
    }

    #[test]
    fn paths_then_trees_in_one_batch() {
        let j = job("/data", vec![local("/b")]);
        let b = Batch {
            paths: vec![b"f".to_vec()],
            trees: vec![b"d".to_vec()],
            ..Batch::default()
        };
        let inv = plan(&j, &local("/b"), &b, DMA, &[]);
        let summaries: Vec<&str> = inv.iter().map(|i| i.summary.as_str()).collect();
        assert_eq!(summaries, ["1 path", "1 tree"]);
    }

    #[test]
    fn full_run_with_and_without_excludes() {
        let j = job("/data", vec![daemon()]);
        let inv = plan(&j, &daemon(), &Batch::full(), DMA, &[]);
        assert_eq!(inv.len(), 1);
        let a = argv(&inv[0]);
        assert_eq!(
            a[6..],
            [
                "-r",
                "--delete",
                "--force",
                "/data/",
                "rsync_backup@127.0.0.1::nfsbackup/"
            ]
        );
        assert!(inv[0].stdin.is_empty());
        assert_eq!(inv[0].summary, "full tree");

        let inv = plan(
            &j,
            &daemon(),
            &Batch::full(),
            DMA,
            &[b"cache".to_vec(), b"x[1]".to_vec()],
        );
        assert_eq!(
            argv(&inv[0])[6..11],
            ["-r", "--delete", "--force", "--from0", "--exclude-from=-"]
        );
        assert_eq!(stdin_items(&inv[0]), ["/cache", "/x\\[1]"]);
        assert_eq!(inv[0].summary, "full tree (2 paths excluded)");
        // Excludes rsync can match itself are hidden after the listed paths, so a listed
        // path stays protected; the periodic push hides full_sync.exclude's too.
        let mut j = job("/data", vec![daemon()]);
        j.exclude = ExcludeSet::new(&[r"\.log$", "^a/b$"]).expect("valid");
        j.full_sync.exclude = Some(ExcludeSet::new(&["^cache$"]).expect("valid"));
        let a = argv(&plan(&j, &daemon(), &Batch::full(), DMA, &[b"x".to_vec()])[0]);
        assert_eq!(
            a[10..13],
            ["--exclude-from=-", "--filter=H *.log", "/data/"]
        );
        let a = argv(&plan(&j, &daemon(), &Batch::periodic(), DMA, &[])[0]);
        assert_eq!(a[9..11], ["--filter=H *.log", "--filter=H /cache"]);
    }

    #[test]
    fn the_verify_run_is_the_full_push_as_an_itemizing_dry_run() {
        let mut j = job("/data", vec![daemon()]);
        j.exclude = ExcludeSet::new(&[r"\.log$"]).expect("valid");
        j.rsync.params = vec!["-aqz".into(), "--quiet".into(), "-q".into()];
        let full = argv(&plan(&j, &daemon(), &Batch::full(), DMA, &[b"x".to_vec()])[0]);
        let inv = verify_run(&j, &daemon(), &[b"x".to_vec()], false);
        let a = argv(&inv);
        // The transport (password file, port, TCP_NODELAY), excludes and hide rules are
        // the push's own; only -q is gone and the dry-run options come before SOURCE DEST.
        let push_opts: Vec<&String> = full[..full.len() - 2]
            .iter()
            .filter(|w| !w.contains('q'))
            .collect();
        let verify_opts: Vec<&String> = a[1..a.len() - 5].iter().collect();
        assert_eq!(verify_opts, push_opts, "{a:?}");
        assert_eq!(a[0], "-az");
        assert_eq!(
            a[a.len() - 5..],
            [
                "--dry-run",
                "--out-format=%i %n",
                "--stats",
                "/data/",
                "rsync_backup@127.0.0.1::nfsbackup/"
            ]
        );
        assert!(
            a.contains(&"--password-file=/etc/rsync.password".to_string()),
            "{a:?}"
        );
        assert!(a.contains(&"--filter=H *.log".to_string()), "{a:?}");
        assert_eq!(stdin_items(&inv), ["/x"]);
        let deep = argv(&verify_run(&j, &daemon(), &[], true));
        assert_eq!(deep[deep.len() - 3], "--checksum");
        assert_eq!(
            without_quiet("-essh -q".into()),
            Some("-essh -q".into()),
            "a short option's value is kept"
        );
    }

    #[test]
    fn tree_mode_pushes_the_whole_tree_for_any_batch() {
        let mut j = job("/data", vec![local("/b")]);
        j.mode = Mode::Tree;
        let inv = plan(&j, &local("/b"), &paths(&["a", "b"]), DMA, &[]);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].summary, "full tree");
        assert!(plan(&j, &local("/b"), &Batch::default(), DMA, &[]).is_empty());
    }

    #[test]
    fn files_from_names_that_look_like_comments_get_a_dot_slash() {
        let j = job("/data", vec![local("/b")]);
        let inv = plan(
            &j,
            &local("/b"),
            &paths(&["#hash", ";semi", "a#b", "d/#x"]),
            DMA,
            &[],
        );
        assert_eq!(stdin_items(&inv[0]), ["./#hash", "./;semi", "a#b", "d/#x"]);
    }

    #[test]
    fn non_utf8_names_pass_through_untouched() {
        let j = job("/data", vec![local("/b")]);
        let name = b"caf\xe9/-n\nx".to_vec();
        let b = Batch {
            paths: vec![name.clone()],
            ..Batch::default()
        };
        let inv = plan(&j, &local("/b"), &b, DMA, &[]);
        assert_eq!(inv[0].stdin, [name.as_slice(), b"\0"].concat());
        let inv = plan(&j, &local("/b"), &b, FILTER, &[]);
        assert_eq!(inv[0].stdin, b"/caf\xe9/\0/caf\xe9/-n\nx\0".to_vec());
    }

    #[test]
    fn relative_basis_climbs_to_the_common_ancestor() {
        let cases: &[(&str, &str, &str)] = &[
            ("d1", "d2", "../d1"),
            ("ren/d1", "ren/d2", "../d1"),
            ("a/d1", "b/c/d2", "../../../a/d1"),
            ("a/b/d1", "a/d2", "../b/d1"),
            ("x", "xy/z", "../../x"),
        ];
        for (from, to, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&relative_basis(from.as_bytes(), to.as_bytes())),
                *want,
                "{from} from {to}"
            );
        }
    }

    fn mv(from: &str, to: &str) -> Move {
        Move {
            from: from.as_bytes().to_vec(),
            to: to.as_bytes().to_vec(),
        }
    }

    #[test]
    fn seed_and_prepare_runs_per_kind() {
        // (target, the seed's last three args)
        let cases: Vec<(Target, [&str; 3])> = vec![
            (
                daemon(),
                [
                    "--copy-dest=../../a/d1",
                    "/data/b/d2/",
                    "rsync_backup@127.0.0.1::nfsbackup/b/d2/",
                ],
            ),
            (
                ssh(None, &[]),
                [
                    "--copy-dest=../../a/d1",
                    "/data/b/d2/",
                    "root@backup.example:/srv/data/b/d2/",
                ],
            ),
            (
                local("/backup"),
                ["--copy-dest=../../a/d1", "/data/b/d2/", "/backup/b/d2/"],
            ),
        ];
        for (t, want) in cases {
            let j = job("/data", vec![t.clone()]);
            let inv = seed_run(&j, &t, &mv("a/d1", "b/d2"), &[]);
            let a = argv(&inv);
            assert_eq!(a[a.len() - 3..], want, "{t:?}");
            assert!(a.contains(&"-r".into()) && a.contains(&"--delete".into()));
            assert_eq!(
                a.contains(&"--protect-args".to_string()),
                matches!(t.kind, TargetKind::Ssh { .. }),
                "{t:?}"
            );
            assert!(inv.stdin.is_empty() && !a.contains(&"--from0".to_string()));
            assert_eq!(inv.summary, "seed b/d2 from a/d1");
            // The prepare run creates the new paths, deletes nothing, does not recurse.
            let prep = prepare_run(&j, &t, &[mv("a/d1", "b/d2"), mv("x", "#y")]);
            let a = argv(&prep);
            assert_eq!(stdin_items(&prep), ["b/d2", "./#y"]);
            for no in ["-r", "--delete", "--delete-missing-args", "--force"] {
                assert!(!a.contains(&no.to_string()), "{no} in {a:?}");
            }
            assert!(a.contains(&"--files-from=-".to_string()));
            let plain = argv(&plan(&j, &t, &paths(&["f"]), DMA, &[])[0]);
            assert_eq!(a[a.len() - 2..], plain[plain.len() - 2..]);
        }
    }

    #[test]
    fn seed_run_takes_the_excludes_inside_its_tree_relative_to_it() {
        let mut j = job("/data", vec![local("/b")]);
        j.exclude = ExcludeSet::new(&[r"\.log$", "^cache$", "tmp/"]).expect("valid");
        let excluded = [
            b"d2/tmp/x".to_vec(),
            b"d2x/tmp".to_vec(), // not inside d2
            b"other/tmp".to_vec(),
            b"d2/a[1]/tmp".to_vec(),
        ];
        let inv = seed_run(&j, &local("/b"), &mv("d1", "d2"), &excluded);
        let a = argv(&inv);
        assert_eq!(
            a[a.len() - 5..],
            [
                "--from0",
                "--filter=. -",
                "--copy-dest=../d1",
                "/data/d2/",
                "/b/d2/"
            ]
        );
        // The anchored `/cache` names the source's top level: left out, rooted at d2.
        assert_eq!(stdin_items(&inv), ["- /tmp/x", "- /a\\[1]/tmp", "H *.log"]);
    }

    #[test]
    fn seeding_is_off_with_options_that_keep_symlinked_directories() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["-a"], &[], true),
            (&["-artuz"], &["--bwlimit=10m"], true),
            (&["-aK"], &[], false),
            (&["-a"], &["--keep-dirlinks"], false),
            (&["-a", "--no-implied-dirs"], &[], false),
            (&["-a"], &["--backup-dir=/K"], true),
        ];
        for (params, extra, want) in cases {
            let mut j = job("/data", vec![local("/b")]);
            j.rsync.params = params.iter().map(|s| s.to_string()).collect();
            j.rsync.extra = extra.iter().map(|s| s.to_string()).collect();
            assert_eq!(seeding_safe(&j), *want, "{params:?} {extra:?}");
        }
    }
}
