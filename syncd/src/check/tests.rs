//! Tests of `syncd check`: classification tables, and real `rsync --daemon` (the shared
//! harness's, `syncd_tests`), ssh and listener fixtures on 127.0.0.1 for the reach checks.

use super::*;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use syncd_tests::daemon::{write_private, MODULE, USER};
use syncd_tests::RsyncDaemon;
use syncd_worker::config::WatcherChoice;

use crate::sysctl::Limits;

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

/// The shared harness's `rsync --daemon` on 127.0.0.1 (module [`MODULE`], auth user
/// [`USER`]), with a wrong password file beside its right one.
struct Daemon {
    daemon: RsyncDaemon,
    wrong: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let wrong = tempfile::tempdir().expect("tempdir");
        write_private(&wrong.path().join("bad.pw"), "wrong-password\n");
        Daemon {
            daemon: RsyncDaemon::start(),
            wrong,
        }
    }

    /// `"good.pw"` is the daemon's password file, `"bad.pw"` the wrong one.
    fn password_file(&self, pw: &str) -> PathBuf {
        match pw {
            "good.pw" => self.daemon.password_file(),
            _ => self.wrong.path().join(pw),
        }
    }

    fn target(&self, name: &str, module: &str, pw: &str) -> Target {
        Target {
            name: name.into(),
            kind: TargetKind::Daemon {
                user: Some(USER.into()),
                host: "127.0.0.1".into(),
                module: module.into(),
                port: Some(self.daemon.port()),
                password_file: Some(self.password_file(pw)),
            },
        }
    }
}

/// A loaded config whose one sync has `targets` (the source is a fresh tempdir).
fn config_with(targets: Vec<Target>) -> (tempfile::TempDir, Config) {
    let src = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(src.path().join("a/b")).expect("mkdir");
    let text = format!(
        "[[sync]]\nsource = \"{}\"\n[[sync.target]]\ndest = \"/nonexistent-check-target\"\n",
        src.path().display()
    );
    let mut config = syncd_worker::config::parse(text.as_bytes(), Path::new("/etc/syncd/t.toml"))
        .expect("config");
    config.syncs[0].targets = targets;
    (src, config)
}

fn job_of(config: &Config) -> &SyncJob {
    &config.syncs[0]
}

#[test]
fn real_daemon_ok_wrong_password_wrong_module_and_nothing_listening() {
    let daemon = Daemon::start();
    let closed = free_port();
    let nobody = Target {
        name: "nobody-home".into(),
        kind: TargetKind::Daemon {
            user: Some(USER.into()),
            host: "127.0.0.1".into(),
            module: MODULE.into(),
            port: Some(closed),
            password_file: Some(daemon.password_file("good.pw")),
        },
    };
    let (_src, config) = config_with(vec![
        daemon.target("good", MODULE, "good.pw"),
        daemon.target("badpw", MODULE, "bad.pw"),
        daemon.target("badmod", "nosuchmodule", "good.pw"),
        nobody,
    ]);
    let job = job_of(&config);
    let t = Duration::from_secs(5);
    let got: Vec<Finding> = job
        .targets
        .iter()
        .map(|target| reach(job, target, &format!("target {}", target.name), t))
        .collect();
    let lines: Vec<String> = got.iter().map(render).collect();
    let show = lines.join("\n");
    assert_eq!(got[0].status, Status::Ok, "{show}");
    assert!(
        lines[0].starts_with("ok       target good: reachable"),
        "{show}"
    );
    assert_eq!(got[1].status, Status::Problem, "{show}");
    assert!(
        lines[1].starts_with("problem  target badpw: ")
            && lines[1].contains(&format!("auth failed on module {MODULE}"))
            && lines[1].contains(&format!("bad.pw must be the password of {USER}")),
        "{show}"
    );
    assert_eq!(got[2].status, Status::Problem, "{show}");
    assert!(
        lines[2].starts_with("problem  target badmod: ")
            && lines[2].contains("Unknown module 'nosuchmodule'")
            && lines[2].contains("has no module \"nosuchmodule\""),
        "{show}"
    );
    assert_eq!(got[3].status, Status::Problem, "{show}");
    assert!(
        lines[3].starts_with("problem  target nobody-home: ")
            && lines[3].contains("Connection refused")
            && lines[3].contains(&format!("no rsync daemon listens on 127.0.0.1:{closed}")),
        "{show}"
    );
    // No password file for a module that wants one: rsync has no terminal to ask on
    // (its own session), so it fails at once instead of hanging.
    let mut nopw = daemon.target("nopw", MODULE, "good.pw");
    if let TargetKind::Daemon { password_file, .. } = &mut nopw.kind {
        *password_file = None;
    }
    let started = Instant::now();
    let f = reach(job, &nopw, "target nopw", t);
    assert!(
        started.elapsed() < t,
        "{:?}: {}",
        started.elapsed(),
        render(&f)
    );
    assert_eq!(f.status, Status::Problem, "{}", render(&f));
    assert!(
        render(&f).contains("auth failed") && render(&f).contains("set password_file"),
        "{}",
        render(&f)
    );
    // Nothing was written to the module.
    let entries = fs::read_dir(daemon.daemon.path()).expect("readdir").count();
    assert_eq!(entries, 0);
}

