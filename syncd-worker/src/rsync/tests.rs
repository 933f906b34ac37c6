//! Shared test helpers for the rsync module (a `SyncJob` with defaults, tree snapshots)
//! and the tests that prove, with the real rsync 3.5.0, both the rules the planner relies
//! on and that its runs leave the target equal to the source. Local targets in tempdirs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{plan, Caps, Invocation};
use super::exit::{classify, Class};
use super::run::{run, RunResult};
use crate::batch::{Batch, RelPath};
use crate::config::model::{
    EventSet, FullSync, Hooks, Mode, RetryPolicy, RsyncOptions, SyncJob, Target, TargetKind,
};
use crate::config::WatcherChoice;
use crate::exclude::ExcludeSet;
use crate::wait;

/// A job with the documented defaults, pushing `source` to `targets`.
pub(crate) fn job(source: impl AsRef<Path>, targets: Vec<Target>) -> SyncJob {
    SyncJob {
        name: "test".into(),
        source: source.as_ref().to_path_buf(),
        source_link: None,
        targets,
        events: EventSet::default(),
        exclude: ExcludeSet::default(),
        delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        max_batch: 20000,
        max_queue: 500000,
        threads: 2,
        max_in_flight: 2,
        mode: Mode::Files,
        watcher: WatcherChoice::Auto,
        initial_sync: false,
        max_delete: crate::guard::DeleteGuard::default(),
        rsync: RsyncOptions {
            binary: "rsync".into(),
            params: vec!["-a".into()],
            timeout: Some(Duration::from_secs(300)),
            extra: vec![],
        },
        retry: RetryPolicy {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(300),
        },
        full_sync: FullSync {
            interval: None,
            exclude: None,
        },
        verify: Default::default(),
        hooks: Hooks::default(),
    }
}

pub(crate) fn local(path: impl AsRef<Path>) -> Target {
    Target {
        name: "local".into(),
        kind: TargetKind::Local {
            path: path.as_ref().to_path_buf(),
        },
    }
}

pub(crate) fn os(s: &str) -> OsString {
    OsString::from(s)
}

const DMA: Caps = Caps {
    delete_missing_args: true,
};
const FILTER: Caps = Caps {
    delete_missing_args: false,
};

/// What a tree holds, for comparing source and target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Link { to: Vec<u8> },
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tmp")
}

fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
        let dir = root.join(rel);
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}")) {
            let entry = entry.expect("dir entry");
            let rel = rel.join(entry.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let mode = meta.permissions().mode() & 0o7777;
            let key = rel.as_os_str().as_bytes().to_vec();
            if meta.file_type().is_symlink() {
                let to = fs::read_link(&path).expect("readlink");
                out.insert(
                    key,
                    Node::Link {
                        to: to.into_os_string().into_vec(),
                    },
                );
            } else if meta.is_dir() {
                out.insert(key, Node::Dir { mode });
                walk(root, &rel, out);
            } else {
                let content = fs::read(&path).expect("read");
                out.insert(key, Node::File { mode, content });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn assert_same_tree(src: &Path, dst: &Path, context: &str) {
    let (s, d) = (snapshot(src), snapshot(dst));
    if s != d {
        let show = |m: &BTreeMap<Vec<u8>, Node>, other: &BTreeMap<Vec<u8>, Node>| {
            m.iter()
                .filter(|(k, v)| other.get(*k) != Some(v))
                .map(|(k, v)| format!("  {:?}: {v:?}", String::from_utf8_lossy(k)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{context}: target differs from source\nonly/different in source:\n{}\nonly/different in target:\n{}",
            show(&s, &d),
            show(&d, &s)
        );
    }
}

fn path_of(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsString::from_vec(rel.to_vec()))
}

fn write(root: &Path, rel: &[u8], content: &[u8]) {
    let p = path_of(root, rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(&p, content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
}

fn exists(root: &Path, rel: &[u8]) -> bool {
    path_of(root, rel).symlink_metadata().is_ok()
}

/// Run every planned invocation; each must succeed.
fn push(job: &SyncJob, target: &Target, batch: &Batch, caps: Caps, excluded: &[RelPath]) {
    for inv in plan(job, target, batch, caps, excluded) {
        let r = run(&inv).expect("rsync runs");
        let o = classify(r.code, r.signal, &r.stderr);
        assert_eq!(
            o.class,
            Class::Success,
            "{}: {}\n{}",
            inv.summary,
            o.message,
            r.stderr
        );
    }
}

fn rsync_by_hand(args: &[&str], src: &Path, dst: &Path, stdin: &[u8]) -> RunResult {
    let mut argv: Vec<OsString> = args.iter().map(|a| os(a)).collect();
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    argv.extend([s, d]);
    run(&Invocation {
        program: "rsync".into(),
        args: argv,
        env: vec![(os("LC_ALL"), os("C"))],
        stdin: stdin.to_vec(),
        entries: 0,
        summary: String::new(),
        listed: None,
    })
    .expect("rsync runs")
}

fn paths_batch(paths: &[&[u8]]) -> Batch {
    Batch {
        paths: paths.iter().map(|p| p.to_vec()).collect(),
        ..Batch::default()
    }
}

// ---- the rules the planner relies on (notes §3.3) ----

#[test]
fn files_from_turns_off_the_recursion_of_a() {
    let (src, dst) = (tmp(), tmp());
    write(src.path(), b"d/inner/f", b"x");
    let r = rsync_by_hand(
        &["-a", "--from0", "--files-from=-"],
        src.path(),
        dst.path(),
        b"d\0",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(exists(dst.path(), b"d"), "the listed dir is created");
    assert!(!exists(dst.path(), b"d/inner"), "but not descended");
}

#[test]
fn delete_missing_args_needs_force_for_a_non_empty_dir_and_our_plan_has_it() {
    let (src, dst) = (tmp(), tmp());
    write(dst.path(), b"gone/sub/x", b"x");
    let r = rsync_by_hand(
        &["-a", "--from0", "--files-from=-", "--delete-missing-args"],
        src.path(),
        dst.path(),
        b"gone\0",
    );
    assert_eq!(r.code, Some(0), "rsync says success... {}", r.stderr);
    // rsync reports "cannot delete non-empty directory: gone" (on stdout) and exits 0.
    assert!(
        exists(dst.path(), b"gone/sub/x"),
        "...and leaves the directory"
    );

    let t = local(dst.path());
    push(
        &job(src.path(), vec![t.clone()]),
        &t,
        &paths_batch(&[b"gone"]),
        DMA,
        &[],
    );
    assert!(!exists(dst.path(), b"gone"));
}

#[test]
fn exclude_star_keeps_a_deleted_dir_but_a_perishable_exclude_does_not() {
    // Why the filter form ends in `-p *` rather than lsyncd's `--exclude=*`.
    let (src, dst) = (tmp(), tmp());
    write(dst.path(), b"gone/sub/x", b"x");
    let base = [
        "-a",
        "-r",
        "--delete",
        "--force",
        "--from0",
        "--include-from=-",
    ];
    let r = rsync_by_hand(
        &[&base[..], &["--exclude=*"]].concat(),
        src.path(),
        dst.path(),
        b"/gone\0",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // rsync reports "cannot delete non-empty directory: gone" (on stdout) and exits 0.
    assert!(exists(dst.path(), b"gone/sub/x"));

    let r = rsync_by_hand(
        &[&base[..], &["--filter=-p *"]].concat(),
        src.path(),
        dst.path(),
        b"/gone\0",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!exists(dst.path(), b"gone"));
}

/// `inv` run the way an rsync without root's file-reading privilege runs: through
/// `setpriv`, with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the bounding set, so
/// rsync (still uid 0) obeys mode bits like any other user. Tests run as root.
fn without_dac_caps(mut inv: Invocation) -> Invocation {
    let mut args: Vec<OsString> = [
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-all",
    ]
    .iter()
    .map(|a| os(a))
    .collect();
    args.push(inv.program.into_os_string());
    args.append(&mut inv.args);
    inv.program = "setpriv".into();
    inv.args = args;
    inv
}

#[test]
fn a_source_dir_rsync_cannot_read_keeps_its_target_copy_in_every_run_kind() {
    // `t/locked` (mode 000) cannot be read by an rsync without DAC capabilities: the
    // sender sees the directory but none of its entries. Without `--ignore-errors` rsync
    // answers the read error with "IO error encountered -- skipping file deletion" (exit
    // 23) instead of deleting the target's copy of what it could not read.
    let batches: Vec<(&str, Batch, Caps)> = vec![
        ("full run", Batch::full(), DMA),
        (
            "trees run",
            Batch {
                trees: vec![b"t".to_vec()],
                ..Batch::default()
            },
            DMA,
        ),
        (
            "paths run",
            paths_batch(&[b"t/gone", b"t/locked/secret"]),
            DMA,
        ),
        (
            "paths run, filter form",
            paths_batch(&[b"t/gone", b"t/locked/secret"]),
            FILTER,
        ),
    ];
    for (kind, batch, caps) in batches {
        let (src, dst) = (tmp(), tmp());
        let (s, d) = (src.path(), dst.path());
        write(s, b"t/keep", b"k");
        write(s, b"t/locked/secret", b"s");
        write(d, b"t/keep", b"k");
        write(d, b"t/locked/secret", b"s");
        write(d, b"t/locked/sub/deep", b"d");
        write(d, b"t/gone", b"deleted at the source");
        fs::set_permissions(s.join("t/locked"), fs::Permissions::from_mode(0o000))
            .expect("chmod 000");
        let t = local(d);
        let mut j = job(s, vec![t.clone()]);
        // No `-p`: with `-a` the target's `t/locked` would become mode 000 too, and the
        // receiver, just as unprivileged here (a daemon receiver is not), could not read
        // it to delete in it either.
        j.rsync.params = vec!["-lt".into()];
        for inv in plan(&j, &t, &batch, caps, &[]) {
            let r = run(&without_dac_caps(inv)).expect("setpriv rsync runs");
            let o = classify(r.code, r.signal, &r.stderr);
            assert_eq!(o.class, Class::Retry, "{kind}: {}\n{}", o.message, r.stderr);
            assert!(
                o.message.contains("locked") && o.message.contains("Permission denied"),
                "{kind}: the message names what could not be read: {}",
                o.message
            );
        }
        for kept in [&b"t/locked/secret"[..], b"t/locked/sub/deep", b"t/keep"] {
            assert!(
                exists(d, kept),
                "{kind}: {:?} deleted after a read error",
                String::from_utf8_lossy(kept)
            );
        }
        fs::set_permissions(s.join("t/locked"), fs::Permissions::from_mode(0o755))
            .expect("chmod back");
    }
}

#[test]
fn vanished_source_files_do_not_hold_back_deletions() {
    // A file that vanishes while rsync runs (exit 24) is no read error: the deletions
    // the run owes still happen. `a-big` is sent slowly; `b-small` is removed while it
    // is in transfer (its temporary file on the target is the sign), so the sender finds
    // `b-small` gone when its turn comes.
    let (src, dst) = (tmp(), tmp());
    let (s, d) = (src.path(), dst.path());
    write(s, b"dir/a-big", &vec![b'x'; 2_000_000]);
    write(s, b"dir/b-small", b"doomed");
    write(d, b"dir/stale", b"deleted at the source");
    write(d, b"stale-top", b"deleted at the source");
    let t = local(d);
    let mut j = job(s, vec![t.clone()]);
    j.rsync.extra = vec!["--bwlimit=1000".into()];
    let inv = plan(&j, &t, &Batch::full(), DMA, &[]).remove(0);
    let rsync = std::thread::spawn(move || run(&inv).expect("rsync runs"));
    wait::until_every(
        "a-big to start arriving",
        Duration::from_secs(30),
        wait::FAST_POLL,
        || {
            fs::read_dir(d.join("dir")).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().as_bytes().starts_with(b".a-big."))
            })
        },
    )
    .unwrap_or_else(|timeout| panic!("{timeout}"));
    fs::remove_file(s.join("dir/b-small")).expect("rm b-small");
    let r = rsync.join().expect("rsync thread");
    assert_eq!(r.code, Some(24), "{}", r.stderr);
    assert!(r.stderr.contains("vanished"), "{}", r.stderr);
    assert_eq!(classify(r.code, r.signal, &r.stderr).class, Class::Success);
    assert!(!exists(d, b"dir/stale") && !exists(d, b"stale-top"));
    assert!(!exists(d, b"dir/b-small"));
    assert_same_tree(s, d, "after the vanished file");
}

#[test]
fn from0_applies_to_merge_rules_read_from_stdin() {
    // With NUL-separated rules a newline is part of a name, not a rule separator.
    let (src, dst) = (tmp(), tmp());
    write(src.path(), b"a\nb", b"1");
    write(src.path(), b"a", b"2");
    let r = rsync_by_hand(
        &["-a", "-r", "--from0", "--filter=. -"],
        src.path(),
        dst.path(),
        b"+ /a\nb\0- *\0",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(exists(dst.path(), b"a\nb"));
    assert!(!exists(dst.path(), b"a"));
}

// ---- plan + run against a real local target ----

/// A source and target in sync, then every kind of change made to the source, pushed
/// as the queue would batch it.
fn change_matrix(caps: Caps) {
    let (src, dst) = (tmp(), tmp());
    let s = src.path();
    write(s, b"mod.txt", b"old");
    write(s, b"del.txt", b"bye");
    write(s, b"deldir/sub/x", b"x");
    write(s, b"d2f/inner/y", b"y");
    write(s, b"f2d", b"i am a file");
    write(s, b"chm.txt", b"mode");
    write(s, b"keep/inner/k", b"k");
    write(s, b"oldlink-target", b"t");
    symlink("oldlink-target", s.join("relink")).expect("symlink");
    let t = local(dst.path());
    let j = job(s, vec![t.clone()]);
    push(&j, &t, &Batch::full(), caps, &[]);
    assert_same_tree(s, dst.path(), "initial full push");

    write(s, b"new.txt", b"new");
    write(s, b"mod.txt", b"modified content");
    fs::remove_file(s.join("del.txt")).expect("rm");
    fs::remove_dir_all(s.join("deldir")).expect("rm -r");
    fs::remove_dir_all(s.join("d2f")).expect("rm -r");
    write(s, b"d2f", b"now a file");
    fs::remove_file(s.join("f2d")).expect("rm");
    write(s, b"f2d/sub/z", b"z");
    symlink("new.txt", s.join("link")).expect("symlink");
    fs::remove_file(s.join("relink")).expect("rm");
    symlink("mod.txt", s.join("relink")).expect("symlink");
    write(s, b"empty", b"");
    fs::set_permissions(s.join("chm.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::set_permissions(s.join("keep"), fs::Permissions::from_mode(0o700)).expect("chmod");
    write(s, b"keep/inner/new2", b"n2");
    write(s, b"newdir/a/b/c", b"deep");

    let paths: &[&[u8]] = &[
        b"chm.txt",
        b"d2f",
        b"del.txt",
        b"deldir",
        b"empty",
        b"keep",
        b"keep/inner/new2",
        b"link",
        b"mod.txt",
        b"new.txt",
        b"relink",
    ];
    let batch = Batch {
        full: false,
        periodic: false,
        paths: paths.iter().map(|p| p.to_vec()).collect(),
        trees: vec![b"f2d".to_vec(), b"newdir".to_vec()],
        moves: Vec::new(),
    };
    push(&j, &t, &batch, caps, &[]);
    assert_same_tree(s, dst.path(), &format!("change matrix with {caps:?}"));
}

#[test]
fn change_matrix_with_delete_missing_args() {
    change_matrix(DMA);
}

#[test]
fn change_matrix_with_the_filter_form() {
    change_matrix(FILTER);
}

#[test]
fn paths_run_does_not_touch_unlisted_entries() {
    for caps in [DMA, FILTER] {
        let (src, dst) = (tmp(), tmp());
        write(src.path(), b"dir/listed", b"1");
        write(src.path(), b"dir/unlisted", b"2");
        write(dst.path(), b"dir/target-only", b"3");
        write(dst.path(), b"other", b"4");
        let t = local(dst.path());
        push(
            &job(src.path(), vec![t.clone()]),
            &t,
            &paths_batch(&[b"dir/listed"]),
            caps,
            &[],
        );
        assert!(exists(dst.path(), b"dir/listed"), "{caps:?}");
        assert!(!exists(dst.path(), b"dir/unlisted"), "{caps:?}");
        assert!(exists(dst.path(), b"dir/target-only"), "{caps:?}");
        assert!(exists(dst.path(), b"other"), "{caps:?}");
    }
}

#[test]
fn trees_run_pushes_whole_dirs_and_keeps_excluded_paths_off_and_protected() {
    let (src, dst) = (tmp(), tmp());
    let (s, d) = (src.path(), dst.path());
    write(s, b"newdir/a/b/file", b"f");
    write(s, b"newdir/x.log", b"log");
    write(s, b"newdir/cache/c", b"excluded in source");
    write(s, b"p/q/nt/inner", b"nested tree");
    write(s, b"p/sibling", b"not pushed");
    write(s, b"other/o", b"not pushed");
    write(d, b"newdir/stale", b"extraneous inside the tree");
    write(d, b"newdir/cache/old", b"protected on the target");
    write(d, b"p/target-only", b"outside the trees");
    write(d, b"keep", b"outside the trees");

    let t = local(d);
    let batch = Batch {
        trees: vec![b"newdir".to_vec(), b"p/q/nt".to_vec()],
        ..Batch::default()
    };
    push(
        &job(s, vec![t.clone()]),
        &t,
        &batch,
        DMA,
        &[b"newdir/cache".to_vec()],
    );

    for present in [
        &b"newdir/a/b/file"[..],
        b"newdir/x.log",
        b"p/q/nt/inner",
        b"newdir/cache/old",
        b"p/target-only",
        b"keep",
    ] {
        assert!(
            exists(d, present),
            "{:?} must be on the target",
            String::from_utf8_lossy(present)
        );
    }
    for absent in [
        &b"newdir/stale"[..],
        b"newdir/cache/c",
        b"p/sibling",
        b"other",
    ] {
        assert!(
            !exists(d, absent),
            "{:?} must not be on the target",
            String::from_utf8_lossy(absent)
        );
    }
}

#[test]
fn full_run_deletes_extraneous_files_and_respects_excludes() {
    let (src, dst) = (tmp(), tmp());
    let (s, d) = (src.path(), dst.path());
    write(s, b"a/b", b"b");
    write(s, b"cache/x", b"excluded");
    write(s, b"we*ird", b"excluded too");
    write(s, b"weXird", b"not excluded");
    write(d, b"junk", b"j");
    write(d, b"junkdir/deep/j", b"j");
    write(d, b"cache/y", b"protected");
    let t = local(d);
    let excluded = [b"cache".to_vec(), b"we*ird".to_vec()];
    push(&job(s, vec![t.clone()]), &t, &Batch::full(), DMA, &excluded);
    assert!(exists(d, b"a/b") && exists(d, b"weXird"));
    assert!(!exists(d, b"junk") && !exists(d, b"junkdir"));
    assert!(!exists(d, b"cache/x") && !exists(d, b"we*ird"));
    assert!(exists(d, b"cache/y"));

    // Without excludes the target becomes an exact copy.
    push(&job(s, vec![t.clone()]), &t, &Batch::full(), DMA, &[]);
    assert_same_tree(s, d, "full run");
}

/// A file created under an excluded name after the walk that lists the excluded paths
/// (so not in that list) stays out of a whole-tree run and of a trees run: the excludes
/// rsync can match itself are hidden on the sending side. Listed excluded paths keep
/// their target copies; the hide rules protect nothing more than before (a target-only
/// file matching them is deleted, as it always was).
#[test]
fn excluded_names_created_after_the_walk_stay_out_of_whole_tree_and_trees_runs() {
    let (src, dst) = (tmp(), tmp());
    let (s, d) = (src.path(), dst.path());
    write(s, b"a.txt", b"a");
    write(s, b"listed.log", b"in the walk's list");
    write(s, b"late.log", b"created after the walk");
    write(s, b"sub/late.log", b"created after the walk");
    write(s, b"sub/b.txt", b"b");
    write(s, b"cache/late", b"created after the walk");
    write(d, b"listed.log", b"the target's copy, protected");
    write(d, b"target-only.log", b"never in the source");
    let t = local(d);
    let mut j = job(s, vec![t.clone()]);
    j.exclude = ExcludeSet::new(&[r"\.log$", "^cache$"]).expect("valid");
    let walked = [b"listed.log".to_vec()];

    push(&j, &t, &Batch::full(), DMA, &walked);
    assert!(exists(d, b"a.txt") && exists(d, b"sub/b.txt"));
    for absent in [
        &b"late.log"[..],
        b"sub/late.log",
        b"cache",
        b"target-only.log",
    ] {
        assert!(!exists(d, absent), "{:?}", String::from_utf8_lossy(absent));
    }
    assert_eq!(
        fs::read(d.join("listed.log")).expect("kept"),
        b"the target's copy, protected"
    );

    write(s, b"sub/later.log", b"created after the walk");
    let trees = Batch {
        trees: vec![b"sub".to_vec()],
        ..Batch::default()
    };
    push(&j, &t, &trees, DMA, &[]);
    assert!(!exists(d, b"sub/later.log") && !exists(d, b"sub/late.log"));
    assert!(exists(d, b"sub/b.txt"));
}

#[test]
fn tree_mode_runs_the_full_push_for_a_paths_batch() {
    let (src, dst) = (tmp(), tmp());
    write(src.path(), b"x/y", b"1");
    write(dst.path(), b"junk", b"j");
    let t = local(dst.path());
    let mut j = job(src.path(), vec![t.clone()]);
    j.mode = Mode::Tree;
    push(&j, &t, &paths_batch(&[b"x/y"]), DMA, &[]);
    assert_same_tree(src.path(), dst.path(), "tree mode");
}

fn hard_names() -> Vec<Vec<u8>> {
    vec![
        b"with space".to_vec(),
        b"trailing space ".to_vec(),
        b"new\nline".to_vec(),
        b"-leading-dash".to_vec(),
        b"--delete".to_vec(),
        "unicod\u{e9} \u{65e5}\u{672c}".as_bytes().to_vec(),
        b"a*b".to_vec(),
        b"a[1]".to_vec(),
        b"q?".to_vec(),
        b"back\\slash".to_vec(),
        b"d\\x*".to_vec(),
        b"#hash".to_vec(),
        b"+ plus".to_vec(),
        vec![b'n'; 255],
        b"caf\xe9 latin1".to_vec(),
        b"w*rd d[ir]/-in\nside\\ *".to_vec(),
    ]
}

/// Decoys a wrongly escaped pattern would match.
fn decoys() -> Vec<Vec<u8>> {
    vec![
        b"aXb".to_vec(),
        b"a1".to_vec(),
        b"qq".to_vec(),
        b"dx*".to_vec(),
        b"d\\xy".to_vec(),
    ]
}

#[test]
fn hard_names_survive_both_forms() {
    for caps in [DMA, FILTER] {
        let (src, dst) = (tmp(), tmp());
        let (s, d) = (src.path(), dst.path());
        for n in hard_names() {
            write(s, &n, b"content");
        }
        for n in decoys() {
            write(s, &n, b"decoy");
        }
        let t = local(d);
        let j = job(s, vec![t.clone()]);
        let mut paths = hard_names();
        paths.push(b"w*rd d[ir]".to_vec());
        paths.sort();
        let batch = Batch {
            paths: paths.clone(),
            ..Batch::default()
        };
        push(&j, &t, &batch, caps, &[]);
        for n in hard_names() {
            assert!(
                exists(d, &n),
                "{caps:?}: {:?} pushed",
                String::from_utf8_lossy(&n)
            );
        }
        for n in decoys() {
            assert!(
                !exists(d, &n),
                "{caps:?}: decoy {:?} pushed",
                String::from_utf8_lossy(&n)
            );
        }

        // Delete them all in the source: the same paths now delete on the target.
        for n in hard_names() {
            fs::remove_file(path_of(s, &n)).expect("rm");
        }
        fs::remove_dir(s.join("w*rd d[ir]")).expect("rmdir");
        push(&j, &t, &batch, caps, &[]);
        for n in &paths {
            assert!(
                !exists(d, n),
                "{caps:?}: {:?} deleted",
                String::from_utf8_lossy(n)
            );
        }
    }
}

#[test]
fn hard_names_as_trees_and_excludes() {
    let (src, dst) = (tmp(), tmp());
    let (s, d) = (src.path(), dst.path());
    let tree = b"t*[x] \\y\n-z".to_vec();
    for n in hard_names() {
        let mut p = tree.clone();
        p.push(b'/');
        p.extend(&n);
        write(s, &p, b"in tree");
    }
    let mut excluded = tree.clone();
    excluded.extend(b"/a*b");
    write(d, &excluded, b"protected");
    write(s, b"t*[x] \\y\n-zz", b"decoy");
    let t = local(d);
    let batch = Batch {
        trees: vec![tree.clone()],
        ..Batch::default()
    };
    push(
        &job(s, vec![t.clone()]),
        &t,
        &batch,
        DMA,
        &[excluded.clone()],
    );
    for n in hard_names().into_iter().filter(|n| n != b"a*b") {
        let mut p = tree.clone();
        p.push(b'/');
        p.extend(&n);
        assert!(exists(d, &p), "{:?}", String::from_utf8_lossy(&p));
    }
    assert_eq!(fs::read(path_of(d, &excluded)).expect("kept"), b"protected");
    assert!(!exists(d, b"t*[x] \\y\n-zz"));
}

/// An ssh target through a stand-in `ssh` on PATH that records its argv and runs the
/// remote command locally with `sh -c` (as sshd would), so rsync's real `-e` parsing and
/// remote-argument quoting are exercised without a network.
#[test]
fn ssh_target_through_a_stand_in_ssh() {
    let bin = tmp();
    let (src, dst) = (tmp(), tmp());
    let log = bin.path().join("argv");
    let script = "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$SYNCD_FAKE_SSH_LOG\"\n\
                  while [ \"$1\" != backup.example ]; do shift; done\nshift\nexec sh -c \"$*\"\n";
    let ssh = bin.path().join("ssh");
    fs::write(&ssh, script).expect("write fake ssh");
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).expect("chmod");
    write(src.path(), b"dir with space/f'q\"", b"via ssh");

    let t = Target {
        name: "ssh".into(),
        kind: TargetKind::Ssh {
            user: Some("root".into()),
            host: "backup.example".into(),
            path: dst.path().to_str().expect("utf-8 tempdir").into(),
            port: Some(2222),
            ssh_args: vec![
                "-i".into(),
                "/k ey/it's".into(),
                "-o".into(),
                "SendEnv=\"X Y\"".into(),
            ],
        },
    };
    let j = job(src.path(), vec![t.clone()]);
    let path_env = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for mut inv in plan(&j, &t, &Batch::full(), DMA, &[]) {
        inv.env.push((os("PATH"), os(&path_env)));
        inv.env
            .push((os("SYNCD_FAKE_SSH_LOG"), log.clone().into_os_string()));
        let r = run(&inv).expect("rsync runs");
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    assert_same_tree(src.path(), dst.path(), "ssh target");
    let argv = fs::read_to_string(&log).expect("fake ssh ran");
    // rsync passes the user as `-l USER` after our words.
    let words: Vec<&str> = argv.lines().take(11).collect();
    assert_eq!(
        words,
        [
            "-p",
            "2222",
            "-o",
            "BatchMode=yes",
            "-i",
            "/k ey/it's",
            "-o",
            "SendEnv=\"X Y\"",
            "-l",
            "root",
            "backup.example",
        ]
    );
}

#[test]
fn split_batches_all_arrive() {
    let (src, dst) = (tmp(), tmp());
    let names: Vec<Vec<u8>> = (0..25).map(|i| format!("f{i:02}").into_bytes()).collect();
    for n in &names {
        write(src.path(), n, b"x");
    }
    let t = local(dst.path());
    let mut j = job(src.path(), vec![t.clone()]);
    j.max_batch = 10;
    let batch = Batch {
        paths: names,
        ..Batch::default()
    };
    assert_eq!(plan(&j, &t, &batch, DMA, &[]).len(), 3);
    push(&j, &t, &batch, DMA, &[]);
    assert_same_tree(src.path(), dst.path(), "split batch");
}

#[test]
fn trees_run_of_a_vanished_tree_deletes_it_and_its_vanished_parent() {
    // The tree's ancestors are included so the tree can be reached; if they vanished from
    // the source too, the perishable `-p *` lets rsync delete them whole.
    let (src, dst) = (tmp(), tmp());
    write(dst.path(), b"a/new/x", b"x");
    write(dst.path(), b"a/other", b"o");
    write(dst.path(), b"keep", b"k");
    let t = local(dst.path());
    let batch = Batch {
        trees: vec![b"a/new".to_vec()],
        ..Batch::default()
    };
    push(&job(src.path(), vec![t.clone()]), &t, &batch, DMA, &[]);
    assert!(!exists(dst.path(), b"a"));
    assert!(exists(dst.path(), b"keep"));
}
