//! `init/syncd.init` driven as rc and operators drive it (`sh syncd.init ACTION`) against
//! the real controller, no package needed: LSB exit codes passed through (status 3 → start
//! 0 → status 0 → reload 0 → restart 0 → try-restart 0 → stop 0 → status 3; reload when
//! stopped 7; an unknown action 2), RHEL's `/var/lock/subsys/syncd` touched on start and
//! removed on stop (status 2 when it outlives the daemon), a file synced to a local
//! directory while the script's daemon runs, the RHEL and Debian function libraries used
//! when present, a removed binary (stop 0, status 4, start 5), the header chkconfig
//! and insserv read; and the example configs in `init/` load with the worker's loader.
//!
//! Each test builds a fake root (`SYNCD_INIT_ROOT`) holding the defaults file, which points
//! `SYNCD_BIN` at the built `syncd` and `SYNCD_OPTS` at the `Controller` fixture's paths,
//! so the fixture's Drop stops whatever the script started.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use syncd_tests::controller::{is_alive, show, syncd_bin, wait_child, wait_gone};
use syncd_tests::tree::write_file;
use syncd_tests::worker::run_to_exit;
use syncd_tests::{assert_in_sync, toml_str, Controller, Diagnose, WorkerConfig};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// One action of the script (start waits for the watches, stop for the drain).
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/syncd.init")
}

/// Which function library the fake root offers.
#[derive(Clone, Copy)]
enum Library {
    None,
    /// A stub `/etc/init.d/functions` whose `success`/`failure` print markers.
    Rhel,
    /// `/lib/lsb/init-functions`: the machine's own when it has one, else a stub.
    Lsb,
}

/// A fake root for the script, a local target directory and the controller fixture whose
/// paths the defaults file names.
struct Rig {
    /// First, so its Drop stops a daemon left running before the directories go.
    ctl: Controller,
    root: tempfile::TempDir,
    dst: tempfile::TempDir,
    src: tempfile::TempDir,
}

impl Rig {
    fn new(lib: Library) -> Rig {
        let src = tempfile::Builder::new()
            .prefix("syncd-e2e-src.")
            .tempdir()
            .expect("create a source tempdir");
        let dst = tempfile::Builder::new()
            .prefix("syncd-e2e-dst.")
            .tempdir()
            .expect("create a target tempdir");
        let root = tempfile::Builder::new()
            .prefix("syncd-e2e-initroot.")
            .tempdir()
            .expect("create the fake root");
        let state_dir = root.path().join("var/lib/syncd");
        let cfg = WorkerConfig::new(&state_dir, src.path()).local(dst.path(), Some("local"));
        let ctl = Controller::new(&cfg);
        let r = root.path();
        fs::create_dir_all(r.join("var/lock/subsys")).expect("mkdir var/lock/subsys");
        // RHEL reads /etc/sysconfig/syncd, Debian /etc/default/syncd: one of each style.
        let defaults = match lib {
            Library::Rhel => r.join("etc/sysconfig/syncd"),
            _ => r.join("etc/default/syncd"),
        };
        fs::create_dir_all(defaults.parent().expect("has a parent")).expect("mkdir etc/...");
        let opts = ctl.path_flags().join(" ");
        assert!(
            !ctl.config_path()
                .to_string_lossy()
                .contains(char::is_whitespace)
                && !opts.contains("  ")
                && ctl
                    .path_flags()
                    .iter()
                    .all(|f| !f.contains(char::is_whitespace)),
            "the test's paths must not contain whitespace (SYNCD_OPTS is split on it): {opts}"
        );
        fs::write(
            &defaults,
            format!(
                "SYNCD_BIN=\"{}\"\nSYNCD_CONFIG=\"{}\"\nSYNCD_OPTS=\"{opts}\"\nSYNCD_STOP_OPTS=\"--timeout 20s\"\n",
                syncd_bin().display(),
                ctl.config_path().display()
            ),
        )
        .expect("write the defaults file");
        match lib {
            Library::None => {}
            Library::Rhel => {
                fs::create_dir_all(r.join("etc/init.d")).expect("mkdir etc/init.d");
                fs::write(
                    r.join("etc/init.d/functions"),
                    "# stub of RHEL's /etc/init.d/functions\n\
                     success() { printf '[  OK  ]'; }\n\
                     failure() { printf '[FAILED]'; }\n",
                )
                .expect("write the functions stub");
            }
            Library::Lsb => {
                fs::create_dir_all(r.join("lib/lsb")).expect("mkdir lib/lsb");
                let real = Path::new("/lib/lsb/init-functions");
                if real.exists() {
                    std::os::unix::fs::symlink(real, r.join("lib/lsb/init-functions"))
                        .expect("link the machine's init-functions");
                } else {
                    fs::write(
                        r.join("lib/lsb/init-functions"),
                        "log_success_msg() { echo \"$@\"; }\n\
                         log_failure_msg() { echo \"$@\" failed; }\n",
                    )
                    .expect("write the init-functions stub");
                }
            }
        }
        Rig {
            root,
            dst,
            src,
            ctl,
        }
    }

