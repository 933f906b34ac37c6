//! Whole-file tests: the shipped examples load with their documented defaults, and each
//! bad config gives its error at the right line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A source directory that exists, and `text` with `{src}` replaced by it.
fn with_source(text: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().to_str().unwrap().to_string();
    (dir, text.replace("{src}", &src))
}

/// The `nobody` account every Linux system has.
fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("an account named nobody")
}

fn names(config: &Config) -> Vec<&str> {
    config.syncs.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn shipped_toml_gives_the_documented_defaults() {
    let text = std::fs::read_to_string(repo_file("init/syncd.toml")).unwrap();
    assert!(text.contains("source = \"/data\"\n"));
    let (dir, text) = with_source(&text.replace("source = \"/data\"", "source = \"{src}\""));
    let config = parse(text.as_bytes(), Path::new("/etc/syncd/syncd.toml")).unwrap();
    assert_eq!(config.state_dir, Path::new("/var/lib/syncd"));
    assert_eq!(config.status_file, Path::new("/var/lib/syncd/status.json"));
    assert_eq!(config.metrics_file, None, "metrics are off by default");
    assert_eq!(config.daemon, DaemonSettings::default());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.syncs.len(), 1);
    let s = &config.syncs[0];
    assert_eq!(s.source, dir.path());
    assert_eq!(s.name, dir.path().to_str().unwrap());
    assert_eq!(s.mode, Mode::Files);
    assert_eq!(s.watcher, WatcherChoice::Auto);
    assert_eq!(s.delay, Duration::from_millis(50));
    assert_eq!(s.max_delay, Duration::from_secs(1));
    assert_eq!((s.max_batch, s.max_queue, s.threads), (20_000, 500_000, 2));
    assert_eq!(s.max_in_flight, 2);
    assert!(!s.initial_sync);
    assert!(s.exclude.is_empty());
    assert_eq!(s.events, EventSet::default());
    assert_eq!(
        s.rsync,
        RsyncOptions {
            binary: "rsync".into(),
            params: vec!["-a".into()],
            timeout: Some(Duration::from_secs(300)),
            extra: vec![],
        }
    );
    assert_eq!(
        s.retry,
        RetryPolicy {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(300),
        }
    );
    assert_eq!(s.full_sync.interval, None);
    assert!(s.full_sync.exclude.is_none());
    assert_eq!(
        s.verify,
        VerifySchedule::default(),
        "periodic verify is off by default"
    );
    assert!(s.hooks.command.is_none() && s.hooks.http.is_none());
    assert_eq!(
        s.targets,
        vec![Target {
            name: "rsync_backup@172.16.1.41::nfsbackup".into(),
            kind: TargetKind::Daemon {
                user: Some("rsync_backup".into()),
                host: "172.16.1.41".into(),
                module: "nfsbackup".into(),
                port: None,
                password_file: Some("/etc/rsync.password".into()),
            },
        }]
    );
}

#[test]
fn shipped_toml_commented_keys_are_valid_when_uncommented() {
    // Every "# key = value" line in the example must be a real key with a valid value.
    let text = std::fs::read_to_string(repo_file("init/syncd.toml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let uncommented = line.strip_prefix("# ").filter(|l| {
            let key = l.split(['=', ' ']).next().unwrap_or("");
            l.contains(" = ")
                && !key.is_empty()
                && key != "ssh_args"
                // The account `syncd` need not exist where the tests run: see
                // `shipped_toml_documents_user_commented_out`.
                && key != "user"
                && key != "group"
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                || l.starts_with("[sync.hooks.")
        });
        out.push_str(uncommented.unwrap_or(line));
        out.push('\n');
    }
    let (_dir, text) = with_source(&out.replace("source = \"/data\"", "source = \"{src}\""));
    let config = parse(text.as_bytes(), Path::new("syncd.toml")).unwrap();
    assert_eq!(
        config.daemon,
        DaemonSettings {
            pid_file: Some("/run/syncd/syncd.pid".into()),
            log_file: Some("/var/log/syncd/syncd.log".into()),
            run_as: None,
            inotify: InotifyLimits {
                max_user_watches: Some(1_048_576),
                max_queued_events: Some(262_144),
                persist: false,
            },
        }
    );
    let s = &config.syncs[0];
    assert_eq!(s.name, "data");
    assert_eq!(s.targets[0].name, "backup");
    let hook = s.hooks.command.as_ref().unwrap();
    assert_eq!(hook.argv, vec!["/usr/local/bin/on-pushed".to_string()]);
    assert_eq!(hook.timeout, Duration::from_secs(60));
    let http = s.hooks.http.as_ref().unwrap();
    assert_eq!(http.url, "http://127.0.0.1:8080/pushed");
    assert_eq!(http.timeout, Duration::from_secs(10));
}

