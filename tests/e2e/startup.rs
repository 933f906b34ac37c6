//! Starting the worker: the initial sync, a sersync `confxml.xml` as the config, and bad
//! configs that are refused (clear error, exit 2, nothing started, no status file).

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;

use syncd_tests::tree::{chmod, source_dir, write_file};
use syncd_tests::worker::{run_to_exit, toml_str};
use syncd_tests::{assert_in_sync, wait, Diagnose, Site, TreeWriter, Worker, WorkerConfig};

fn populate_before_start(src: &Path) {
    let mut tw = TreeWriter::new(9);
    tw.files(src, &["pre", "pre/deeper", "."], 300, 0, 20_000);
    std::os::unix::fs::symlink("pre/f00000", src.join("link")).expect("symlink");
    // Files go round-robin over the dirs: f00000, f00003… land in `pre`.
    chmod(&src.join("pre/f00003"), 0o600);
}

#[test]
fn initial_sync_pushes_existing_files_and_removes_stale_ones() {
    let site = Site::new();
    populate_before_start(site.src());
    write_file(&site.dst().join("stale"), b"not in the source");
    write_file(&site.dst().join("pre/f00006"), b"outdated content");
    let mut w = Worker::start(&site.config().initial_sync(true));
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.wait_status(
        "full_syncs >= 1 after the initial sync",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    w.stop();
}

/// The demo's first `syncd status` said "pushing: 100%, 7/7 files … 0 pushes ok" right
/// after the file it had written arrived: the status file was rewritten at most every
/// 200 ms, so the end of a push showed up to 200 ms late. A push's end is written at once,
/// before its "pushed" log line: whoever sees the line finds the status counting it, with
/// nothing in flight and no progress left over.
#[test]
fn the_status_counts_a_push_by_the_time_the_log_says_it_went() {
    let site = Site::new();
    TreeWriter::new(12).files(site.src(), &["a", "b"], 5, 0, 2000);
    let mut w = Worker::start(&site.config().initial_sync(true));
    w.wait_log("pushed the whole tree", Duration::from_secs(30));
    const SAID: &str = "pushed 1 path";
    for n in 1..=3u64 {
        write_file(
            &site.src().join(format!("new{n}.txt")),
            b"after the initial sync",
        );
        wait::must(
            format_args!("{n} \"{SAID}\" lines in the worker's log"),
            Duration::from_secs(20),
            &[&w, &site.daemon],
            || (w.log().matches(SAID).count() as u64 >= n).then_some(()),
        );
        let status = w.status().expect("a status file");
        let t = &status.syncs[0].targets[0];
        assert!(
            t.pushes_ok == n + 1 && t.in_flight == 0 && t.progress.is_none(),
            "the log says push {} went, the status file says pushes_ok {}, in_flight {}, \
             progress {:?}\n{}",
            n + 1,
            t.pushes_ok,
            t.in_flight,
            t.progress,
            w.diagnose()
        );
    }
    w.stop();
}

#[test]
fn initial_sync_flag_pushes_existing_files_to_local_target() {
    let src = source_dir();
    let state = source_dir();
    let dst = source_dir();
    populate_before_start(src.path());
    write_file(&dst.path().join("stale"), b"not in the source");
    let cfg = WorkerConfig::new(state.path(), src.path()).local(dst.path(), None);
    let mut w = Worker::start_with(
        &cfg.to_toml(),
        "syncd.toml",
        state.path(),
        &["--initial-sync"],
    );
    assert_in_sync(src.path(), dst.path(), Duration::from_secs(30), &[&w]);
    w.stop();
}

#[test]
fn sersync_confxml_runs_with_its_filter_honoured() {
    let site = Site::new();
    let xml = site.sersync_confxml(&["(.*)\\.tmp", "^cache/*"], &["*.php"]);
    let state = site.state.path().to_string_lossy().into_owned();
    let mut w = Worker::start_with(
        &xml,
        "confxml.xml",
        site.state.path(),
        &["--state-dir", &state],
    );
    let mut tw = TreeWriter::new(11);
    tw.files(site.src(), &["web", "web/img"], 200, 0, 20_000);
    tw.file(&site.src().join("web/upload.tmp"), 100);
    tw.file(&site.src().join("x.tmp"), 100);
    tw.file(&site.src().join("cache/page"), 100);
    let excluded = |rel: &Path| {
        let s = rel.to_string_lossy();
        s.ends_with(".tmp") || s.starts_with("cache")
    };
    site.check(&w)
        .ignore(excluded)
        .forbid_on_target(excluded)
        .within(Duration::from_secs(30))
        .wait();
    w.stop();
}

/// Run the worker on a bad config, with and without `--check`: each run must exit 2 with
/// every one of `expect` in its stderr, and no status file may appear.
fn assert_refused(what: &str, config: &str, state: &Path, expect: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir for the config");
    let file = dir.path().join("syncd.toml");
    fs::write(&file, config).expect("write config");
    for check in [true, false] {
        let mut args: Vec<OsString> = vec!["--config".into(), file.clone().into()];
        if check {
            args.push("--check".into());
        }
        let (status, _out, err) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(2),
            "{what} (check={check}): expected exit 2, got {status}; stderr:\n{err}\nconfig:\n{config}"
        );
        for e in expect {
            assert!(
                err.contains(e),
                "{what} (check={check}): stderr should mention {e:?}; stderr:\n{err}"
            );
        }
        assert!(
            !state.join("status.json").exists(),
            "{what} (check={check}): a status file was written for a refused config"
        );
    }
}

