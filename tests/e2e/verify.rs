//! `syncd verify [--deep] [--fix] [--json]` with the real controller: drift made on
//! purpose on the target (a file deleted, one changed with its size and mtime kept, one
//! added) found by the right mode with the right counts and paths, fixed by `--fix`
//! (the second verify equal); a local target; exit 2 with the daemon stopped; a file
//! written continuously while syncd runs is reported as changing, not drift.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use syncd_tests::controller::show;
use syncd_tests::daemon::HOLD_FILE;
use syncd_tests::tree::source_dir;
use syncd_tests::{Controller, Diagnose, RsyncDaemon, Site, WorkerConfig};

/// `syncd verify <args> --json`: the exit code and the report.
fn verify(c: &Controller, args: &[&str]) -> (Option<i32>, serde_json::Value, Output) {
    let mut argv = vec!["verify", "--json"];
    argv.extend_from_slice(args);
    let out = c.cmd(&argv);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "syncd {argv:?} printed no JSON report ({e}):\n{}\n{}",
            show(&out),
            c.diagnose()
        )
    });
    (out.status.code(), json, out)
}

/// The paths of one kind in the first target's report (`kind` = "missing", …).
fn paths(report: &serde_json::Value, kind: &str) -> Vec<String> {
    report["targets"][0][kind]["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn count(report: &serde_json::Value, kind: &str) -> u64 {
    report["targets"][0][kind]["count"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// (missing, different, extra) in the first target's report.
fn counts(report: &serde_json::Value) -> (u64, u64, u64) {
    (
        count(report, "missing"),
        count(report, "different"),
        count(report, "extra"),
    )
}

/// The source tree every test starts from.
fn write_source(src: &Path) {
    fs::create_dir_all(src.join("dir")).expect("mkdir dir");
    fs::write(src.join("dir/kept.txt"), "kept").expect("write");
    fs::write(src.join("with space.txt"), "spaced").expect("write");
    fs::write(src.join("new\nline"), "newline").expect("write");
    fs::write(src.join("same-size.txt"), "original").expect("write");
}

/// A site whose daemon's module holds a copy of [`write_source`]'s tree (plain rsync).
fn seeded_site() -> Site {
    let site = Site::new();
    write_source(site.src());
    site.daemon.push_with_rsync(site.src());
    site
}

/// Drift on purpose in the target `dst`: two files deleted (one named with a space, one
/// with a newline), one changed with its size and mtime kept, one added.
fn make_drift(dst: &Path) {
    fs::remove_file(dst.join("with space.txt")).expect("rm on the target");
    fs::remove_file(dst.join("new\nline")).expect("rm on the target");
    let changed = dst.join("same-size.txt");
    let mtime = fs::metadata(&changed)
        .and_then(|m| m.modified())
        .expect("mtime");
    fs::write(&changed, "ORIGINAL").expect("rewrite on the target");
    fs::File::options()
        .write(true)
        .open(&changed)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore the mtime");
    fs::write(dst.join("dir/added.txt"), "added").expect("add on the target");
}

fn assert_exit(
    code: Option<i32>,
    want: i32,
    report: &serde_json::Value,
    out: &Output,
    c: &Controller,
) {
    assert_eq!(
        code,
        Some(want),
        "report: {report:#}\n{}\n{}",
        show(out),
        c.diagnose()
    );
}

/// Quick mode finds the deletions and the addition, not the same-size change; --deep
/// finds that too; --fix pushes exactly those paths and verifies again.
fn drift_is_found_and_fixed(c: &Controller, src: &Path, dst: &Path) {
    let (code, r, out) = verify(c, &[]);
    assert_exit(code, 1, &r, &out, c);
    assert_eq!(r["outcome"], "drift");
    assert_eq!(r["targets"][0]["mode"], "quick");
    let mut missing = paths(&r, "missing");
    missing.sort();
    assert_eq!(missing, ["new\nline", "with space.txt"], "{r:#}");
    assert_eq!(count(&r, "missing"), 2, "{r:#}");
    assert_eq!(count(&r, "different"), 0, "same size and mtime: {r:#}");
    assert_eq!(paths(&r, "extra"), ["dir/added.txt"], "{r:#}");
    assert_eq!(count(&r, "extra"), 1, "{r:#}");
    assert!(r["targets"][0]["seconds"].as_f64().is_some(), "{r:#}");
    // Nothing changed on the target.
    assert!(dst.join("dir/added.txt").exists() && !dst.join("with space.txt").exists());

    let (code, r, out) = verify(c, &["--deep"]);
    assert_exit(code, 1, &r, &out, c);
    assert_eq!(r["targets"][0]["mode"], "deep");
    assert_eq!(paths(&r, "different"), ["same-size.txt"], "{r:#}");
    assert_eq!(counts(&r), (2, 1, 1), "{r:#}");
    assert_eq!(
        fs::read_to_string(dst.join("same-size.txt")).expect("read"),
        "ORIGINAL",
        "a verify changes nothing"
    );

    let (code, r, out) = verify(c, &["--deep", "--fix"]);
    assert_exit(code, 0, &r, &out, c);
    let fix = &r["targets"][0]["fix"];
    assert_eq!(fix["paths"], 4, "exactly the drift: {r:#}");
    assert_eq!(fix["after"]["outcome"], "equal", "{r:#}");
    assert_eq!(r["outcome"], "equal", "{r:#}");

    let (code, r, out) = verify(c, &["--deep"]);
    assert_exit(code, 0, &r, &out, c);
    assert_eq!(
        fs::read_to_string(dst.join("same-size.txt")).expect("read"),
        "original"
    );
    assert!(!dst.join("dir/added.txt").exists());
    syncd_tests::tree::SyncCheck::new(src, dst).with(c).wait();
}

#[test]
fn drift_on_a_daemon_target_is_found_by_the_right_mode_and_fixed() {
    let site = seeded_site();
    let c = Controller::new(&site.config());
    let (code, r, out) = verify(&c, &[]);
    assert_exit(code, 0, &r, &out, &c);
    assert_eq!(r["outcome"], "equal");
    make_drift(&site.dst());
    drift_is_found_and_fixed(&c, site.src(), &site.dst());
}

#[test]
fn drift_on_a_local_target_is_found_and_fixed() {
    let src = source_dir();
    let state = tempfile::tempdir().expect("state tempdir");
    let dst = tempfile::tempdir().expect("target tempdir");
    write_source(src.path());
    let cfg = WorkerConfig::new(state.path(), src.path()).local(dst.path(), None);
    let c = Controller::new(&cfg);
    // An empty target: everything is missing.
    let (code, r, out) = verify(&c, &[]);
    assert_exit(code, 1, &r, &out, &c);
    assert_eq!(count(&r, "missing"), 5, "dir, 4 files: {r:#}");
    let (code, r, out) = verify(&c, &["--fix"]);
    assert_exit(code, 0, &r, &out, &c);
    make_drift(dst.path());
    drift_is_found_and_fixed(&c, src.path(), dst.path());
}

#[test]
fn a_target_that_cannot_be_reached_is_exit_2() {
    let mut site = seeded_site();
    site.daemon.stop();
    let c = Controller::new(&site.config());
    let (code, r, out) = verify(&c, &[]);
    assert_exit(code, 2, &r, &out, &c);
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["targets"][0]["outcome"], "failed");
    let error = r["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{r:#}");
    // The text form says so too.
    let out = c.cmd(&["verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("could not be checked"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_file_written_while_syncd_runs_is_changing_not_drift_and_real_drift_stays() {
    let site = seeded_site();
    let c = Controller::new(&site.config());
    c.start();
    let growing = site.src().join("growing.log");
    fs::write(&growing, "first line\n").expect("write growing.log");
    syncd_tests::wait::must(
        "growing.log on the target",
        Duration::from_secs(20),
        &[&c, &site.daemon],
        || site.dst().join("growing.log").exists(),
    );
    // From now on appended to (opened, written, closed: each close is a change the
    // daemon pushes) until verify has ended: the target is always a little behind.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, growing) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Ok(mut f) = fs::File::options().append(true).open(&growing) {
                    let _ = writeln!(f, "line {n} at {:?}", SystemTime::now());
                }
                // Pacing of the writer, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Real drift meanwhile, which the daemon knows nothing of: still drift.
    fs::remove_file(site.dst().join("dir/kept.txt")).expect("rm on the target");
    let (code, r, out) = verify(&c, &[]);
    // --fix does not push beside the daemon.
    let fix = c.cmd(&["verify", "--fix"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer thread");
    assert_exit(code, 1, &r, &out, &c);
    assert_eq!(paths(&r, "missing"), ["dir/kept.txt"], "{r:#}");
    assert_eq!(counts(&r), (1, 0, 0), "{r:#}");
    assert_eq!(paths(&r, "changing"), ["growing.log"], "{r:#}");
    assert_eq!(fix.status.code(), Some(2), "{}", show(&fix));
    assert!(
        String::from_utf8_lossy(&fix.stderr).contains("syncd is running"),
        "{}",
        show(&fix)
    );
    c.stop();
}

#[test]
fn the_periodic_verify_puts_its_result_in_the_status() {
    let site = seeded_site();
    fs::remove_file(site.dst().join("dir/kept.txt")).expect("rm on the target");
    let c = Controller::new(&site.config().raw("[sync.verify]\ninterval = \"10s\""));
    c.start();
    let v = c.wait_status(
        "a periodic verify's result in the status",
        Duration::from_secs(40),
        &[&site.daemon],
        |s| !s["worker"]["syncs"][0]["targets"][0]["verify"].is_null(),
    );
    let v = &v["worker"]["syncs"][0]["targets"][0]["verify"];
    assert_eq!(v["outcome"], "drift", "{v:#}");
    assert_eq!(
        (&v["missing"], &v["different"], &v["extra"]),
        (&1.into(), &0.into(), &0.into()),
        "{v:#}"
    );
    assert!(
        v["seconds"].as_f64().is_some() && v["error"].is_null(),
        "{v:#}"
    );
    let finished = v["finished_at"].as_f64().unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    assert!(finished > now - 60.0 && finished <= now + 1.0, "{v:#}");
    let out = c.cmd(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("DRIFT: 1 missing, 0 different, 0 extra on the target"),
        "{}",
        show(&out)
    );
    c.stop();
}

#[test]
fn fix_keeps_to_the_deletion_guard_and_deletes_an_extra_directory_whole() {
    let src = source_dir();
    let state = tempfile::tempdir().expect("state tempdir");
    let dst = tempfile::tempdir().expect("target tempdir");
    for name in ["a", "b"] {
        fs::write(src.path().join(name), name).expect("write");
        fs::write(dst.path().join(name), name).expect("write");
    }
    fs::create_dir(dst.path().join("junk")).expect("mkdir junk");
    for i in 0..5 {
        fs::write(dst.path().join(format!("junk/{i}")), "x").expect("write junk");
    }
    let cfg = WorkerConfig::new(state.path(), src.path()).local(dst.path(), None);
    let c = Controller::new(&cfg);
    // 6 extra entries against 2 in the source: more than max_delete (50 %) allows.
    let (code, r, out) = verify(&c, &["--fix"]);
    assert_exit(code, 2, &r, &out, &c);
    assert_eq!(counts(&r), (0, 0, 6), "{r:#}");
    let error = r["targets"][0]["fix"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("deletion guard"), "{r:#}");
    assert!(dst.path().join("junk/4").exists(), "nothing was deleted");

    // With 20 more files in the source the same 6 deletions are within the guard.
    for i in 0..20 {
        fs::write(src.path().join(format!("f{i}")), "f").expect("write");
    }
    let (code, r, out) = verify(&c, &["--fix"]);
    assert_exit(code, 0, &r, &out, &c);
    assert_eq!(counts(&r), (20, 0, 6), "{r:#}");
    // junk is listed once, not with its 5 files: 20 + 1 paths.
    assert_eq!(r["targets"][0]["fix"]["paths"], 21, "{r:#}");
    assert!(!dst.path().join("junk").exists());
    syncd_tests::tree::SyncCheck::new(src.path(), dst.path())
        .with(&c)
        .wait();
}

#[test]
fn a_busy_daemon_is_waited_for_as_a_push_would() {
    let site = Site::with_daemon(RsyncDaemon::start_with_module_settings(
        "max connections = 1\n",
    ));
    write_source(site.src());
    site.daemon.push_with_rsync(site.src());
    let c = Controller::new(&site.config());
    let mut slot = site.daemon.hold_slot();
    let refusals = site.daemon.log_count("max connections (1) reached");
    let pending = c.spawn_cmd(&["verify", "--json"]);
    // verify was refused at least once, and keeps trying…
    site.daemon.wait_log(
        "max connections (1) reached",
        refusals,
        Duration::from_secs(20),
        &[&c],
    );
    slot.release();
    // …until the slot is free: a result, not "could not be checked".
    let out = pending.finish(&c);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", show(&out)));
    assert_exit(out.status.code(), 1, &r, &out, &c);
    // The slot holder's file, written into the module, is the only drift.
    assert_eq!(paths(&r, "extra"), [HOLD_FILE], "{r:#}");
    assert_eq!(counts(&r), (0, 0, 1), "{r:#}");
}