    fn lockfile(&self) -> PathBuf {
        self.root.path().join("var/lock/subsys/syncd")
    }

    /// `sh init/syncd.init ACTION` with this rig's root, in a clean environment.
    fn run(&self, action: &str) -> Output {
        self.run_env(action, &[])
    }

    fn run_env(&self, action: &str, env: &[(&str, &str)]) -> Output {
        let dir = self.ctl.dir();
        let out_path = dir.join(format!("init-{action}.out"));
        let err_path = dir.join(format!("init-{action}.err"));
        let mut child = Command::new("sh")
            .arg(script())
            .arg(action)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SYNCD_INIT_ROOT", self.root.path())
            .env("SYNCD_NO_SYSCTL", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("create stdout file"))
            .stderr(fs::File::create(&err_path).expect("create stderr file"))
            .spawn()
            .expect("run sh init/syncd.init");
        let status = wait_child(&mut child, ACTION_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "`syncd.init {action}` did not exit within {ACTION_TIMEOUT:?}\n{}",
                self.ctl.diagnose()
            )
        });
        let out = Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read(&err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(out_path);
        let _ = fs::remove_file(err_path);
        let _ = self.ctl.controller_pid(); // remembered for the fixture's Drop
        out
    }

    /// Run ACTION and insist on exit code `want`; returns the output.
    fn expect(&self, action: &str, want: i32) -> Output {
        let out = self.run(action);
        assert_eq!(
            out.status.code(),
            Some(want),
            "`syncd.init {action}`: expected exit {want}\n{}\n{}",
            show(&out),
            self.ctl.diagnose()
        );
        out
    }

    fn running_pid(&self) -> u32 {
        let pid = self.ctl.controller_pid().unwrap_or_else(|| {
            panic!(
                "no pid in the pidfile while running\n{}",
                self.ctl.diagnose()
            )
        });
        assert!(
            is_alive(pid),
            "controller pid {pid} is not alive\n{}",
            self.ctl.diagnose()
        );
        pid
    }
}

#[test]
fn start_status_reload_restart_stop_pass_the_controllers_codes() {
    let rig = Rig::new(Library::None);
    rig.expect("status", 3);
    rig.expect("try-restart", 0); // stopped: nothing to do, success
    rig.expect("status", 3);
    rig.expect("reload", 7);

    let out = rig.expect("start", 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Starting syncd: OK"),
        "plain style (no function library): {}",
        show(&out)
    );
    assert!(
        rig.lockfile().exists(),
        "start must touch var/lock/subsys/syncd"
    );
    let pid = rig.running_pid();
    rig.expect("status", 0);
    rig.expect("start", 0); // already running is success (LSB)
    assert_eq!(
        rig.running_pid(),
        pid,
        "a second start must not replace the daemon"
    );

    write_file(
        &rig.src.path().join("a/b.txt"),
        b"pushed by the init script's daemon\n",
    );
    assert_in_sync(rig.src.path(), rig.dst.path(), SYNC_TIMEOUT, &[&rig.ctl]);

    rig.expect("reload", 0);
    rig.expect("force-reload", 0);
    rig.expect("status", 0);

    rig.expect("restart", 0);
    let pid2 = rig.running_pid();
    assert_ne!(pid, pid2, "restart must start a new controller");
    wait_gone(
        pid,
        Duration::from_secs(10),
        "the controller before restart",
        &[&rig.ctl],
    );
    rig.expect("condrestart", 0);
    let pid3 = rig.running_pid();
    assert_ne!(
        pid2, pid3,
        "condrestart of a running daemon must restart it"
    );
    write_file(&rig.src.path().join("c.txt"), b"after the restarts\n");
    assert_in_sync(rig.src.path(), rig.dst.path(), SYNC_TIMEOUT, &[&rig.ctl]);

    rig.expect("stop", 0);
    wait_gone(
        pid3,
        Duration::from_secs(10),
        "the controller after stop",
        &[&rig.ctl],
    );
    rig.ctl.wait_no_processes(Duration::from_secs(10));
    assert!(
        !rig.lockfile().exists(),
        "stop must remove var/lock/subsys/syncd"
    );
    rig.expect("status", 3);
    rig.expect("stop", 0); // stopped already: success (LSB)

    // The subsys lock without a daemon: LSB status 2.
    fs::write(rig.lockfile(), b"").expect("touch the subsys lock");
    rig.expect("status", 2);

    let out = rig.expect("bogus", 2);
    assert!(show(&out).contains("Usage:"), "{}", show(&out));
}

#[test]
fn rhel_functions_and_sysconfig_are_used() {
    let rig = Rig::new(Library::Rhel);
    let out = rig.expect("start", 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Starting syncd: [  OK  ]"),
        "start must report through /etc/init.d/functions' success\n{}",
        show(&out)
    );
    rig.running_pid();
    let out = rig.expect("stop", 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Stopping syncd: [  OK  ]"),
        "{}",
        show(&out)
    );
    rig.expect("status", 3);
}