/// A valid config (as text) whose `[[sync]]` block gets `sync_extra` lines and whose
/// target is `dest`.
fn config_text(state: &Path, source: &str, sync_extra: &str, dest: &str) -> String {
    format!(
        "state_dir = {state}\n\n[[sync]]\nsource = {source}\n{sync_extra}\n[[sync.target]]\ndest = {dest}\n",
        state = toml_str(&state.to_string_lossy()),
        source = toml_str(source),
        dest = toml_str(dest),
    )
}

#[test]
fn bad_configs_are_refused_with_a_clear_error_and_exit_2() {
    let src = source_dir();
    let state = source_dir();
    let dst = source_dir();
    let source = src.path().to_string_lossy().into_owned();
    let dest = dst.path().to_string_lossy().into_owned();

    // The control: the same config without a fault passes --check (so each refusal below
    // is about its one fault).
    let good = config_text(state.path(), &source, "", &dest);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("good.toml"), &good).expect("write");
    let (st, _, err) = run_to_exit(
        &[
            "--config".into(),
            dir.path().join("good.toml").into(),
            "--check".into(),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(
        st.code(),
        Some(0),
        "a valid config failed --check: {err}\n{good}"
    );

    // Unknown key: line 5 of this text (state_dir, blank, [[sync]], source, then it).
    let unknown = config_text(state.path(), &source, "delya = \"20ms\"", &dest);
    assert_eq!(unknown.lines().nth(4), Some("delya = \"20ms\""));
    assert_refused("unknown key", &unknown, state.path(), &["delya"]);
    let err = refused_stderr(&unknown);
    assert!(
        has_line_and_column(&err, 5),
        "unknown key: stderr should give line 5 and a column (`FILE:5:COL` or `line 5, column \
         COL`): {err}"
    );

    let missing = src.path().join("does-not-exist");
    assert_refused(
        "missing source dir",
        &config_text(state.path(), &missing.to_string_lossy(), "", &dest),
        state.path(),
        &[&missing.to_string_lossy()],
    );
    assert_refused(
        "bad regex",
        &config_text(state.path(), &source, "exclude = ['(unclosed']", &dest),
        state.path(),
        &["(unclosed"],
    );
    assert_refused(
        "bad dest",
        &config_text(state.path(), &source, "", "rsync_backup@127.0.0.1::"),
        state.path(),
        &["rsync_backup@127.0.0.1::"],
    );
    assert_refused(
        "bad duration",
        &config_text(state.path(), &source, "delay = \"20 parsecs\"", &dest),
        state.path(),
        &["20 parsecs"],
    );
}

/// `FILE:LINE:COL` or `line LINE, column COL` for this line.
fn has_line_and_column(text: &str, line: usize) -> bool {
    let colon = format!(":{line}:");
    let by_colon = text.match_indices(&colon).any(|(i, m)| {
        text[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    by_colon || (text.contains(&format!("line {line}")) && text.contains("column"))
}

fn refused_stderr(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("syncd.toml");
    fs::write(&file, config).expect("write config");
    let (_, _, err) = run_to_exit(
        &["--config".into(), file.into(), "--check".into()],
        Duration::from_secs(10),
    );
    err
}

/// An idle worker stops rewriting its status file (it used to every 2 s, waking the
/// whole engine for nothing): once the start-up push and the catch-up checkpoint have
/// settled, `updated_at` stays put for 5 s on end, and a change still gets written.
#[test]
fn an_idle_worker_stops_rewriting_its_status() {
    let site = Site::new();
    write_file(&site.src().join("a.txt"), b"a");
    let mut w = Worker::start(&site.config().initial_sync(true));
    site.check(&w).within(Duration::from_secs(30)).wait();
    let quiet_at = wait::quiet(
        "the status's updated_at",
        Duration::from_secs(5),
        Duration::from_secs(30),
        &[&w, &site.daemon],
        || w.status().map(|s| s.updated_at),
    );
    write_file(&site.src().join("b.txt"), b"b");
    site.check(&w).within(Duration::from_secs(30)).wait();
    w.wait_status(
        "a status write for the change",
        Duration::from_secs(30),
        &[],
        |s| s.updated_at > quiet_at && s.syncs[0].targets[0].pushes_ok >= 2,
    );
}

/// `watcher = "auto"` on this machine (root, Linux 5.17+, the tempdir's file system marks
/// and reopens handles) is fanotify: the status and the log say so and why, no
/// directory is watched one by one, and changes arrive through it.
#[test]
fn auto_watches_with_fanotify_here_and_says_why() {
    let site = Site::new();
    for d in ["a/b", "c"] {
        fs::create_dir_all(site.src().join(d)).expect("mkdir");
    }
    let mut w = Worker::start(&site.config().watcher("auto").initial_sync(true));
    let st = w.status().expect("a status file");
    let sync = &st.syncs[0];
    assert_eq!(sync.watcher.as_deref(), Some("fanotify"), "{:?}", sync);
    let why = sync.watcher_reason.as_deref().unwrap_or_default();
    assert!(
        why.starts_with("watcher = \"auto\": one mark on the"),
        "{why}"
    );
    assert_eq!(sync.watched_dirs, 0, "no inotify watch per directory");
    assert!(
        w.log().contains("watching every directory under"),
        "{}",
        w.log()
    );
    write_file(&site.src().join("a/b/new.txt"), b"through fanotify");
    assert_in_sync(site.src(), &site.dst(), Duration::from_secs(30), &[&w]);
    w.stop();
}