#[test]
fn a_fanotify_source_needs_no_directory_watches() {
    let (_src, config) = config_with(Vec::new());
    let (f, dirs) = source_finding(job_of(&config), false);
    assert_eq!(dirs, 3, "{}", render(&f));
    assert!(
        render(&f).ends_with(": readable, 3 directories to watch (excludes left out)"),
        "{}",
        render(&f)
    );
    let (f, dirs) = source_finding(job_of(&config), true);
    assert_eq!((f.status, dirs), (Status::Ok, 0), "{}", render(&f));
    assert!(
        render(&f).ends_with(": readable (fanotify: no directory watched one by one)"),
        "{}",
        render(&f)
    );
}

#[test]
fn gather_over_a_whole_config_and_the_exit_code() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().expect("tempdir");
    let proc = out.path().join("proc");
    fs::create_dir_all(proc.join("fs/inotify")).expect("mkdir");
    fs::write(proc.join("fs/inotify/max_user_watches"), "8192\n").expect("write");
    fs::write(proc.join("fs/inotify/max_queued_events"), "16384\n").expect("write");
    let env = Env {
        sysctl: SysctlFs::new(&proc),
        persist_path: out.path().join("sysctl.d/90-syncd.conf"),
        reach_timeout: Duration::from_secs(5),
    };
    let local = Target {
        name: "local".into(),
        kind: TargetKind::Local {
            path: out.path().join("backup"),
        },
    };
    let settings = Settings {
        config: "/etc/syncd/t.toml".into(),
        pidfile: out.path().join("run/syncd.pid"),
        lockfile: out.path().join("run/syncd.lock"),
        log_file: out.path().join("log/syncd.log"),
        state_dir: out.path().join("state"),
        state_dir_flag: true,
        status_file: out.path().join("state/status.json"),
        controller_file: out.path().join("state/controller.json"),
        worker_bin: "syncd-worker".into(),
        log_level: "info".into(),
    };

    let (_src, mut config) = config_with(vec![daemon.target("good", MODULE, "good.pw"), local]);
    config.daemon.inotify.persist = true;
    // The inotify lines below are about the watches inotify needs.
    config.syncs[0].watcher = WatcherChoice::Inotify;
    let found = gather(&settings, &config, &env);
    let show: Vec<String> = found.iter().map(render).collect();
    let show = show.join("\n");
    assert!(found.iter().all(|f| f.status <= Status::Hint), "{show}");
    assert_eq!(exit_code(&found), ExitCode::SUCCESS);
    for needle in [
        "ok       config: /etc/syncd/t.toml loaded: 1 sync(s), 2 target(s)",
        "ok       rsync: /",
        ": rsync  version 3",
        "readable, 3 directories to watch",
        "ok       watcher (sync /",
        "): inotify: watcher = \"inotify\" in the config",
        "ok       target good: password file",
        "ok       target good: reachable",
        "hint     rsync daemon targets: ",
        "munge symlinks = no",
        "backup does not exist yet; the first push creates it",
        "run: does not exist yet; syncd will create it",
        "ok       fs.inotify.max_user_watches: 8192, below the 16384 wanted for 3 \
         directories; syncd raises it when its worker runs out of watches",
        "ok       fs.inotify.max_queued_events: 16384, enough",
        "90-syncd.conf: persist = true: `syncd start` writes the wanted values",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }
    assert_eq!(
        show.lines().filter(|l| l.starts_with("hint ")).count(),
        1,
        "one hint line: {show}"
    );
    // check changes nothing.
    assert_eq!(
        fs::read_to_string(proc.join("fs/inotify/max_user_watches")).expect("read"),
        "8192\n"
    );
    assert!(!env.persist_path.exists() && !settings.state_dir.exists());

    // A wrong password and a missing rsync turn it into exit 1.
    let (_src2, mut config) = config_with(vec![daemon.target("badpw", MODULE, "bad.pw")]);
    config.syncs[0].rsync.binary = "/nonexistent/rsync".into();
    let found = gather(&settings, &config, &env);
    let show: Vec<String> = found.iter().map(render).collect();
    let show = show.join("\n");
    assert_eq!(exit_code(&found), ExitCode::from(1), "{show}");
    assert!(
        show.contains("problem  rsync /nonexistent/rsync: cannot run"),
        "{show}"
    );
    assert!(
        show.contains("problem  target badpw: cannot run /nonexistent/rsync"),
        "{show}"
    );
}

