//! inotify kernel limits (`fs.inotify.max_user_watches`, `fs.inotify.max_queued_events`):
//! read them, decide what they should be ([`plan`], pure), raise them ([`apply`]), and
//! persist them to `/etc/sysctl.d/90-syncd.conf` ([`persist`]). [`tune`] is what the
//! controller runs before it spawns the worker (and at a reload): the config's values
//! only, nothing counted, so the worker starts at once. [`raise_for_worker`] is what it
//! runs when its worker, out of watches, asks for more (`X_SYNCD_WATCHES`, see
//! `syncd_worker::contract::WATCHES_REQUEST`): the worker walks the tree to watch it
//! anyway, so it is the one that counts (the controller used to walk every source before
//! the worker walked it again: ~0.3 s of CPU per 100,000 directories at every start), and
//! only the controller may write sysctls (the worker may run unprivileged). `syncd check`
//! counts the directories itself (a diagnostic) and uses the same pieces.
//!
//! Policy (documented in `init/syncd.toml`):
//! * `max_user_watches`: one watch per directory. Wanted, once the worker asks with the
//!   watches it needs (in use and missing): that count doubled (room for the tree to grow
//!   while syncd runs) and at least [`WATCH_HEADROOM`] above it (other programs of the
//!   same user hold watches too), rounded up to a power of two so the value only moves
//!   when the tree doubles. A value in the config is a minimum, applied at every start.
//! * `max_queued_events`: the config's value, else [`QUEUED_EVENTS_FLOOR`], the kernel's
//!   own default. A higher floor would change every machine syncd starts on, while an
//!   overflow only costs a rescan; bursty trees set it in the config.
//!
//! Must not: ever lower a value (not in `/proc/sys`, not in the persisted file); fail the
//! start (every problem becomes a log line); touch anything but the two sysctls and the
//! one file. All paths are parameters ([`SysctlFs`], the persist path), so tests work in a
//! temp dir and never change the machine's real values.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::Level;
use syncd_worker::config::{Config, InotifyLimits};
use syncd_worker::durable::{self, Flush};

/// Where the kernel's sysctls live.
pub const PROC_SYS: &str = "/proc/sys";
/// The file `persist = true` writes.
pub const PERSIST_FILE: &str = "/etc/sysctl.d/90-syncd.conf";
/// The watch rule shared with the worker's out-of-watches message.
pub use syncd_worker::watch::limit::{watches_for, WATCH_HEADROOM};
/// `max_queued_events` when the config is silent: the kernel's default.
pub const QUEUED_EVENTS_FLOOR: u64 = 16384;

/// One of the two sysctls syncd manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    MaxUserWatches,
    MaxQueuedEvents,
}

impl Knob {
    pub const ALL: [Knob; 2] = [Knob::MaxUserWatches, Knob::MaxQueuedEvents];

    /// The file name under `fs/inotify/`.
    pub fn name(self) -> &'static str {
        match self {
            Knob::MaxUserWatches => "max_user_watches",
            Knob::MaxQueuedEvents => "max_queued_events",
        }
    }

    /// The sysctl key: `fs.inotify.max_user_watches`.
    pub fn key(self) -> &'static str {
        match self {
            Knob::MaxUserWatches => "fs.inotify.max_user_watches",
            Knob::MaxQueuedEvents => "fs.inotify.max_queued_events",
        }
    }
}

/// Values of both sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_user_watches: u64,
    pub max_queued_events: u64,
}

impl Limits {
    pub fn get(&self, knob: Knob) -> u64 {
        match knob {
            Knob::MaxUserWatches => self.max_user_watches,
            Knob::MaxQueuedEvents => self.max_queued_events,
        }
    }

    fn set(&mut self, knob: Knob, value: u64) {
        match knob {
            Knob::MaxUserWatches => self.max_user_watches = value,
            Knob::MaxQueuedEvents => self.max_queued_events = value,
        }
    }
}

/// What is asked for: the config's explicit values and the directories to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wants {
    pub max_user_watches: Option<u64>,
    pub max_queued_events: Option<u64>,
    /// Watches needed (one per directory): counted by `syncd check`, asked for by the
    /// worker when it runs out; None at start and reload (not counted: the config's
    /// minimum only).
    pub dirs: Option<u64>,
}