#[test]
fn every_key_can_be_set() {
    let (dir, text) = with_source(
        r#"state_dir = "/srv/syncd"
pid_file = "/tmp/syncd-test/s.pid"
log_file = "/tmp/syncd-test/s.log"
user = "nobody"
group = "root"
[inotify]
max_user_watches = 524288
max_queued_events = 65536
persist = true
[[sync]]
source = "{src}/"
name = "www"
mode = "tree"
watcher = "inotify"
delay = "200ms"
max_delay = "3s"
max_batch = 500
max_queue = 1000
threads = 4
max_in_flight = 3
initial_sync = true
exclude = ['\.swp$', '^cache/']
[sync.events]
modify = true
close_write = false
[sync.rsync]
binary = "/usr/local/bin/rsync"
params = ["-artz"]
timeout = "0"
extra = ["--bwlimit=20m"]
[sync.retry]
min_interval = "2s"
max_interval = "10m"
[sync.full_sync]
interval = "1h"
exclude = ['\.php$']
[sync.verify]
interval = "6h"
deep = true
[[sync.target]]
dest = "rsync://u@127.0.0.1:8873/mod/sub"
password_file = "/etc/rsync.password"
[[sync.target]]
dest = "backup@host:/srv/www"
port = 2222
ssh_args = ["-i", "/root/.ssh/key"]
name = "ssh"
[sync.hooks.command]
argv = ["/bin/echo", "{}"]
include = ['\.php$']
timeout = "5s"
"#,
    );
    let config = parse(text.as_bytes(), Path::new("syncd.toml")).unwrap();
    assert_eq!(config.status_file, Path::new("/srv/syncd/status.json"));
    assert_eq!(
        config.daemon,
        DaemonSettings {
            pid_file: Some("/tmp/syncd-test/s.pid".into()),
            log_file: Some("/tmp/syncd-test/s.log".into()),
            run_as: Some(RunAs {
                user: "nobody".into(),
                uid: nobody().uid.as_raw(),
                group: "root".into(),
                gid: 0,
                home: nobody().dir,
            }),
            inotify: InotifyLimits {
                max_user_watches: Some(524_288),
                max_queued_events: Some(65_536),
                persist: true,
            },
        }
    );
    let s = &config.syncs[0];
    assert_eq!(s.source, dir.path(), "trailing slash dropped");
    assert_eq!(s.name, "www");
    assert_eq!(s.mode, Mode::Tree);
    assert_eq!(s.watcher, WatcherChoice::Inotify);
    assert_eq!(
        (s.delay, s.max_delay),
        (Duration::from_millis(200), Duration::from_secs(3))
    );
    assert_eq!((s.max_batch, s.max_queue, s.threads), (500, 1000, 4));
    assert_eq!(s.max_in_flight, 3);
    assert!(s.initial_sync);
    assert!(s.exclude.is_excluded(b"cache/x") && s.exclude.is_excluded(b"a/.b.swp"));
    assert!(s.events.modify && !s.events.close_write && s.events.attrib);
    assert_eq!(s.rsync.binary, Path::new("/usr/local/bin/rsync"));
    assert_eq!(s.rsync.params, vec!["-artz"], "tree mode keeps -r");
    assert_eq!(s.rsync.timeout, None);
    assert_eq!(s.rsync.extra, vec!["--bwlimit=20m"]);
    assert_eq!(s.retry.min_interval, Duration::from_secs(2));
    assert_eq!(s.retry.max_interval, Duration::from_secs(600));
    assert_eq!(s.full_sync.interval, Some(Duration::from_secs(3600)));
    assert_eq!(
        s.verify,
        VerifySchedule {
            interval: Some(Duration::from_secs(6 * 3600)),
            deep: true
        }
    );
    assert!(s.full_sync.exclude.as_ref().unwrap().is_excluded(b"a.php"));
    assert_eq!(
        s.targets[0].kind,
        TargetKind::Daemon {
            user: Some("u".into()),
            host: "127.0.0.1".into(),
            module: "mod/sub".into(),
            port: Some(8873),
            password_file: Some("/etc/rsync.password".into()),
        }
    );
    assert_eq!(s.targets[0].name, "rsync://u@127.0.0.1:8873/mod/sub");
    assert_eq!(
        s.targets[1],
        Target {
            name: "ssh".into(),
            kind: TargetKind::Ssh {
                user: Some("backup".into()),
                host: "host".into(),
                path: "/srv/www".into(),
                port: Some(2222),
                ssh_args: vec!["-i".into(), "/root/.ssh/key".into()],
            },
        }
    );
    let hook = s.hooks.command.as_ref().unwrap();
    assert_eq!(hook.argv, vec!["/bin/echo", "{}"]);
    assert_eq!(hook.timeout, Duration::from_secs(5));
    assert!(hook.include.as_ref().unwrap().matches_self(b"x.php"));
    assert!(
        config.warnings.is_empty(),
        "modify covers content: {:?}",
        config.warnings
    );
}

#[test]
fn ssh_args_without_host_key_checks_warn() {
    let (_dir, text) = with_source(
        r#"[[sync]]
source = "{src}"
[[sync.target]]
dest = "root@backup:/srv"
ssh_args = ["-i", "/root/.ssh/k", "-o", "StrictHostKeyChecking=no"]
"#,
    );
    let config = parse(text.as_bytes(), Path::new("s.toml")).unwrap();
    let w = &config.warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("s.toml:5:12: ") && w[0].contains("host key checking off"),
        "{w:?}"
    );
}

#[test]
fn recursive_flag_and_lossy_toggles_warn() {
    let (_dir, text) = with_source(
        r#"[[sync]]
source = "{src}"
[sync.events]
attrib = false
create_file = false
[sync.rsync]
params = ["-artuz"]
[[sync.target]]
dest = "/backup/www"
"#,
    );
    let config = parse(text.as_bytes(), Path::new("s.toml")).unwrap();
    assert_eq!(config.syncs[0].rsync.params, vec!["-atz"]);
    let w = &config.warnings;
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("s.toml:3:1: ") && w[0].contains("events.create_file is off"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("s.toml:3:1: ") && w[1].contains("events.attrib is off"),
        "{w:?}"
    );
    assert!(
        w[2].starts_with("s.toml:7:11: ") && w[2].contains("\"-atz\"") && w[2].contains("older"),
        "{w:?}"
    );
}