#[test]
fn a_listener_that_never_answers_times_out() {
    // The kernel completes the connection (backlog) but nobody speaks rsync.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let target = Target {
        name: "silent".into(),
        kind: TargetKind::Daemon {
            user: None,
            host: "127.0.0.1".into(),
            module: "m".into(),
            port: Some(port),
            password_file: None,
        },
    };
    let (_src, config) = config_with(vec![target]);
    let job = job_of(&config);
    let started = Instant::now();
    let f = reach(
        job,
        &job.targets[0],
        "target silent",
        Duration::from_secs(1),
    );
    assert!(started.elapsed() < Duration::from_secs(1) + REACH_GRACE);
    assert_eq!(f.status, Status::Problem, "{}", render(&f));
    assert!(render(&f).contains("timeout"), "{}", render(&f));
    assert!(
        render(&f).contains(&format!("lets port {port} through")),
        "{}",
        render(&f)
    );
}

#[test]
fn run_bounded_kills_the_whole_group_at_the_deadline() {
    // A child that outlives its parent's pipes: the background sleep holds them too.
    let cmd = Spawn::new("/bin/sh").args(["-c", "echo started >&2; sleep 30 & sleep 30"]);
    let started = Instant::now();
    let ran = run_bounded(cmd, Duration::from_millis(300)).expect("sh runs");
    assert!(ran.timed_out);
    assert_eq!(ran.signal, Some(libc::SIGKILL));
    assert_eq!(ran.stderr, "started\n");
    // Returning at all means the background sleep died too: it held the pipes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let cmd = Spawn::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"]);
    let ran = run_bounded(cmd, Duration::from_secs(10)).expect("sh runs");
    assert_eq!(
        ran,
        Ran {
            code: Some(3),
            signal: None,
            stderr: "err\n".into(),
            timed_out: false
        }
    );
}

#[test]
fn password_file_problems_name_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    fs::write(&pw, "x\n").expect("write");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).expect("chmod");
    let target = Target {
        name: "t1".into(),
        kind: TargetKind::Daemon {
            user: None,
            host: "127.0.0.1".into(),
            module: "m".into(),
            // Nothing listens on port 1 of 127.0.0.1.
            port: Some(1),
            password_file: Some(pw.clone()),
        },
    };
    let (_src, config) = config_with(vec![target]);
    let out = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        config: "/c".into(),
        pidfile: out.path().join("p.pid"),
        lockfile: out.path().join("p.lock"),
        log_file: out.path().join("l.log"),
        state_dir: out.path().to_path_buf(),
        state_dir_flag: false,
        status_file: out.path().join("s.json"),
        controller_file: out.path().join("c.json"),
        worker_bin: "w".into(),
        log_level: "info".into(),
    };
    let env = Env {
        sysctl: SysctlFs::new("/nonexistent-check-proc"),
        persist_path: out.path().join("p.conf"),
        reach_timeout: Duration::from_secs(5),
    };
    let found = gather(&settings, &config, &env);
    let lines: Vec<String> = found.iter().map(render).collect();
    let show = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("problem  target t1: password file")
                && l.contains("mode 0644: others may read it (o+r)")
                && l.contains("chmod o-rw")),
        "{show}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning  inotify limits: cannot read /nonexistent-check-proc")),
        "{show}"
    );
}