impl Wants {
    pub fn from_config(limits: &InotifyLimits, dirs: Option<u64>) -> Wants {
        Wants {
            max_user_watches: limits.max_user_watches,
            max_queued_events: limits.max_queued_events,
            dirs,
        }
    }
}

/// One value to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raise {
    pub knob: Knob,
    pub old: u64,
    pub new: u64,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The values read from the kernel.
    pub current: Limits,
    /// The values wanted: never below `current`.
    pub target: Limits,
    /// The knobs whose target is above the current value, in [`Knob::ALL`] order.
    pub raises: Vec<Raise>,
    /// Watches needed (from [`Wants`]).
    pub dirs: Option<u64>,
}

/// Decide the target values from the current ones and what is wanted. Never lowers.
pub fn plan(current: Limits, want: Wants) -> Plan {
    let wanted = Limits {
        max_user_watches: want
            .dirs
            .map_or(0, watches_for)
            .max(want.max_user_watches.unwrap_or(0)),
        max_queued_events: want.max_queued_events.unwrap_or(QUEUED_EVENTS_FLOOR),
    };
    let mut target = current;
    let mut raises = Vec::new();
    for knob in Knob::ALL {
        let (old, new) = (current.get(knob), wanted.get(knob));
        if new > old {
            target.set(knob, new);
            raises.push(Raise { knob, old, new });
        }
    }
    Plan {
        current,
        target,
        raises,
        dirs: want.dirs,
    }
}

/// The `/proc/sys` tree (a temp dir in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFs {
    pub root: PathBuf,
}

impl Default for SysctlFs {
    fn default() -> Self {
        SysctlFs {
            root: PathBuf::from(PROC_SYS),
        }
    }
}

impl SysctlFs {
    pub fn new(root: impl Into<PathBuf>) -> SysctlFs {
        SysctlFs { root: root.into() }
    }

    /// `<root>/fs/inotify/<name>`.
    pub fn path(&self, knob: Knob) -> PathBuf {
        self.root.join("fs/inotify").join(knob.name())
    }

    /// The current value. A file that does not hold a number is `InvalidData`.
    pub fn read(&self, knob: Knob) -> io::Result<u64> {
        let text = fs::read_to_string(self.path(knob))?;
        text.trim().parse::<u64>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{:?} is not a number: {e}", text.trim()),
            )
        })
    }

    /// Write `value` (the file must exist: sysctls are never created).
    pub fn write(&self, knob: Knob, value: u64) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(self.path(knob))?;
        f.write_all(format!("{value}\n").as_bytes())
    }

    /// Could we write it? Opens the file for writing and writes nothing.
    pub fn writable(&self, knob: Knob) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(self.path(knob))
            .map(drop)
    }
}

/// Both current values.
pub fn read_current(fs: &SysctlFs) -> io::Result<Limits> {
    let mut limits = Limits::default();
    for knob in Knob::ALL {
        let value = fs.read(knob).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", fs.path(knob).display()),
            )
        })?;
        limits.set(knob, value);
    }
    Ok(limits)
}

/// How one raise went.
#[derive(Debug)]
pub enum Applied {
    Raised(Raise),
    /// Someone raised it past our target meanwhile: nothing done.
    AlreadyHigher {
        knob: Knob,
        now: u64,
    },
    /// No privilege (EACCES, EPERM, EROFS): the operator must run the command.
    Denied {
        raise: Raise,
        error: io::Error,
    },
    Failed {
        raise: Raise,
        error: io::Error,
    },
}

/// Raise each value of the plan. The value is read again just before writing, so a value
/// raised by someone else meanwhile is never lowered; and again after, to see the kernel
/// took it.
pub fn apply(fs: &SysctlFs, plan: &Plan) -> Vec<Applied> {
    plan.raises
        .iter()
        .map(|&raise| {
            let knob = raise.knob;
            match fs.read(knob) {
                Ok(now) if now >= raise.new => return Applied::AlreadyHigher { knob, now },
                Ok(_) => {}
                Err(error) => return Applied::Failed { raise, error },
            }
            if let Err(error) = fs.write(knob, raise.new) {
                return if is_privilege_error(&error) {
                    Applied::Denied { raise, error }
                } else {
                    Applied::Failed { raise, error }
                };
            }
            match fs.read(knob) {
                Ok(now) if now >= raise.new => Applied::Raised(raise),
                Ok(now) => Applied::Failed {
                    raise,
                    error: io::Error::other(format!("the kernel kept {now}")),
                },
                Err(error) => Applied::Failed { raise, error },
            }
        })
        .collect()
}