/// (what, file text, line, col, text the message or its detail must hold)
type Case = (&'static str, &'static str, usize, usize, &'static str);

/// [`check_cases`] for texts made with `format!`.
fn check_owned_cases(file: &str, cases: Vec<(&'static str, String, usize, usize, &'static str)>) {
    let leaked: Vec<Case> = cases
        .into_iter()
        .map(|(w, t, l, c, n)| (w, &*t.leak(), l, c, n))
        .collect();
    check_cases(file, &leaked);
}

fn check_cases(file: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    for (what, text, line, col, needle) in cases {
        let (_dir, text) = with_source(text);
        let err = match parse(text.as_bytes(), Path::new(file)) {
            Ok(_) => panic!("{what}: parsed, expected an error"),
            Err(e) => e,
        };
        let shown = err.to_string();
        let hit = err.problems.iter().any(|p| {
            p.pos
                == Some(Pos {
                    line: *line,
                    col: *col,
                })
                && (p.message.contains(needle) || p.detail.iter().any(|l| l.contains(needle)))
        });
        let prefix = format!("{file}:{line}:{col}: ");
        if !hit || !shown.lines().any(|l| l.starts_with(&prefix)) {
            failures.push(format!(
                "{what}: want {line}:{col} with {needle:?}, got:\n{shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bad_toml_configs_point_at_the_value() {
    let cases: &[Case] = &[
        ("unknown key", "[[sync]]\nsource = \"{src}\"\ndelya = \"1s\"\n[[sync.target]]\ndest = \"/backup\"\n", 3, 1, "unknown field `delya`, expected one of"),
        ("unknown nested key", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\n  parms = []\n[[sync.target]]\ndest = \"/b\"\n", 4, 3, "unknown field `parms`"),
        ("unknown top key", "stat_dir = \"/x\"\n", 1, 1, "unknown field `stat_dir`"),
        ("single brackets", "[sync]\nsource = \"{src}\"\n", 1, 1, "two brackets"),
        ("bad mode", "[[sync]]\nsource = \"{src}\"\nmode = \"fast\"\n", 3, 8, "expected `files` or `tree`"),
        ("bad watcher", "[[sync]]\nsource = \"{src}\"\nwatcher = \"poll\"\n[[sync.target]]\ndest = \"/b\"\n", 3, 11, "watcher = \"poll\" is not a watcher"),
        ("bad watcher's fix", "[[sync]]\nsource = \"{src}\"\nwatcher = \"Fanotify\"\n[[sync.target]]\ndest = \"/b\"\n", 3, 11, "\"auto\" (the default: fanotify where it works, else inotify), \"inotify\" or \"fanotify\""),
        ("watcher not a string", "[[sync]]\nsource = \"{src}\"\nwatcher = true\n[[sync.target]]\ndest = \"/b\"\n", 3, 11, "expected a string"),
        ("watcher at the top", "watcher = \"inotify\"\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 1, 1, "unknown field `watcher`"),
        ("bad duration", "[[sync]]\nsource = \"{src}\"\ndelay = \"fast\"\n[[sync.target]]\ndest = \"/backup\"\n", 3, 9, "is not a duration"),
        ("bare integer duration", "[[sync]]\nsource = \"{src}\"\ndelay = 15\n[[sync.target]]\ndest = \"/backup\"\n", 3, 9, "delay = \"15s\""),
        ("bare integer timeout", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\ntimeout = 300\n[[sync.target]]\ndest = \"/b\"\n", 4, 11, "has no unit"),
        ("bad regex", "[[sync]]\nsource = \"{src}\"\nexclude = ['ok', '(unclosed']\n[[sync.target]]\ndest = \"/backup\"\n", 3, 18, "invalid regular expression \"(unclosed\""),
        ("bad dest", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"backup\"\n", 4, 8, "neither remote nor an absolute local path"),
        ("missing source", "[[sync]]\nsource = \"/nonexistent/syncd-config-test\"\n[[sync.target]]\ndest = \"/backup\"\n", 2, 10, "does not exist"),
        ("relative source", "[[sync]]\nsource = \"data\"\n[[sync.target]]\ndest = \"/backup\"\n", 2, 10, "is not an absolute path"),
        ("no source", "[[sync]]\nname = \"x\"\n[[sync.target]]\ndest = \"/backup\"\n", 1, 1, "has no `source`"),
        ("no targets", "[[sync]]\nsource = \"{src}\"\n", 1, 1, "has no target"),
        ("no sync", "state_dir = \"/var/lib/syncd\"\n", 1, 1, "no sync configured"),
        ("delay > max_delay", "[[sync]]\nsource = \"{src}\"\ndelay = \"2s\"\nmax_delay = \"1s\"\n[[sync.target]]\ndest = \"/backup\"\n", 3, 9, "longer than max_delay"),
        ("threads 0", "[[sync]]\nsource = \"{src}\"\nthreads = 0\n[[sync.target]]\ndest = \"/b\"\n", 3, 11, "between 1 and 64"),
        ("threads 65", "[[sync]]\nsource = \"{src}\"\nthreads = 65\n[[sync.target]]\ndest = \"/b\"\n", 3, 11, "between 1 and 64"),
        ("max_in_flight 0", "[[sync]]\nsource = \"{src}\"\nmax_in_flight = 0\n[[sync.target]]\ndest = \"/b\"\n", 3, 17, "between 1 and 8"),
        ("max_in_flight 9", "[[sync]]\nsource = \"{src}\"\nmax_in_flight = 9\n[[sync.target]]\ndest = \"/b\"\n", 3, 17, "between 1 and 8"),
        ("max_batch 0", "[[sync]]\nsource = \"{src}\"\nmax_batch = 0\n[[sync.target]]\ndest = \"/b\"\n", 3, 13, "at least 1"),
        ("https hook", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n[sync.hooks.http]\nurl = \"https://cdn.example/x\"\n", 6, 7, "[sync.hooks.command] to run curl"),
        ("empty command hook", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n[sync.hooks.command]\nargv = []\n", 5, 1, "argv is empty"),
        ("zero hook timeout", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n[sync.hooks.command]\nargv = [\"/bin/true\"]\ntimeout = \"0\"\n", 5, 1, "timeout is 0"),
        ("forbidden param", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\nparams = [\"-a\", \"--delete\"]\n[[sync.target]]\ndest = \"/b\"\n", 4, 17, "decides deletions itself"),
        ("forbidden extra", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\nextra = [\"--exclude=*.tmp\"]\n[[sync.target]]\ndest = \"/b\"\n", 4, 10, "use `exclude` in the [[sync]] block"),
        ("password in extra", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\nextra = [\"--password-file=/p\"]\n[[sync.target]]\ndest = \"/b\"\n", 4, 10, "set `password_file`"),
        ("duplicate target names", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/a\"\nname = \"b\"\n[[sync.target]]\ndest = \"/c\"\nname = \"b\"\n", 8, 8, "two targets of this sync are named \"b\""),
        ("duplicate dests", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"h::m\"\n[[sync.target]]\ndest = \"h::m\"\n", 6, 8, "the first is at line 4"),
        ("local target inside source", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"{src}/backup\"\n", 4, 8, "inside its own source"),
        ("local target is source", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"{src}/\"\n", 4, 8, "inside its own source"),
        ("local target contains source", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/\"\n", 4, 8, "contains the source"),
        ("password_file on local", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\npassword_file = \"/etc/p\"\n", 5, 17, "only for rsync daemon targets"),
        ("password_file on ssh", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"h:/b\"\npassword_file = \"/etc/p\"\n", 5, 17, "ssh logs in with keys"),
        ("ssh_args on daemon", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"h::m\"\nssh_args = [\"-i\", \"k\"]\n", 5, 12, "only for ssh targets"),
        ("port twice", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"rsync://h:873/m\"\nport = 874\n", 5, 8, "disagrees with port 873"),
        ("two syncs one name", "[[sync]]\nsource = \"{src}\"\nname = \"www\"\n[[sync.target]]\ndest = \"/a\"\n[[sync]]\nsource = \"{src}\"\nname = \"www\"\n[[sync.target]]\ndest = \"/b\"\n", 8, 8, "a second sync is named \"www\""),
        ("two syncs one source", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/a\"\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 6, 10, "a second sync is named"),
        ("relative state_dir", "state_dir = \"state\"\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 1, 13, "not an absolute path"),
        ("retry min > max", "[[sync]]\nsource = \"{src}\"\n[sync.retry]\nmin_interval = \"10m\"\nmax_interval = \"1m\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 16, "longer than max_interval"),
        // Durations past their maximum would overflow `Instant` arithmetic at run time.
        ("full_sync interval huge", "[[sync]]\nsource = \"{src}\"\n[sync.full_sync]\ninterval = \"500000000000y\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 12, "at most 1year"),
        ("full_sync interval 2y", "[[sync]]\nsource = \"{src}\"\n[sync.full_sync]\ninterval = \"2y\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 12, "at most 1year"),
        ("delay huge", "[[sync]]\nsource = \"{src}\"\ndelay = \"100y\"\nmax_delay = \"200y\"\n[[sync.target]]\ndest = \"/b\"\n", 3, 9, "at most 1day"),
        ("max_delay huge", "[[sync]]\nsource = \"{src}\"\nmax_delay = \"2days\"\n[[sync.target]]\ndest = \"/b\"\n", 3, 13, "at most 1day"),
        ("rsync timeout huge", "[[sync]]\nsource = \"{src}\"\n[sync.rsync]\ntimeout = \"25h\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 11, "at most 1day"),
        ("retry max huge", "[[sync]]\nsource = \"{src}\"\n[sync.retry]\nmax_interval = \"9999999999999s\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 16, "at most 1day"),
        ("retry min huge", "[[sync]]\nsource = \"{src}\"\n[sync.retry]\nmin_interval = \"3days\"\nmax_interval = \"4days\"\n[[sync.target]]\ndest = \"/b\"\n", 4, 16, "at most 1day"),
        ("command hook timeout huge", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n[sync.hooks.command]\nargv = [\"/bin/true\"]\ntimeout = \"1000y\"\n", 7, 11, "at most 1day"),
        ("http hook timeout huge", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n[sync.hooks.http]\nurl = \"http://cdn.example/x\"\ntimeout = \"1000y\"\n", 7, 11, "at most 1day"),
    ];
    check_cases("/etc/syncd/syncd.toml", cases);
}

#[test]
fn controller_keys_good_values() {
    const SYNC: &str = "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n";
    let none = InotifyLimits::default();
    let cases: &[(&str, DaemonSettings)] = &[
        ("", DaemonSettings::default()),
        (
            "pid_file = \"/tmp/x/p.pid\"\n",
            DaemonSettings {
                pid_file: Some("/tmp/x/p.pid".into()),
                ..DaemonSettings::default()
            },
        ),
        (
            "log_file = \"/l/s.log\"\n",
            DaemonSettings {
                log_file: Some("/l/s.log".into()),
                ..DaemonSettings::default()
            },
        ),
        ("[inotify]\n", DaemonSettings::default()),
        (
            "[inotify]\nmax_user_watches = 1\n",
            DaemonSettings {
                inotify: InotifyLimits {
                    max_user_watches: Some(1),
                    ..none.clone()
                },
                ..DaemonSettings::default()
            },
        ),
        (
            "[inotify]\nmax_user_watches = 9223372036854775807\n",
            DaemonSettings {
                inotify: InotifyLimits {
                    max_user_watches: Some(i64::MAX as u64),
                    ..none.clone()
                },
                ..DaemonSettings::default()
            },
        ),
        (
            "[inotify]\nmax_queued_events = 2147483647\npersist = true\n",
            DaemonSettings {
                inotify: InotifyLimits {
                    max_queued_events: Some(2_147_483_647),
                    persist: true,
                    ..none.clone()
                },
                ..DaemonSettings::default()
            },
        ),
        ("[inotify]\npersist = false\n", DaemonSettings::default()),
    ];
    for (head, want) in cases {
        let (_dir, text) = with_source(&format!("{head}{SYNC}"));
        let config =
            parse(text.as_bytes(), Path::new("c.toml")).unwrap_or_else(|e| panic!("{head:?}: {e}"));
        assert_eq!(&config.daemon, want, "{head:?}");
    }
}

#[test]
fn controller_keys_bad_values_point_at_the_value() {
    let cases: &[Case] = &[
        ("relative pid_file", "pid_file = \"run/s.pid\"\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 1, 12, "pid_file \"run/s.pid\" is not an absolute path"),
        ("relative log_file", "log_file = \"s.log\"\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 1, 12, "log_file \"s.log\" is not an absolute path"),
        ("pid_file not a string", "pid_file = 1\n", 1, 12, "invalid type: integer `1`, expected a string"),
        ("unknown inotify key", "[inotify]\nmax_watches = 5\n", 2, 1, "unknown field `max_watches`, expected one of `max_user_watches`, `max_queued_events`, `persist`"),
        ("watches zero", "[inotify]\nmax_user_watches = 0\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 2, 20, "max_user_watches is 0; it must be at least 1"),
        ("watches negative", "[inotify]\nmax_user_watches = -5\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 2, 20, "max_user_watches is -5"),
        ("watches as string", "[inotify]\nmax_user_watches = \"1M\"\n", 2, 20, "expected i64"),
        ("queued zero", "[inotify]\nmax_queued_events = 0\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 2, 21, "between 1 and 2147483647"),
        ("queued above int", "[inotify]\nmax_queued_events = 2147483648\n[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n", 2, 21, "max_queued_events is 2147483648"),
        ("persist not a bool", "[inotify]\npersist = \"yes\"\n", 2, 11, "expected a boolean"),
        ("inotify as array of tables", "[[inotify]]\npersist = true\n", 1, 1, "inotify"),
    ];
    check_cases("/etc/syncd/syncd.toml", cases);
}

#[test]
fn user_resolves_to_ids_with_the_primary_group_by_default() {
    const SYNC: &str = "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n";
    let who = nobody();
    let primary = nix::unistd::Group::from_gid(who.gid).unwrap().unwrap();
    let (_dir, text) = with_source(&format!("user = \"nobody\"\n{SYNC}"));
    let config = parse(text.as_bytes(), Path::new("c.toml")).unwrap();
    assert_eq!(
        config.daemon.run_as,
        Some(RunAs {
            user: "nobody".into(),
            uid: who.uid.as_raw(),
            group: primary.name,
            gid: who.gid.as_raw(),
            home: who.dir,
        })
    );
    // root: nothing to drop, said once.
    let (_dir, text) = with_source(&format!("user = \"root\"\n{SYNC}"));
    let config = parse(text.as_bytes(), Path::new("c.toml")).unwrap();
    assert_eq!(config.daemon.run_as, None);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("c.toml:1:8: ") && w.contains("is root")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn watcher_is_read_per_sync_and_defaults_to_auto() {
    let sync = |name: &str, watcher: &str| {
        format!("[[sync]]\nsource = \"{{src}}\"\nname = \"{name}\"\n{watcher}[[sync.target]]\ndest = \"/b\"\n")
    };
    let text = [
        sync("default", ""),
        sync("a", "watcher = \"auto\"\n"),
        sync("i", "watcher = \"inotify\"\n"),
        sync("f", "watcher = \"fanotify\"\n"),
    ]
    .concat();
    let (_dir, text) = with_source(&text);
    let config = parse(text.as_bytes(), Path::new("c.toml")).unwrap();
    let got: Vec<WatcherChoice> = config.syncs.iter().map(|s| s.watcher).collect();
    use WatcherChoice::*;
    assert_eq!(got, [Auto, Auto, Inotify, Fanotify]);
}

#[test]
fn fanotify_with_user_is_an_error_naming_both_keys() {
    const SYNC: &str =
        "[[sync]]\nsource = \"{src}\"\nwatcher = \"fanotify\"\n[[sync.target]]\ndest = \"/b\"\n";
    let (_dir, text) = with_source(&format!("user = \"nobody\"\n{SYNC}"));
    let err = parse(text.as_bytes(), Path::new("c.toml")).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.problems.len(), 1, "{shown}");
    let p = &err.problems[0];
    assert_eq!(p.pos, Some(Pos { line: 4, col: 11 }), "{shown}");
    assert!(
        p.message
            .contains("watcher = \"fanotify\" cannot work with user = \"nobody\" (line 1)")
            && p.message.contains("CAP_SYS_ADMIN"),
        "{shown}"
    );
    assert!(
        p.detail
            .iter()
            .any(|l| l.contains("watcher = \"auto\"") && l.contains("remove `user`")),
        "{shown}"
    );
    // Without `user`, or with user = "root" (nothing dropped), fanotify is fine; with
    // `user`, auto and inotify are fine (auto then uses inotify).
    for ok in [
        SYNC.to_string(),
        format!("user = \"root\"\n{SYNC}"),
        format!("user = \"nobody\"\n{}", SYNC.replace("fanotify", "auto")),
        format!("user = \"nobody\"\n{}", SYNC.replace("fanotify", "inotify")),
    ] {
        let (_dir, text) = with_source(&ok);
        if let Err(e) = parse(text.as_bytes(), Path::new("c.toml")) {
            panic!("{ok:?}: {e}");
        }
    }
}

#[test]
fn bad_user_or_group_points_at_the_value_and_says_what_to_run() {
    const SYNC: &str = "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n";
    let cases: Vec<(&str, String, usize, usize, &str)> = vec![
        (
            "unknown user",
            format!("user = \"no-such-syncd-user\"\n{SYNC}"),
            1,
            8,
            "useradd --system --no-create-home --shell /usr/sbin/nologin no-such-syncd-user",
        ),
        (
            "unknown user's message",
            format!("user = \"no-such-syncd-user\"\n{SYNC}"),
            1,
            8,
            "user \"no-such-syncd-user\" does not exist on this machine",
        ),
        (
            "a uid",
            format!("user = \"4242424\"\n{SYNC}"),
            1,
            8,
            "the account's name, not its uid",
        ),
        (
            "empty user",
            format!("user = \"\"\n{SYNC}"),
            1,
            8,
            "user is empty",
        ),
        (
            "unknown group",
            format!("user = \"nobody\"\ngroup = \"no-such-syncd-group\"\n{SYNC}"),
            2,
            9,
            "groupadd --system no-such-syncd-group",
        ),
        (
            "group alone",
            format!("group = \"root\"\n{SYNC}"),
            1,
            9,
            "is set without user",
        ),
        (
            "verify interval too short",
            format!("{SYNC}[sync.verify]\ninterval = \"5s\"\n"),
            6,
            12,
            "verify interval = \"5s\" is too short: at least 10s",
        ),
        (
            "verify unknown key",
            format!("{SYNC}[sync.verify]\nevery = \"6h\"\n"),
            6,
            1,
            "unknown field `every`",
        ),
        (
            "user not a string",
            format!("user = 65534\n{SYNC}"),
            1,
            8,
            "expected a string",
        ),
        (
            "user in a sync",
            "[[sync]]\nsource = \"{src}\"\nuser = \"nobody\"\n[[sync.target]]\ndest = \"/b\"\n"
                .to_string(),
            3,
            1,
            "unknown field `user`",
        ),
    ];
    check_owned_cases("/etc/syncd/syncd.toml", cases);
}

#[test]
fn metrics_file_is_an_absolute_prom_file() {
    const SYNC: &str = "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n";
    let (_dir, text) = with_source(&format!(
        "metrics_file = \"/var/lib/prometheus/node-exporter/syncd.prom\"\n{SYNC}"
    ));
    let config = parse(text.as_bytes(), Path::new("syncd.toml")).unwrap();
    assert_eq!(
        config.metrics_file.as_deref(),
        Some(Path::new("/var/lib/prometheus/node-exporter/syncd.prom"))
    );
    let cases: Vec<(&str, String, usize, usize, &str)> = vec![
        (
            "relative",
            format!("metrics_file = \"syncd.prom\"\n{SYNC}"),
            1,
            16,
            "metrics_file \"syncd.prom\" is not an absolute path",
        ),
        (
            "not .prom",
            format!("metrics_file = \"/var/lib/node-exporter/syncd.txt\"\n{SYNC}"),
            1,
            16,
            "reads only *.prom files",
        ),
        (
            "the status file",
            format!("status_file = \"/tmp/s.prom\"\nmetrics_file = \"/tmp/s.prom\"\n{SYNC}"),
            2,
            16,
            "metrics_file is the status file",
        ),
        (
            "not a string",
            format!("metrics_file = true\n{SYNC}"),
            1,
            16,
            "expected a string",
        ),
        (
            "in a sync",
            "[[sync]]\nsource = \"{src}\"\nmetrics_file = \"/m.prom\"\n[[sync.target]]\ndest = \"/b\"\n"
                .to_string(),
            3,
            1,
            "unknown field `metrics_file`",
        ),
    ];
    check_owned_cases("/etc/syncd/syncd.toml", cases);
}

#[test]
fn shipped_toml_documents_user_commented_out() {
    // The packaged default stays root; the example shows the key and why.
    let text = std::fs::read_to_string(repo_file("init/syncd.toml")).unwrap();
    assert!(
        text.contains("\n# user = \"syncd\"\n"),
        "init/syncd.toml lacks `# user = \"syncd\"`"
    );
    assert!(
        text.contains("\n# group = \"syncd\"\n"),
        "init/syncd.toml lacks `# group = \"syncd\"`"
    );
    assert!(!text
        .lines()
        .any(|l| l.starts_with("user") || l.starts_with("group")));
}

#[test]
fn every_problem_is_reported_at_once() {
    let (_dir, text) = with_source(
        "[[sync]]\nsource = \"{src}\"\ndelay = \"fast\"\nthreads = 0\nexclude = ['(']\n[[sync.target]]\ndest = \"garbage\"\n",
    );
    let err = parse(text.as_bytes(), Path::new("f.toml")).unwrap_err();
    let at: Vec<(usize, usize)> = err
        .problems
        .iter()
        .map(|p| p.pos.map(|p| (p.line, p.col)).unwrap())
        .collect();
    assert_eq!(at, vec![(3, 9), (4, 11), (5, 12), (7, 8)], "{err}");
}

#[test]
fn toml_syntax_errors_keep_tomls_picture() {
    let err = parse(b"[[sync]]\nsource = \"/a\n", Path::new("f.toml")).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("f.toml:2:"), "{shown}");
    assert!(shown.contains("2 | source = \"/a"), "{shown}");
}

#[test]
fn non_utf8_toml_is_an_error_at_the_byte() {
    let err = parse(b"[[sync]]\nsource = \"/caf\xe9\"\n", Path::new("f.toml")).unwrap_err();
    assert_eq!(err.problems[0].pos, Some(Pos { line: 2, col: 15 }), "{err}");
    assert!(err.to_string().contains("UTF-8"));
}

#[test]
fn load_reads_files_and_names_unreadable_ones() {
    let (dir, text) =
        with_source("[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/backup\"\n");
    let path = dir.path().join("syncd.toml");
    std::fs::write(&path, text).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(names(&config), vec![dir.path().to_str().unwrap()]);

    let missing = dir.path().join("nope.toml");
    let err = load(&missing).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the config file",
            missing.display()
        )),
        "{shown}"
    );
    assert!(shown.contains("--config"), "{shown}");
}

// ---- sersync confxml.xml ----

/// The shipped confxml.xml with its watch path replaced by `{src}` and the edits applied.
fn shipped_xml(edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(repo_file("init/confxml.xml")).unwrap();
    for (from, to) in [("watch=\"/data\"", "watch=\"{src}\"")].iter().chain(edits) {
        assert!(text.contains(from), "{from:?} not in init/confxml.xml");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn shipped_confxml_maps_onto_the_config() {
    let (dir, text) = with_source(&shipped_xml(&[]));
    let config = parse(text.as_bytes(), Path::new("/etc/syncd/confxml.xml")).unwrap();
    assert_eq!(config.state_dir, Path::new("/var/lib/syncd"));
    assert_eq!(
        config.daemon,
        DaemonSettings::default(),
        "confxml.xml has none"
    );
    assert_eq!(config.syncs.len(), 1);
    let s = &config.syncs[0];
    assert_eq!(s.source, dir.path());
    assert_eq!(s.events, EventSet::default());
    assert!(s.exclude.is_empty(), "filter start=false");
    assert_eq!(s.rsync.params, vec!["-atz"]);
    assert_eq!(s.rsync.timeout, Some(Duration::from_secs(100)));
    assert_eq!(s.retry.max_interval, Duration::from_secs(3600));
    assert_eq!(s.retry.min_interval, Duration::from_secs(1));
    assert_eq!(s.full_sync.interval, None);
    assert!(s.hooks.command.is_none());
    assert_eq!(
        (s.delay, s.threads, s.mode),
        (Duration::from_millis(50), 2, Mode::Files)
    );
    assert_eq!(
        s.watcher,
        WatcherChoice::Auto,
        "confxml.xml has no such key"
    );
    assert_eq!(
        s.targets,
        vec![Target {
            name: "rsync_backup@172.16.1.41::nfsbackup".into(),
            kind: TargetKind::Daemon {
                user: Some("rsync_backup".into()),
                host: "172.16.1.41".into(),
                module: "nfsbackup".into(),
                port: None,
                password_file: Some("/etc/rsync.password".into()),
            },
        }]
    );
    let w = config.warnings.join("\n");
    for needle in [
        "<host> has no meaning",
        "<debug> has no meaning",
        "<fileSystem> has no meaning",
        "<failLog path=\"/tmp/rsync_fail_log.sh\"> is not used",
        "\"-artuz\" became \"-atz\"",
    ] {
        assert!(w.contains(needle), "{needle:?} missing in\n{w}");
    }
    assert_eq!(config.warnings.len(), 5, "{w}");
    assert!(
        config.warnings[0].starts_with("/etc/syncd/confxml.xml:11:5: <host>"),
        "{w}"
    );
}

#[test]
fn confxml_options_map_onto_the_config() {
    let (_dir, text) = with_source(&shipped_xml(&[
        ("<filter start=\"false\">", "<filter start=\"true\">"),
        ("<createFile start=\"true\"/>", "<createFile start=\"false\"/>"),
        ("<attrib start=\"true\"/>", "<attrib start=\"false\"/>"),
        (
            "<remote ip=\"172.16.1.41\" name=\"nfsbackup\"/>",
            "<remote ip=\"172.16.1.41\" name=\"nfsbackup\"/>\n<remote ip=\"fe80::2\" name=\"www\"/>",
        ),
        ("<userDefinedPort start=\"false\"", "<userDefinedPort start=\"true\""),
        ("<timeout start=\"true\" time=\"100\"/>", "<timeout start=\"false\" time=\"100\"/>"),
        ("<crontab start=\"false\"", "<crontab start=\"true\""),
        ("<crontabfilter start=\"false\">", "<crontabfilter start=\"true\">"),
        ("<plugin start=\"false\" name=\"command\"/>", "<plugin start=\"true\" name=\"command\"/>"),
        ("<param prefix=\"/usr/local/bin/on-pushed\" suffix=\"\"", "<param prefix=\"/bin/sh -c\" suffix=\"--x y\""),
        ("<filter start=\"false\">\n            <include", "<filter start=\"true\">\n            <include"),
    ]));
    let config = parse(text.as_bytes(), Path::new("confxml.xml")).unwrap();
    let s = &config.syncs[0];
    assert!(s.exclude.is_excluded(b"a/b.swp") && s.exclude.is_excluded(b"cache/x"));
    assert!(
        !s.exclude.is_excluded(b".hidden") && !s.exclude.is_excluded(b"x~"),
        "no hidden skips"
    );
    assert!(!s.events.create_file && !s.events.attrib && s.events.close_write);
    assert_eq!(
        s.rsync.timeout,
        Some(Duration::from_secs(300)),
        "timeout off: native default"
    );
    assert_eq!(s.full_sync.interval, Some(Duration::from_secs(600 * 60)));
    let full = s.full_sync.exclude.as_ref().unwrap();
    assert_eq!(
        full.patterns().collect::<Vec<_>>(),
        vec![r"(^|/)[^/]*\.php$", r"(^|/)info/[^/]*$"]
    );
    let hook = s.hooks.command.as_ref().unwrap();
    assert_eq!(hook.argv, vec!["/bin/sh", "-c", "{}", "--x", "y"]);
    let include = hook.include.as_ref().unwrap();
    assert!(include.matches_self(b"a/b.php") && !include.matches_self(b"a/b.txt"));
    assert_eq!(s.targets.len(), 2);
    assert_eq!(
        s.targets[1].kind,
        TargetKind::Daemon {
            user: Some("rsync_backup".into()),
            host: "fe80::2".into(),
            module: "www".into(),
            port: Some(874),
            password_file: Some("/etc/rsync.password".into()),
        }
    );
    let w = config.warnings.join("\n");
    assert!(
        w.contains("<inotify><createFile> is off: new symlinks, hard links and empty files"),
        "{w}"
    );
    assert!(w.contains("<inotify><attrib> is off: chmod/chown"), "{w}");
}

#[test]
fn confxml_over_ssh() {
    let (_dir, text) = with_source(&shipped_xml(&[
        ("name=\"nfsbackup\"", "name=\"/srv/backup\""),
        ("<ssh start=\"false\"/>", "<ssh start=\"true\"/>"),
    ]));
    let config = parse(text.as_bytes(), Path::new("confxml.xml")).unwrap();
    assert_eq!(
        config.syncs[0].targets[0].kind,
        TargetKind::Ssh {
            user: None,
            host: "172.16.1.41".into(),
            path: "/srv/backup".into(),
            port: None,
            ssh_args: vec![],
        }
    );
    assert!(config
        .warnings
        .iter()
        .any(|w| w.contains("<auth> is not used with <ssh")));
}

#[test]
fn latin1_confxml_loads() {
    let (dir, text) = with_source(&shipped_xml(&[(
        "<head version=\"2.5\">",
        "<head version=\"2.5\"><!-- caf\u{e9} -->",
    )]));
    // Re-encode as ISO-8859-1, as the stock file declares: the é becomes the byte 0xE9.
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    assert!(std::str::from_utf8(&bytes).is_err());
    let path = dir.path().join("confxml.xml");
    std::fs::write(&path, bytes).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.syncs[0].source, dir.path());
}

#[test]
fn format_is_detected_by_name_or_content() {
    let (_dir, xml) = with_source(&shipped_xml(&[]));
    // Content starting with '<' is sersync's whatever the name.
    let (_decl, body) = xml.split_once('\n').unwrap();
    let config = parse(
        format!("\n  {body}").as_bytes(),
        Path::new("/etc/syncd/sersync.conf"),
    );
    assert!(config.is_ok(), "{config:?}");
    // A .xml name is sersync's whatever the content.
    let err = parse(b"[[sync]]\n", Path::new("/etc/syncd/confxml.XML")).unwrap_err();
    assert!(err.to_string().contains("not well-formed XML"), "{err}");
}

#[test]
fn bad_confxml_points_at_the_element() {
    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<head version=\"2.5\">\n";
    const SERSYNC: &str = "<sersync>\n<localpath watch=\"{src}\">\n<remote ip=\"127.0.0.1\" name=\"m\"/>\n</localpath>\n";
    let cases: &[(&str, String, usize, usize, &str)] = &[
        ("unknown element", format!("{HEAD}  <inotfy/>\n{SERSYNC}</sersync>\n</head>\n"), 3, 3, "unknown element <inotfy> in <head>"),
        ("unknown toggle", format!("{HEAD}<inotify>\n    <closewrite start=\"true\"/>\n</inotify>\n{SERSYNC}</sersync>\n</head>\n"), 4, 5, "expected in <inotify>: delete, createFolder"),
        ("refreshCDN started", format!("{HEAD}{SERSYNC}<plugin start=\"true\" name=\"refreshCDN\"/>\n</sersync>\n</head>\n"), 7, 28, "[sync.hooks.http]"),
        ("socket started", format!("{HEAD}{SERSYNC}<plugin start=\"true\" name=\"socket\"/>\n</sersync>\n</head>\n"), 7, 28, "cannot be honoured"),
        ("command started without definition", format!("{HEAD}{SERSYNC}<plugin start=\"true\" name=\"command\"/>\n</sersync>\n</head>\n"), 7, 28, "<param prefix=...>"),
        ("bad flag", format!("{HEAD}<filter start=\"yes\"/>\n{SERSYNC}</sersync>\n</head>\n"), 3, 16, "expected \"true\" or \"false\""),
        ("missing watch dir", format!("{HEAD}<sersync>\n<localpath watch=\"/nonexistent/syncd-x\">\n<remote ip=\"h\" name=\"m\"/>\n</localpath>\n</sersync>\n</head>\n"), 4, 19, "does not exist"),
        ("remote without name", format!("{HEAD}<sersync>\n<localpath watch=\"{{src}}\">\n<remote ip=\"h\"/>\n</localpath>\n</sersync>\n</head>\n"), 5, 1, "needs a name=\"...\" attribute"),
        ("no remote", format!("{HEAD}<sersync>\n<localpath watch=\"{{src}}\">\n</localpath>\n</sersync>\n</head>\n"), 4, 1, "has no target"),
        ("no sersync", format!("{HEAD}</head>\n"), 2, 1, "there is no <sersync> element"),
        ("bad failLog", format!("{HEAD}{SERSYNC}<failLog path=\"/tmp/x.sh\" timeToExecute=\"soon\"/>\n</sersync>\n</head>\n"), 7, 42, "whole number"),
        ("huge failLog", format!("{HEAD}{SERSYNC}<failLog path=\"/tmp/x.sh\" timeToExecute=\"9223372036854775807\"/>\n</sersync>\n</head>\n"), 7, 42, "at most 1440"),
        ("huge crontab", format!("{HEAD}{SERSYNC}<crontab start=\"true\" schedule=\"600000000000\"/>\n</sersync>\n</head>\n"), 7, 33, "at most 525960"),
        ("huge rsync timeout", format!("{HEAD}{SERSYNC}<rsync><timeout start=\"true\" time=\"86401\"/></rsync>\n</sersync>\n</head>\n"), 7, 36, "at most 86400"),
        ("bad filter regex", format!("{HEAD}<filter start=\"true\"><exclude expression=\"(\"/></filter>\n{SERSYNC}</sersync>\n</head>\n"), 3, 43, "invalid regular expression"),
        ("forbidden commonParams", format!("{HEAD}{SERSYNC}<rsync><commonParams params=\"-artuz --delete\"/></rsync>\n</sersync>\n</head>\n"), 7, 30, "decides deletions itself"),
        ("not xml", format!("{HEAD}<sersync>\n</head>\n"), 4, 1, "not well-formed XML"),
        // Found by the fuzz test: roxmltree's message quoted the line break it found.
        ("line break in a tag", format!("{HEAD}<sersync/\n>\n</head>\n"), 3, 10, "expected '>' not '\\n'"),
        ("wrong root", "<config/>\n".to_string(), 1, 1, "a sersync config starts with <head"),
    ];
    let mut failures = Vec::new();
    for (what, text, line, col, needle) in cases {
        let (_dir, text) = with_source(text);
        let err = match parse(text.as_bytes(), Path::new("confxml.xml")) {
            Ok(_) => panic!("{what}: parsed, expected an error"),
            Err(e) => e,
        };
        let hit = err.problems.iter().any(|p| {
            p.pos
                == Some(Pos {
                    line: *line,
                    col: *col,
                })
                && (p.message.contains(needle) || p.detail.iter().any(|l| l.contains(needle)))
        });
        if !hit {
            failures.push(format!(
                "{what}: want {line}:{col} with {needle:?}, got:\n{err}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_toml_error_on_a_line_with_a_password_does_not_show_it() {
    // toml's picture of the line, and its message, quote the file.
    let cases = [
        ("dest = \"u:S3cr3t@h::m\n", 4, 22),
        ("dest = [\"u:S3cr3t@h::m\"]\n", 4, 8),
        ("dest = \"u:S3cr3t@h::m\"\nport = \"u:S3cr3t@h\"\n", 5, 8),
    ];
    for (target, line, col) in cases {
        let text = format!("[[sync]]\nsource = \"/tmp\"\n[[sync.target]]\n{target}");
        let err = parse(text.as_bytes(), Path::new("s.toml")).expect_err(&text);
        let shown = err.to_string();
        assert!(!shown.contains("S3cr3t"), "{shown}");
        assert_eq!(err.problems[0].pos, Some(Pos { line, col }), "{shown}");
    }
}

#[test]
fn a_password_anywhere_in_a_target_is_refused_at_its_value_without_repeating_it() {
    // (file name, text, line, col, what the message or its detail must say)
    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<head version=\"2.5\">\n<sersync>\n<localpath watch=\"{src}\">\n";
    let cases: Vec<(&str, String, usize, usize, &str)> = vec![
        ("s.toml", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"rsync://u:S3cr3t@h/m\"\n".into(), 4, 8, "password_file = "),
        ("s.toml", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"rsync://u:S3cr3t@h:873/m\"\n".into(), 4, 8, "password_file = "),
        ("s.toml", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"u:S3cr3t@h::m\"\n".into(), 4, 8, "password_file = "),
        ("s.toml", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"u:S3cr3t@h:/path\"\n".into(), 4, 8, "password_file = "),
        ("s.toml", "[[sync]]\nsource = \"{src}\"\n[[sync.target]]\ndest = \"/b\"\n[sync.hooks.http]\nurl = \"http://u:S3cr3t@h/x\"\n".into(), 6, 7, "use the command hook"),
        ("confxml.xml", format!("{HEAD}<remote ip=\"u:S3cr3t@h\" name=\"m\"/>\n</localpath>\n</sersync>\n</head>\n"), 5, 13, "passwordfile="),
        ("confxml.xml", format!("{HEAD}<remote ip=\"h\" name=\"m\"/>\n</localpath>\n<rsync><auth start=\"true\" users=\"u:S3cr3t\" passwordfile=\"/etc/p\"/></rsync>\n</sersync>\n</head>\n"), 7, 34, "passwordfile="),
    ];
    let mut failures = Vec::new();
    for (file, text, line, col, needle) in &cases {
        let (_dir, text) = with_source(text);
        let err = match parse(text.as_bytes(), Path::new(file)) {
            Ok(c) => panic!("{text}: parsed as {:?}", c.syncs[0].targets),
            Err(e) => e,
        };
        let shown = err.to_string();
        let at = Some(Pos {
            line: *line,
            col: *col,
        });
        let hit = err.problems.iter().any(|p| {
            p.pos == at
                && (p.message.contains(needle) || p.detail.iter().any(|l| l.contains(needle)))
        });
        if !hit || shown.contains("S3cr3t") {
            failures.push(format!(
                "{text}\nwant {line}:{col} with {needle:?} and no secret, got:\n{shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_symlinked_source_is_resolved_once_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("releases/42");
    std::fs::create_dir_all(&real).unwrap();
    let link = dir.path().join("current");
    std::os::unix::fs::symlink("releases/42", &link).unwrap();
    let real = real.canonicalize().unwrap();
    let text = format!(
        "[[sync]]\nsource = \"{}/\"\n[[sync.target]]\ndest = \"/b\"\n",
        link.display()
    );
    let config = parse(text.as_bytes(), Path::new("s.toml")).expect("valid");
    let job = &config.syncs[0];
    assert_eq!(job.source, real);
    assert_eq!(job.source_link.as_deref(), Some(link.as_path()));
    assert_eq!(job.source_path(), link.as_path());
    assert_eq!(
        config.warnings,
        vec![format!(
            "s.toml:2:10: source {} is a symlink; watching {} (resolved once: if the link is \
             repointed, this sync holds its pushes until `syncd reload` follows it)",
            link.display(),
            real.display()
        )]
    );
    // A real directory is no link.
    let text = format!(
        "[[sync]]\nsource = \"{}\"\n[[sync.target]]\ndest = \"/b\"\n",
        real.display()
    );
    let config = parse(text.as_bytes(), Path::new("s.toml")).expect("valid");
    assert_eq!(config.syncs[0].source_link, None);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