#[test]
fn ssh_target_with_nothing_listening_is_a_problem() {
    let port = free_port();
    let target = Target {
        name: "sshbox".into(),
        kind: TargetKind::Ssh {
            user: Some("nobody".into()),
            host: "127.0.0.1".into(),
            path: "/srv/backup".into(),
            port: Some(port),
            ssh_args: vec!["-o".into(), "StrictHostKeyChecking=yes".into()],
        },
    };
    let (_src, config) = config_with(vec![target]);
    let job = job_of(&config);
    let f = reach(
        job,
        &job.targets[0],
        "target sshbox",
        Duration::from_secs(5),
    );
    assert_eq!(f.status, Status::Problem, "{}", render(&f));
    // rsync reports ssh's exit (255), or, when it notices the closed pipe first, the
    // broken protocol stream (12): seen both ways under load. Either way the fix names
    // what is wrong.
    assert!(
        f.message.contains("code 255") || f.message.contains("code 12"),
        "{}",
        render(&f)
    );
    assert!(
        f.fix
            .as_deref()
            .is_some_and(|x| x.contains(&format!("nothing listens on 127.0.0.1:{port}"))),
        "{}",
        render(&f)
    );
}

#[test]
fn list_only_argv() {
    let t = |kind| Target {
        name: "n".into(),
        kind,
    };
    let cases: Vec<(Target, Vec<&str>)> = vec![
        (
            t(TargetKind::Daemon {
                user: Some("u".into()),
                host: "h".into(),
                module: "m/sub".into(),
                port: Some(8873),
                password_file: Some("/etc/p".into()),
            }),
            vec![
                "--list-only",
                "--timeout=7",
                "--sockopts=TCP_NODELAY",
                "--contimeout=7",
                "--port=8873",
                "--password-file=/etc/p",
                "u@h::m/sub/",
            ],
        ),
        (
            t(TargetKind::Daemon {
                user: None,
                host: "fe80::1".into(),
                module: "m".into(),
                port: None,
                password_file: None,
            }),
            vec![
                "--list-only",
                "--timeout=7",
                "--sockopts=TCP_NODELAY",
                "--contimeout=7",
                "[fe80::1]::m/",
            ],
        ),
        (
            t(TargetKind::Ssh {
                user: Some("b".into()),
                host: "h".into(),
                path: "/srv/x".into(),
                port: Some(2222),
                ssh_args: vec!["-i".into(), "/root/my key".into()],
            }),
            vec![
                "--list-only",
                "--timeout=7",
                "-e",
                "ssh -p 2222 -o BatchMode=yes -o ConnectTimeout=7 -i '/root/my key'",
                "b@h:/srv/x/",
            ],
        ),
    ];
    for (target, want) in cases {
        let got = list_only_args(&target, Duration::from_secs(7));
        let got: Vec<String> = got
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn version_classification() {
    let bin = Path::new("rsync");
    let cases: Vec<(Result<String, String>, Status, &str)> = vec![
        (
            Ok("rsync  version 3.5.0  protocol version 32".into()),
            Status::Ok,
            "3.5.0",
        ),
        (
            Ok("rsync  version 3.1.0  protocol version 31".into()),
            Status::Ok,
            "3.1.0",
        ),
        (
            Ok("rsync  version 3.2.7-1ubuntu1.4  protocol version 31".into()),
            Status::Ok,
            "3.2.7",
        ),
        (
            Ok("rsync  version 3.0.9  protocol version 30".into()),
            Status::Warning,
            "older than 3.1.0",
        ),
        (
            Ok("rsync  version 3.4.3  protocol version 32".into()),
            Status::Warning,
            "#910",
        ),
        (
            Ok("openrsync: protocol version 29".into()),
            Status::Problem,
            "not an rsync version line",
        ),
        (
            Ok(String::new()),
            Status::Problem,
            "not an rsync version line",
        ),
        (
            Err("cannot run rsync: No such file".into()),
            Status::Problem,
            "No such file",
        ),
    ];
    for (line, status, needle) in cases {
        let f = version_finding(bin, &line);
        assert_eq!(f.status, status, "{line:?}: {}", render(&f));
        assert!(render(&f).contains(needle), "{line:?}: {}", render(&f));
        assert!(
            f.status != Status::Problem || f.fix.is_some(),
            "problems say what to do"
        );
    }
}

#[test]
fn reach_classification() {
    let daemon = Target {
        name: "d".into(),
        kind: TargetKind::Daemon {
            user: Some("u".into()),
            host: "h".into(),
            module: "m/sub".into(),
            port: None,
            password_file: Some("/etc/p".into()),
        },
    };
    let ssh = Target {
        name: "s".into(),
        kind: TargetKind::Ssh {
            user: None,
            host: "h".into(),
            path: "/x".into(),
            port: None,
            ssh_args: vec![],
        },
    };
    let ran = |code, stderr: &str| Ran {
        code: Some(code),
        signal: None,
        stderr: stderr.into(),
        timed_out: false,
    };
    // (target, result, status, text in the message, text in the fix)
    let cases: Vec<(&Target, Ran, Status, &str, &str)> = vec![
        (&daemon, ran(0, ""), Status::Ok, "reachable", ""),
        (&ssh, ran(0, ""), Status::Ok, "over ssh", ""),
        (
            &daemon,
            ran(5, "@ERROR: auth failed on module m\n"),
            Status::Problem,
            "auth failed",
            "first line of /etc/p",
        ),
        (
            &daemon,
            ran(5, "@ERROR: Unknown module 'm'\n"),
            Status::Problem,
            "Unknown module",
            "no module \"m\"",
        ),
        (
            &daemon,
            ran(
                5,
                "@ERROR: max connections (1) reached -- try again later\n",
            ),
            Status::Warning,
            "busy",
            "max connections",
        ),
        (
            &daemon,
            ran(
                10,
                "rsync: failed to connect to h (1.2.3.4): Connection refused (111)\n",
            ),
            Status::Problem,
            "socket I/O",
            "no rsync daemon listens on h:873",
        ),
        (
            &daemon,
            ran(10, "rsync: getaddrinfo: h 873: Name or service not known\n"),
            Status::Problem,
            "Name or service",
            "does not resolve",
        ),
        (
            &daemon,
            ran(35, ""),
            Status::Problem,
            "code 35",
            "firewall lets port 873",
        ),
        (
            &ssh,
            ran(255, "ssh: connect to host h port 22: Connection refused\n"),
            Status::Problem,
            "code 255",
            "nothing listens on h:22",
        ),
        (
            &ssh,
            ran(255, "u@h: Permission denied (publickey,password).\n"),
            Status::Problem,
            "authorized_keys",
            "BatchMode=yes h true",
        ),
        (
            &ssh,
            ran(255, "Host key verification failed.\n"),
            Status::Problem,
            "host key is not known",
            "BatchMode=yes h true",
        ),
        (
            &ssh,
            ran(
                23,
                "rsync: [sender] change_dir \"/x\" failed: No such file or directory (2)\n",
            ),
            Status::Problem,
            "code 23",
            "does not exist",
        ),
        (
            &daemon,
            ran(12, "weird\n"),
            Status::Problem,
            "code 12",
            "by hand",
        ),
        (
            &daemon,
            Ran {
                code: None,
                signal: Some(9),
                stderr: String::new(),
                timed_out: true,
            },
            Status::Problem,
            "no answer from h:873 within 15s",
            "firewall",
        ),
    ];
    for (target, ran, status, in_msg, in_fix) in cases {
        let f = reach_finding("target x", target, &ran, Duration::from_secs(10));
        let shown = render(&f);
        assert_eq!(f.status, status, "{shown}");
        assert!(f.message.contains(in_msg), "{in_msg:?} not in {shown}");
        assert!(
            f.fix.as_deref().unwrap_or("").contains(in_fix),
            "{in_fix:?} not in {shown}"
        );
        assert!(f.status == Status::Ok || f.fix.is_some(), "{shown}");
    }
}

#[test]
fn limit_classification() {
    let plan = |w: u64, q: u64, dirs: u64| {
        sysctl::plan(
            Limits {
                max_user_watches: w,
                max_queued_events: q,
            },
            Wants {
                max_user_watches: None,
                max_queued_events: None,
                dirs: Some(dirs),
            },
        )
    };
    let no = || None;
    let denied = || Some("Permission denied".to_string());
    // (plan, denied per knob, statuses, text in the watches line)
    type Case = (Plan, [Option<String>; 2], [Status; 2], &'static str);
    let cases: Vec<Case> = vec![
        (
            plan(192_536, 16384, 100),
            [no(), no()],
            [Status::Ok, Status::Ok],
            "192536, enough for 100 directories",
        ),
        (
            plan(192_536, 16384, 100),
            [denied(), denied()],
            [Status::Ok, Status::Ok],
            "enough",
        ),
        (
            plan(8192, 16384, 100),
            [no(), no()],
            [Status::Ok, Status::Ok],
            "syncd raises it when its worker runs out of watches",
        ),
        (
            plan(8192, 16384, 100),
            [denied(), no()],
            [Status::Warning, Status::Ok],
            "cannot raise it (Permission denied)",
        ),
        (
            plan(8192, 16384, 10_000),
            [no(), no()],
            [Status::Warning, Status::Ok],
            "too low to watch them all now",
        ),
        (
            plan(8192, 16384, 10_000),
            [denied(), no()],
            [Status::Problem, Status::Ok],
            "too low to watch 10000 directories",
        ),
        (
            plan(192_536, 1000, 1),
            [no(), denied()],
            [Status::Ok, Status::Warning],
            "enough",
        ),
    ];
    for (plan, denied, statuses, needle) in cases {
        let got = limit_findings(&plan, &denied);
        let shown: Vec<String> = got.iter().map(render).collect();
        assert_eq!([got[0].status, got[1].status], statuses, "{shown:#?}");
        assert!(shown[0].contains(needle), "{needle:?} not in {shown:#?}");
        for f in &got {
            if f.status >= Status::Warning {
                let fix = f.fix.as_deref().unwrap_or("");
                assert!(
                    fix.contains(&format!("sysctl -w {}=", f.subject)),
                    "{shown:#?}"
                );
            }
        }
    }
}

#[test]
fn exit_code_and_rendering() {
    let ok = Finding::ok("a", "fine");
    let warn = Finding::new(Status::Warning, "b", "hmm");
    let hint = Finding::new(Status::Hint, "c", "psst").fix("do x");
    let bad = Finding::new(Status::Problem, "d", "broken").fix("repair it");
    assert_eq!(exit_code(&[]), ExitCode::SUCCESS);
    assert_eq!(
        exit_code(&[ok.clone(), warn.clone(), hint.clone()]),
        ExitCode::SUCCESS
    );
    assert_eq!(exit_code(&[ok.clone(), bad.clone()]), ExitCode::from(1));
    assert_eq!(render(&ok), "ok       a: fine");
    assert_eq!(render(&warn), "warning  b: hmm");
    assert_eq!(render(&hint), "hint     c: psst — fix: do x");
    assert_eq!(render(&bad), "problem  d: broken — fix: repair it");
    assert_eq!(summary(std::slice::from_ref(&ok)), "all checks passed");
    assert_eq!(summary(&[ok, warn.clone()]), "no problems, 1 warning(s)");
    assert!(summary(&[bad, warn]).starts_with("1 problem(s), 1 warning(s)"));
}

#[test]
fn writable_dirs_and_local_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(d.join("file"), "").expect("write");
    let cases: Vec<(PathBuf, Status, &str)> = vec![
        (d.to_path_buf(), Status::Ok, "writable"),
        (d.join("new/deeper"), Status::Ok, "will create it"),
        (d.join("file"), Status::Problem, "not a directory"),
        (d.join("file/below"), Status::Problem, "cannot be created"),
    ];
    for (path, status, needle) in cases {
        let f = writable_dir_finding("state directory", &path);
        assert_eq!(f.status, status, "{}", render(&f));
        assert!(render(&f).contains(needle), "{}", render(&f));
    }
    let cases: Vec<(PathBuf, Status, &str)> = vec![
        (d.to_path_buf(), Status::Ok, "writable directory"),
        (d.join("new"), Status::Ok, "first push creates it"),
        (d.join("new/deeper"), Status::Problem, "mkdir -p"),
        (d.join("file"), Status::Problem, "not a directory"),
    ];
    for (path, status, needle) in cases {
        let f = local_target_finding("target t", &path);
        assert_eq!(f.status, status, "{}", render(&f));
        assert!(render(&f).contains(needle), "{}", render(&f));
    }
}

#[test]
fn source_identity_against_what_the_daemon_watched() {
    let top = tempfile::tempdir().expect("tempdir");
    let data = top.path().join("data");
    fs::create_dir(&data).expect("mkdir");
    let (_dir, mut config) = config_with(vec![]);
    config.syncs[0].source = data.clone();
    let job = job_of(&config);
    let mut record = syncd_worker::source_id::Record::default();
    // Never watched: nothing to compare with.
    assert!(source_identity_finding(job, &record).is_none());
    let id = syncd_worker::source_id::SourceId::of(&data).expect("identity");
    record.set(&job.name, &job.source, id);
    let same = source_identity_finding(job, &record).expect("a finding");
    assert_eq!(same.status, Status::Ok, "{}", render(&same));
    // The deploy swap.
    fs::rename(&data, top.path().join("data.old")).expect("mv");
    fs::create_dir(&data).expect("mkdir");
    let swapped = source_identity_finding(job, &record).expect("a finding");
    assert_eq!(swapped.status, Status::Problem, "{}", render(&swapped));
    let text = render(&swapped);
    assert!(
        text.contains("not the directory syncd watched before") && text.contains("sync --full"),
        "{text}"
    );
}