/// EACCES, EPERM, EROFS: not root, or `/proc/sys` read-only (a container). The code of a
/// [`durable`] write's error is looked up inside it.
pub fn is_privilege_error(e: &io::Error) -> bool {
    let code = durable::Error::of(e).map_or(e.raw_os_error(), |d| d.io().raw_os_error());
    matches!(
        code,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

/// The command that does what a denied raise could not.
pub fn raise_command(raise: &Raise) -> String {
    format!("sysctl -w {}={}", raise.knob.key(), raise.new)
}

/// The persisted file's content for `values`, given what the file holds now (None: no
/// file). Each value is no lower than the file's. `Ok(None)` when the file already says
/// exactly this; `Err(keys)` when it holds settings that are not syncd's (we will not
/// drop them).
pub fn persist_content(
    existing: Option<&str>,
    values: Limits,
) -> Result<Option<String>, Vec<String>> {
    let mut values = values;
    let mut foreign = Vec::new();
    for line in existing.unwrap_or("").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            foreign.push(line.to_string());
            continue;
        };
        // sysctl.d(5): a leading '-' means "ignore errors"; '/' may separate the words.
        let key = key.trim().trim_start_matches('-').replace('/', ".");
        match Knob::ALL.into_iter().find(|k| k.key() == key) {
            Some(knob) => {
                if let Ok(v) = value.trim().parse::<u64>() {
                    values.set(knob, values.get(knob).max(v));
                }
            }
            None => foreign.push(key),
        }
    }
    if !foreign.is_empty() {
        return Err(foreign);
    }
    let mut text = String::from(
        "# Written by syncd (`persist = true` in the [inotify] table of its config): the\n\
         # inotify limits syncd needs, applied at boot by systemd-sysctl or `sysctl --system`.\n\
         # syncd rewrites this file at start and never lowers a value in it. Apply it now with\n\
         # `sysctl -p /etc/sysctl.d/90-syncd.conf`.\n",
    );
    for knob in Knob::ALL {
        text.push_str(&format!("{} = {}\n", knob.key(), values.get(knob)));
    }
    Ok((existing != Some(text.as_str())).then_some(text))
}

/// How persisting went.
#[derive(Debug)]
pub enum Persisted {
    Written {
        content: String,
    },
    Unchanged,
    /// The file holds other settings; left alone.
    Foreign {
        keys: Vec<String>,
    },
    Denied {
        content: String,
        error: io::Error,
    },
    Failed {
        error: io::Error,
    },
}

/// Write `values` (no lower than what `path` holds) to `path`, atomically.
pub fn persist(path: &Path, values: Limits) -> Persisted {
    let existing = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Persisted::Failed { error },
    };
    let content = match persist_content(existing.as_deref(), values) {
        Ok(Some(content)) => content,
        Ok(None) => return Persisted::Unchanged,
        Err(keys) => return Persisted::Foreign { keys },
    };
    // /etc/sysctl.d may not exist yet (a minimal system): create it, then replace the
    // file durably, mode 0644.
    let dir = path.parent().unwrap_or(Path::new("."));
    let written = fs::create_dir_all(dir).and_then(|()| {
        durable::replace(path, content.as_bytes(), 0o644, Flush::Durable).map_err(io::Error::from)
    });
    match written {
        Ok(()) => Persisted::Written { content },
        Err(error) if is_privilege_error(&error) => Persisted::Denied { content, error },
        Err(error) => Persisted::Failed { error },
    }
}

/// One line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub message: String,
}

impl Note {
    fn new(level: Level, message: impl Into<String>) -> Note {
        Note {
            level,
            message: message.into(),
        }
    }
}