#[test]
fn lsb_init_functions_are_used() {
    let rig = Rig::new(Library::Lsb);
    let out = rig.expect("start", 0);
    // Debian's log_success_msg prints the message (the stub does the same).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Starting syncd"),
        "{}",
        show(&out)
    );
    rig.running_pid();
    rig.expect("status", 0);
    rig.expect("stop", 0);
    rig.expect("status", 3);
}

#[test]
fn a_removed_binary_stops_cleanly_and_says_not_installed() {
    let rig = Rig::new(Library::None);
    let gone = [("SYNCD_BIN", "/nonexistent/syncd")];
    // The defaults file names the real binary: drop that line so the environment's wins.
    let defaults = rig.root.path().join("etc/default/syncd");
    let text = fs::read_to_string(&defaults).expect("read the defaults file");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("SYNCD_BIN="))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&defaults, text).expect("rewrite the defaults file");
    for (action, want) in [("stop", 0), ("status", 4), ("start", 5), ("restart", 5)] {
        let out = rig.run_env(action, &gone);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{action} without the binary\n{}",
            show(&out)
        );
    }
}

#[test]
fn header_is_what_chkconfig_and_insserv_read() {
    let text = fs::read_to_string(script()).expect("read init/syncd.init");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#!/bin/sh");
    // chkconfig stops at the first levels + description: its line comes first.
    let first_comment = lines[1..]
        .iter()
        .find(|l| l.starts_with('#') && l.len() > 1)
        .expect("a comment after the shebang");
    let words: Vec<&str> = first_comment.split_whitespace().collect();
    assert!(
        words.len() == 5
            && words[1] == "chkconfig:"
            && words[2] == "2345"
            && words[3].parse::<u8>().is_ok()
            && words[4].parse::<u8>().is_ok(),
        "first comment must be `# chkconfig: 2345 NN NN`, got {first_comment:?}"
    );
    let begin = lines
        .iter()
        .position(|l| *l == "### BEGIN INIT INFO")
        .expect("LSB block");
    let end = lines
        .iter()
        .position(|l| *l == "### END INIT INFO")
        .expect("LSB block end");
    assert!(
        lines[..begin]
            .iter()
            .any(|l| l.starts_with("# description:")),
        "`# description:` must precede the LSB block"
    );
    let block = &lines[begin + 1..end];
    for key in [
        "Provides:",
        "Required-Start:",
        "Required-Stop:",
        "Default-Start:",
        "Default-Stop:",
        "Short-Description:",
        "Description:",
    ] {
        assert!(
            block
                .iter()
                .any(|l| l.strip_prefix("# ").is_some_and(|r| r.starts_with(key))),
            "LSB block lacks {key}"
        );
    }
    let value = |key: &str| {
        block
            .iter()
            .find_map(|l| l.strip_prefix("# ")?.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(value("Provides:"), ["syncd"]);
    assert_eq!(value("Default-Start:"), ["2", "3", "4", "5"]);
    assert_eq!(value("Default-Stop:"), ["0", "1", "6"]);
    assert!(
        value("Required-Start:").contains(&"$remote_fs"),
        "NFS sources need $remote_fs"
    );
}

/// The shipped example configs load with the worker's own loader. They name /data, which
/// the loader insists exists: as shipped the only complaint may be that, and a copy whose
/// source is a real directory must be accepted.
#[test]
fn example_configs_load_with_the_workers_loader() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init");
    let src = tempfile::Builder::new()
        .prefix("syncd-e2e-src.")
        .tempdir()
        .expect("create a source tempdir");
    let conf = tempfile::Builder::new()
        .prefix("syncd-e2e-conf.")
        .tempdir()
        .expect("create a config tempdir");
    for name in ["syncd-nfs.toml", "syncd.toml"] {
        let path = root.join(name);
        let text = fs::read_to_string(&path).expect("read the example config");
        let line = "source = \"/data\"\n";
        assert_eq!(
            text.matches(line).count(),
            1,
            "{name}: expected one `{}` line",
            line.trim_end()
        );
        let (status, out, err) = run_to_exit(&check_args(&path), Duration::from_secs(20));
        assert!(
            status.code() == Some(2)
                && err.contains("source directory /data does not exist")
                && err.lines().filter(|l| l.contains(name)).count() == 1,
            "{name} as shipped: only the missing /data may be wrong\n{status}\n{out}\n{err}"
        );
        let copy = conf.path().join(name);
        let replaced = text.replace(
            line,
            &format!("source = {}\n", toml_str(&src.path().to_string_lossy())),
        );
        fs::write(&copy, replaced).expect("write the config copy");
        let (status, out, err) = run_to_exit(&check_args(&copy), Duration::from_secs(20));
        assert!(
            status.success() && out.contains("OK"),
            "{name} with an existing source must load\n{status}\n{out}\n{err}"
        );
    }
}

fn check_args(config: &Path) -> Vec<std::ffi::OsString> {
    vec!["--config".into(), config.into(), "--check".into()]
}