/// Set (to anything but empty or `0`) to keep syncd's hands off the sysctls: the plan is
/// logged, nothing is written. For tests that lower a limit on purpose, and containers.
pub const NO_SYSCTL_ENV: &str = "SYNCD_NO_SYSCTL";

/// Is [`NO_SYSCTL_ENV`] set?
fn hands_off() -> bool {
    std::env::var_os(NO_SYSCTL_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Raise the inotify limits the config asks for (and `max_queued_events` to its floor);
/// log old → new, or warn with the exact command when not privileged. Never fails the
/// start. Counts nothing: the worker asks when its walk runs out of watches
/// ([`raise_for_worker`]).
pub fn tune(config: &Config) {
    let notes = tune_with(
        config,
        None,
        &SysctlFs::default(),
        Path::new(PERSIST_FILE),
        !hands_off(),
    );
    for note in notes {
        log::log!(note.level, "{}", note.message);
    }
}

/// The worker ran out of inotify watches and asks for `needed` (the watches its user has
/// in use and still misses): the same policy as [`tune`], with that count (doubled, with
/// headroom, a power of two, never lower, persisted when configured), logged the same
/// way. Returns `max_user_watches` as it is afterwards (None: unreadable), the answer.
pub fn raise_for_worker(config: &Config, needed: u64) -> Option<u64> {
    let fs = SysctlFs::default();
    let notes = tune_with(
        config,
        Some(needed),
        &fs,
        Path::new(PERSIST_FILE),
        !hands_off(),
    );
    for note in notes {
        log::log!(note.level, "{}", note.message);
    }
    fs.read(Knob::MaxUserWatches).ok()
}

/// [`tune`] and [`raise_for_worker`] with their inputs given: the watches needed (None:
/// not counted), the sysctl tree, the persist path, and whether it may write (false:
/// only say what it would do). Returns the log lines instead of logging them.
pub fn tune_with(
    config: &Config,
    dirs: Option<u64>,
    fs: &SysctlFs,
    persist_path: &Path,
    write: bool,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let current = match read_current(fs) {
        Ok(c) => c,
        Err(e) => {
            notes.push(Note::new(
                Level::Warn,
                format!("{e}; inotify limits left as they are"),
            ));
            return notes;
        }
    };
    let settings = &config.daemon.inotify;
    let plan = plan(current, Wants::from_config(settings, dirs));
    notes.push(Note::new(
        Level::Debug,
        format!(
            "inotify: {}; {} = {}, {} = {}",
            dirs.map_or_else(
                || "the config's limits".to_string(),
                |n| format!("{n} watches needed")
            ),
            Knob::MaxUserWatches.key(),
            current.max_user_watches,
            Knob::MaxQueuedEvents.key(),
            current.max_queued_events
        ),
    ));
    let mut now = current;
    if !write {
        for r in &plan.raises {
            notes.push(Note::new(
                Level::Warn,
                format!(
                    "{NO_SYSCTL_ENV} is set: not raising {} from {} to {}; run: {}",
                    r.knob.key(),
                    r.old,
                    r.new,
                    raise_command(r)
                ),
            ));
        }
    }
    let applied = if write { apply(fs, &plan) } else { Vec::new() };
    for applied in applied {
        notes.push(match applied {
            Applied::Raised(r) => {
                now.set(r.knob, r.new);
                Note::new(
                    Level::Info,
                    format!("{}: {} → {}", r.knob.key(), r.old, r.new),
                )
            }
            Applied::AlreadyHigher { knob, now: v } => {
                now.set(knob, v);
                Note::new(
                    Level::Debug,
                    format!("{}: already {v}, raised by someone else", knob.key()),
                )
            }
            Applied::Denied { raise, error } => Note::new(
                Level::Warn,
                format!(
                    "cannot raise {} from {} to {} ({error}); as root run: {}",
                    raise.knob.key(),
                    raise.old,
                    raise.new,
                    raise_command(&raise)
                ),
            ),
            Applied::Failed { raise, error } => Note::new(
                Level::Error,
                format!(
                    "failed to raise {} from {} to {} ({}: {error}); run: {}",
                    raise.knob.key(),
                    raise.old,
                    raise.new,
                    fs.path(raise.knob).display(),
                    raise_command(&raise)
                ),
            ),
        });
    }
    if settings.persist && write {
        notes.extend(persist_notes(persist_path, plan.target));
    }
    if let Some(dirs) = dirs.filter(|&d| now.max_user_watches < d) {
        notes.push(Note::new(
            Level::Warn,
            format!(
                "{dirs} inotify watches are needed but {} is {}: some directories will not \
                 be watched; run `sysctl -w {}={}` as root",
                Knob::MaxUserWatches.key(),
                now.max_user_watches,
                Knob::MaxUserWatches.key(),
                plan.target.max_user_watches
            ),
        ));
    }
    notes
}

fn persist_notes(path: &Path, values: Limits) -> Vec<Note> {
    let shown = path.display();
    let note = match persist(path, values) {
        Persisted::Written { content } => Note::new(
            Level::Info,
            format!(
                "wrote {shown}: {}",
                content
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Persisted::Unchanged => Note::new(Level::Debug, format!("{shown} is up to date")),
        Persisted::Foreign { keys } => Note::new(
            Level::Warn,
            format!(
                "{shown} holds settings that are not syncd's ({}); not rewriting it: move them \
                 to another file in {}",
                keys.join(", "),
                path.parent().unwrap_or(Path::new("/")).display()
            ),
        ),
        Persisted::Denied { content, error } => Note::new(
            Level::Warn,
            format!(
                "cannot write {shown} ({error}); as root, write these lines into it:\n{content}"
            ),
        ),
        Persisted::Failed { error } => {
            Note::new(Level::Error, format!("cannot write {shown}: {error}"))
        }
    };
    vec![note]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn limits(w: u64, q: u64) -> Limits {
        Limits {
            max_user_watches: w,
            max_queued_events: q,
        }
    }

    fn wants(w: Option<u64>, q: Option<u64>, dirs: u64) -> Wants {
        Wants {
            max_user_watches: w,
            max_queued_events: q,
            dirs: Some(dirs),
        }
    }

    #[test]
    fn plan_table() {
        use Knob::*;
        let r = |knob, old, new| Raise { knob, old, new };
        // (current, wants, expected raises)
        let cases: Vec<(Limits, Wants, Vec<Raise>)> = vec![
            // This box: a big default, small tree, silent config: nothing.
            (limits(192_536, 16384), wants(None, None, 50), vec![]),
            // Old kernel default 8192 and 10 dirs: headroom wants 16384.
            (
                limits(8192, 16384),
                wants(None, None, 10),
                vec![r(MaxUserWatches, 8192, 16384)],
            ),
            // The sources outgrow the limit.
            (
                limits(192_536, 16384),
                wants(None, None, 100_000),
                vec![r(MaxUserWatches, 192_536, 262_144)],
            ),
            // The config asks for more than the tree needs.
            (
                limits(8192, 16384),
                wants(Some(1_048_576), Some(262_144), 10),
                vec![
                    r(MaxUserWatches, 8192, 1_048_576),
                    r(MaxQueuedEvents, 16384, 262_144),
                ],
            ),
            // The config asks for less than the tree needs: the tree wins.
            (
                limits(8192, 16384),
                wants(Some(10_000), None, 20_000),
                vec![r(MaxUserWatches, 8192, 65536)],
            ),
            // Never lower: config below current, floor below current.
            (
                limits(2_000_000, 500_000),
                wants(Some(100), Some(100), 5),
                vec![],
            ),
            // A lowered max_queued_events comes back up to the floor.
            (
                limits(192_536, 1000),
                wants(None, None, 5),
                vec![r(MaxQueuedEvents, 1000, 16384)],
            ),
            // Equal is not a raise.
            (
                limits(16384, 16384),
                wants(Some(16384), Some(16384), 1),
                vec![],
            ),
            // Start and reload count nothing: the config's minimum and the queue floor
            // only, however low the watch limit (the worker asks when it runs out).
            (
                limits(8192, 1000),
                Wants::default(),
                vec![r(MaxQueuedEvents, 1000, 16384)],
            ),
            (
                limits(8192, 16384),
                Wants {
                    max_user_watches: Some(100_000),
                    ..Wants::default()
                },
                vec![r(MaxUserWatches, 8192, 100_000)],
            ),
        ];
        for (current, want, raises) in cases {
            let p = plan(current, want);
            assert_eq!(p.raises, raises, "{current:?} {want:?}");
            assert_eq!(p.current, current);
            assert_eq!(p.dirs, want.dirs);
            for knob in Knob::ALL {
                assert!(p.target.get(knob) >= current.get(knob), "lowered {knob:?}");
                let raised = raises.iter().find(|r| r.knob == knob);
                assert_eq!(
                    p.target.get(knob),
                    raised.map_or(current.get(knob), |r| r.new)
                );
            }
        }
    }

    #[test]
    fn privilege_errors_are_recognised() {
        let cases = [
            (libc::EACCES, true),
            (libc::EPERM, true),
            (libc::EROFS, true),
            (libc::EINVAL, false),
            (libc::ENOENT, false),
        ];
        for (errno, want) in cases {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(is_privilege_error(&e), want, "{e}");
        }
        assert!(!is_privilege_error(&io::Error::other("x")));
        // A durable write's error, as `persist` gets it: the code inside counts.
        let dir = tempfile::tempdir().expect("tempdir");
        let blocked = dir.path().join("file");
        fs::write(&blocked, "x").expect("write");
        let e: io::Error = durable::replace(&blocked.join("f"), b"x", 0o644, Flush::Durable)
            .expect_err("a file is no directory")
            .into();
        assert!(!is_privilege_error(&e), "ENOTDIR: {e}");
        assert!(durable::Error::of(&e).is_some(), "{e}");
        assert_eq!(
            raise_command(&Raise {
                knob: Knob::MaxUserWatches,
                old: 8192,
                new: 65536
            }),
            "sysctl -w fs.inotify.max_user_watches=65536"
        );
    }

    fn body(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn persist_content_table() {
        let w = "fs.inotify.max_user_watches";
        let q = "fs.inotify.max_queued_events";
        // (existing file, values, expected key lines or Err(foreign keys))
        type Case = (
            Option<String>,
            Limits,
            Result<Vec<String>, Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                limits(65536, 16384),
                Ok(vec![format!("{w} = 65536"), format!("{q} = 16384")]),
            ),
            // The file's higher value stays; ours wins where higher.
            (
                Some(format!("{w} = 1048576\n{q}=100\n")),
                limits(65536, 16384),
                Ok(vec![format!("{w} = 1048576"), format!("{q} = 16384")]),
            ),
            // '/' separators, a '-' prefix, comments, blank lines.
            (
                Some("# admin\n; note\n\n-fs/inotify/max_user_watches = 500000\n".to_string()),
                limits(65536, 16384),
                Ok(vec![format!("{w} = 500000"), format!("{q} = 16384")]),
            ),
            // Not syncd's: left alone.
            (
                Some(format!("{w} = 1\nvm.swappiness = 10\n")),
                limits(65536, 16384),
                Err(vec!["vm.swappiness"]),
            ),
            (
                Some("garbage line\n".to_string()),
                limits(65536, 16384),
                Err(vec!["garbage line"]),
            ),
        ];
        for (existing, values, want) in cases {
            let got = persist_content(existing.as_deref(), values);
            match (got, want) {
                (Ok(Some(text)), Ok(lines)) => {
                    assert_eq!(body(&text), lines, "{existing:?}");
                    assert!(text.starts_with("# Written by syncd"));
                    // Writing the result again changes nothing.
                    assert_eq!(persist_content(Some(&text), values), Ok(None));
                    // Nor do lower values.
                    assert_eq!(persist_content(Some(&text), limits(1, 1)), Ok(None));
                }
                (Err(keys), Err(want)) => assert_eq!(keys, want, "{existing:?}"),
                (got, want) => panic!("{existing:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// A fake `/proc/sys` with the two files.
    fn fake_proc(w: u64, q: u64) -> (tempfile::TempDir, SysctlFs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = SysctlFs::new(dir.path());
        fs::create_dir_all(dir.path().join("fs/inotify")).expect("mkdir");
        fs::write(fs.path(Knob::MaxUserWatches), format!("{w}\n")).expect("write");
        fs::write(fs.path(Knob::MaxQueuedEvents), format!("{q}\n")).expect("write");
        (dir, fs)
    }

    /// A config with one sync (its source lives as long as the returned dir).
    fn config_with(limits: InotifyLimits) -> (tempfile::TempDir, Config) {
        let src = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[[sync]]\nsource = \"{}\"\n[[sync.target]]\ndest = \"/nonexistent-target\"\n",
            src.path().display()
        );
        let mut config =
            syncd_worker::config::parse(text.as_bytes(), Path::new("t.toml")).expect("config");
        config.daemon.inotify = limits;
        (src, config)
    }

    #[test]
    fn shell_reads_and_writes_under_its_root() {
        let (_dir, fs) = fake_proc(8192, 16384);
        assert_eq!(read_current(&fs).expect("read"), limits(8192, 16384));
        assert!(fs.writable(Knob::MaxUserWatches).is_ok());
        fs.write(Knob::MaxUserWatches, 65536).expect("write");
        assert_eq!(fs.read(Knob::MaxUserWatches).expect("read"), 65536);

        fs::write(fs.path(Knob::MaxQueuedEvents), "lots\n").expect("write");
        let err = read_current(&fs).expect_err("not a number");
        assert!(err.to_string().contains("max_queued_events"), "{err}");
        assert!(
            err.to_string().contains("\"lots\" is not a number"),
            "{err}"
        );

        let missing = SysctlFs::new("/nonexistent-syncd-proc");
        let err = read_current(&missing).expect_err("missing");
        assert!(err
            .to_string()
            .contains("/nonexistent-syncd-proc/fs/inotify"));
    }

    #[test]
    fn tune_raises_logs_old_to_new_and_persists() {
        let (dir, fs) = fake_proc(8192, 16384);
        let persist_path = dir.path().join("etc/sysctl.d/90-syncd.conf");
        let (_src, config) = config_with(InotifyLimits {
            max_user_watches: None,
            max_queued_events: Some(65536),
            persist: true,
        });
        let notes = tune_with(&config, Some(20_000), &fs, &persist_path, true);
        assert_eq!(read_current(&fs).expect("read"), limits(65536, 65536));
        let info: Vec<&str> = notes
            .iter()
            .filter(|n| n.level == Level::Info)
            .map(|n| n.message.as_str())
            .collect();
        assert_eq!(
            info[..2],
            [
                "fs.inotify.max_user_watches: 8192 → 65536",
                "fs.inotify.max_queued_events: 16384 → 65536"
            ],
            "{notes:?}"
        );
        let written = fs::read_to_string(&persist_path).expect("persisted");
        assert_eq!(
            body(&written),
            [
                "fs.inotify.max_user_watches = 65536",
                "fs.inotify.max_queued_events = 65536"
            ]
        );
        assert!(!notes.iter().any(|n| n.level <= Level::Warn), "{notes:?}");

        // Second start: nothing to raise, file up to date, nothing lowered when the
        // config asks for less and the file holds more.
        fs::write(
            &persist_path,
            written.replace("max_user_watches = 65536", "max_user_watches = 999999"),
        )
        .expect("edit");
        let (_src2, config) = config_with(InotifyLimits {
            persist: true,
            ..InotifyLimits::default()
        });
        let notes = tune_with(&config, Some(3), &fs, &persist_path, true);
        assert_eq!(read_current(&fs).expect("read"), limits(65536, 65536));
        assert!(
            !notes
                .iter()
                .any(|n| n.level == Level::Info && n.message.contains('→')),
            "{notes:?}"
        );
        let again = fs::read_to_string(&persist_path).expect("persisted");
        assert!(again.contains("max_user_watches = 999999"), "{again}");
        assert!(again.contains("max_queued_events = 65536"), "{again}");
        let tmp_left = fs::read_dir(persist_path.parent().expect("parent"))
            .expect("readdir")
            .count();
        assert_eq!(tmp_left, 1, "no temp file left behind");
    }

    #[test]
    fn hands_off_plans_but_writes_nothing() {
        let (dir, fs) = fake_proc(8192, 16384);
        let persist_path = dir.path().join("90-syncd.conf");
        let (_src, config) = config_with(InotifyLimits {
            persist: true,
            ..InotifyLimits::default()
        });
        let notes = tune_with(&config, Some(10), &fs, &persist_path, false);
        assert_eq!(read_current(&fs).expect("read"), limits(8192, 16384));
        assert!(!persist_path.exists());
        let warn: Vec<&str> = notes
            .iter()
            .filter(|n| n.level == Level::Warn)
            .map(|n| n.message.as_str())
            .collect();
        assert_eq!(
            warn,
            [
                "SYNCD_NO_SYSCTL is set: not raising fs.inotify.max_user_watches from 8192 to \
              16384; run: sysctl -w fs.inotify.max_user_watches=16384"
            ]
        );
    }

    #[test]
    fn tune_never_fails_and_says_what_to_run() {
        let (_src, config) = config_with(InotifyLimits {
            persist: true,
            ..InotifyLimits::default()
        });
        // The sysctl files are missing: one warning, nothing else.
        let missing = SysctlFs::new("/nonexistent-syncd-proc");
        let notes = tune_with(
            &config,
            Some(5),
            &missing,
            Path::new("/nonexistent/p.conf"),
            true,
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].level, Level::Warn);
        assert!(notes[0].message.contains("left as they are"), "{notes:?}");

        // No privilege: our max_user_watches is the kernel's read-only (0444) ngroups_max,
        // which reads 65536 and refuses writes with EACCES even for root, so the
        // machine's values cannot change. 70000 dirs want 262144.
        let (dir, fs) = fake_proc(8192, 16384);
        fs::remove_file(fs.path(Knob::MaxUserWatches)).expect("rm");
        std::os::unix::fs::symlink(
            "/proc/sys/kernel/ngroups_max",
            fs.path(Knob::MaxUserWatches),
        )
        .expect("symlink");
        let before = fs.read(Knob::MaxUserWatches).expect("read ngroups_max");
        assert!(fs.writable(Knob::MaxUserWatches).is_err());
        // The persist file's directory cannot be created either: a file is in its way.
        fs::write(dir.path().join("etc"), "").expect("write");
        let persist_path = dir.path().join("etc/sysctl.d/90-syncd.conf");
        let notes = tune_with(&config, Some(70_000), &fs, &persist_path, true);
        assert_eq!(fs.read(Knob::MaxUserWatches).expect("read"), before);
        let text: Vec<String> = notes
            .iter()
            .filter(|n| n.level <= Level::Warn)
            .map(|n| format!("{}: {}", n.level, n.message))
            .collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(
            text[0]
                .starts_with("WARN: cannot raise fs.inotify.max_user_watches from 65536 to 262144")
                && text[0].ends_with("as root run: sysctl -w fs.inotify.max_user_watches=262144"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("ERROR: cannot write ") && text[1].contains("90-syncd.conf"),
            "{text:#?}"
        );
        assert!(
            text[2].contains("70000 inotify watches are needed")
                && text[2].contains("sysctl -w fs.inotify.max_user_watches=262144"),
            "{text:#?}"
        );
    }

    #[test]
    fn persist_refuses_foreign_files_and_reports_unwritable_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("90-syncd.conf");
        fs::write(&path, "kernel.pid_max = 4194304\n").expect("write");
        match persist(&path, limits(65536, 16384)) {
            Persisted::Foreign { keys } => assert_eq!(keys, ["kernel.pid_max"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "kernel.pid_max = 4194304\n",
            "left alone"
        );
        // The parent is a file: the write fails and says so.
        let blocked = dir.path().join("90-syncd.conf/x.conf");
        match persist(&blocked, limits(65536, 16384)) {
            Persisted::Failed { .. } => {}
            other => panic!("{other:?}"),
        }
        // sysfs refuses new files to everyone, root included (EACCES, or EROFS when
        // mounted read-only): denied, so the operator is shown the lines to write.
        match persist(
            Path::new("/sys/90-syncd-unit-test.conf"),
            limits(65536, 16384),
        ) {
            Persisted::Denied { content, error } => {
                assert!(
                    content.contains("fs.inotify.max_user_watches = 65536"),
                    "{content}"
                );
                assert!(is_privilege_error(&error), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
}
