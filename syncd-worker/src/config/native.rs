//! Reading syncd's own TOML format (see `init/syncd.toml` for every key and default) into a
//! [`FileSpec`]. Owns the TOML syntax: unknown keys (serde's `deny_unknown_fields`), value
//! types, duration strings, and where each value was written (`toml::Spanned`). It does
//! not judge values; `spec::build` does that for both formats. Pure: no I/O.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::dest::redacted;
use super::diag::{At, Diags, Pos, Problem};
use super::model::{EventSet, Mode};
use super::spec::{
    self, CommandSpec, DaemonSpec, FileSpec, Format, HttpSpec, SyncSpec, TargetSpec, MAX_DURATION,
    MAX_FULL_INTERVAL,
};
use super::watcher::WatcherChoice;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    state_dir: Option<Spanned<String>>,
    status_file: Option<Spanned<String>>,
    metrics_file: Option<Spanned<String>>,
    pid_file: Option<Spanned<String>>,
    log_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    inotify: Option<RawInotify>,
    sync: Option<Vec<Spanned<RawSync>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInotify {
    max_user_watches: Option<Spanned<i64>>,
    max_queued_events: Option<Spanned<i64>>,
    persist: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    source: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    mode: Option<RawMode>,
    watcher: Option<Spanned<String>>,
    delay: Option<Spanned<toml::Value>>,
    max_delay: Option<Spanned<toml::Value>>,
    max_batch: Option<Spanned<i64>>,
    max_queue: Option<Spanned<i64>>,
    threads: Option<Spanned<i64>>,
    max_in_flight: Option<Spanned<i64>>,
    initial_sync: Option<bool>,
    max_delete: Option<Spanned<toml::Value>>,
    exclude: Option<Vec<Spanned<String>>>,
    events: Option<Spanned<RawEvents>>,
    rsync: Option<RawRsync>,
    retry: Option<RawRetry>,
    full_sync: Option<RawFullSync>,
    verify: Option<RawVerify>,
    target: Option<Vec<Spanned<RawTarget>>>,
    hooks: Option<RawHooks>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Files,
    Tree,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    delete: Option<bool>,
    create_folder: Option<bool>,
    create_file: Option<bool>,
    close_write: Option<bool>,
    move_from: Option<bool>,
    move_to: Option<bool>,
    attrib: Option<bool>,
    modify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRsync {
    binary: Option<Spanned<String>>,
    params: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<toml::Value>>,
    extra: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    min_interval: Option<Spanned<toml::Value>>,
    max_interval: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFullSync {
    interval: Option<Spanned<toml::Value>>,
    exclude: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    interval: Option<Spanned<toml::Value>>,
    deep: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    dest: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    name: Option<Spanned<String>>,
    ssh_args: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    command: Option<Spanned<RawCommand>>,
    http: Option<Spanned<RawHttp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    argv: Option<Vec<String>>,
    include: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Option<Spanned<String>>,
    timeout: Option<Spanned<toml::Value>>,
}

/// Parse `text`; syntax and type errors go to `d` (and give None).
pub(super) fn read(text: &str, d: &mut Diags) -> Option<FileSpec> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            d.push(toml_problem(text, &e));
            return None;
        }
    };
    let r = Reader { text };
    let (watches, queued, persist) = match raw.inotify {
        Some(i) => (i.max_user_watches, i.max_queued_events, i.persist),
        None => (None, None, None),
    };
    Some(FileSpec {
        state_dir: raw.state_dir.map(|s| r.at(s)),
        status_file: raw.status_file.map(|s| r.at(s)),
        metrics_file: raw.metrics_file.map(|s| r.at(s)),
        daemon: DaemonSpec {
            pid_file: raw.pid_file.map(|s| r.at(s)),
            log_file: raw.log_file.map(|s| r.at(s)),
            user: raw.user.map(|s| r.at(s)),
            group: raw.group.map(|s| r.at(s)),
            max_user_watches: watches.map(|v| r.at(v)),
            max_queued_events: queued.map(|v| r.at(v)),
            persist: persist.unwrap_or(false),
        },
        syncs: raw
            .sync
            .unwrap_or_default()
            .into_iter()
            .map(|s| r.sync(s, d))
            .collect(),
        syncs_at: Pos::START,
    })
}

/// A toml error as a problem: `FILE:LINE:COL: message`, then toml's picture of the line.
/// Both may quote the file; what could be a password there (`user:password@host`) is
/// hidden ([`redacted`]), whatever the error is about.
fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
    let pos = e
        .span()
        .map_or(Pos::START, |s| Pos::of_offset(text, s.start));
    let message = redacted(&e.message().trim().replace('\n', "; "));
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().skip(1).collect();
    let picture = lines
        .len()
        .saturating_sub(e.message().trim().lines().count());
    let mut detail: Vec<String> = lines[..picture].iter().map(|l| redacted(l)).collect();
    if message.contains("expected a sequence") {
        detail.push(
            "a list of blocks is written with two brackets: [[sync]], [[sync.target]]".into(),
        );
    }
    Problem {
        pos: Some(pos),
        message,
        detail,
    }
}

struct Reader<'a> {
    text: &'a str,
}

impl Reader<'_> {
    fn pos(&self, span: Range<usize>) -> Pos {
        Pos::of_offset(self.text, span.start)
    }

    fn at<T>(&self, s: Spanned<T>) -> At<T> {
        let at = self.pos(s.span());
        At::new(s.into_inner(), at)
    }

    fn list(&self, v: Option<Vec<Spanned<String>>>) -> Option<Vec<At<String>>> {
        v.map(|v| v.into_iter().map(|s| self.at(s)).collect())
    }

    /// A duration string of at most `max`; errors keep `default` so checking can go on.
    fn duration(
        &self,
        v: Option<Spanned<toml::Value>>,
        key: &str,
        default: At<Duration>,
        max: Duration,
        d: &mut Diags,
    ) -> At<Duration> {
        let Some(v) = v else { return default };
        let at = self.pos(v.span());
        match v.get_ref() {
            toml::Value::String(s) => match parse_duration(s) {
                Ok(value) if value <= max => At::new(value, at),
                Ok(_) => {
                    let max = humantime::format_duration(max);
                    d.error_with(
                        at,
                        format!("{key} = {s:?} is too long: at most {max}"),
                        &[&format!(
                            "write at most \"{max}\": longer waits are mistakes (and overflow timers)"
                        )],
                    );
                    default
                }
                Err(e) => {
                    d.error_with(
                        at,
                        format!("{key} = {s:?} is not a duration: {e}"),
                        &["write a number with a unit, e.g. \"50ms\", \"15s\", \"10m\", \"2h\"; \"0\" for zero"],
                    );
                    default
                }
            },
            toml::Value::Integer(n) => {
                let hint = format!(
                    "write it as a string with a unit, e.g. {key} = \"{n}s\" (or \"{n}ms\")"
                );
                d.error_with(at, format!("{key} = {n} has no unit"), &[&hint]);
                default
            }
            other => {
                d.error_with(
                    at,
                    format!(
                        "{key} must be a duration string, not a {}",
                        other.type_str()
                    ),
                    &["write e.g. \"15s\""],
                );
                default
            }
        }
    }

    /// A duration where zero means "off".
    fn optional_duration(
        &self,
        v: Option<Spanned<toml::Value>>,
        key: &str,
        default: Option<Duration>,
        at: Pos,
        max: Duration,
        d: &mut Diags,
    ) -> Option<Duration> {
        let got = self.duration(v, key, At::new(default.unwrap_or_default(), at), max, d);
        Some(got.value).filter(|v| !v.is_zero())
    }

    /// `watcher = "auto" | "inotify" | "fanotify"`; another word is an error that keeps
    /// `default` so checking can go on.
    fn watcher(
        &self,
        v: Spanned<String>,
        default: At<WatcherChoice>,
        d: &mut Diags,
    ) -> At<WatcherChoice> {
        let v = self.at(v);
        match WatcherChoice::from_word(&v.value) {
            Some(choice) => At::new(choice, v.at),
            None => {
                d.error_with(
                    v.at,
                    format!("watcher = {:?} is not a watcher", v.value),
                    &["write \"auto\" (the default: fanotify where it works, else inotify), \"inotify\" or \"fanotify\""],
                );
                default
            }
        }
    }

    fn sync(&self, s: Spanned<RawSync>, d: &mut Diags) -> SyncSpec {
        let at = self.pos(s.span());
        let raw = s.into_inner();
        let mut spec = SyncSpec::new(Format::Toml, at);
        spec.source = raw.source.map(|v| self.at(v));
        spec.name = raw.name.map(|v| self.at(v));
        spec.mode = match raw.mode {
            Some(RawMode::Tree) => Mode::Tree,
            Some(RawMode::Files) | None => Mode::Files,
        };
        if let Some(w) = raw.watcher {
            spec.watcher = self.watcher(w, spec.watcher, d);
        }
        spec.delay = self.duration(raw.delay, "delay", spec.delay, MAX_DURATION, d);
        spec.max_delay = self.duration(raw.max_delay, "max_delay", spec.max_delay, MAX_DURATION, d);
        if let Some(v) = raw.max_batch {
            spec.max_batch = self.at(v);
        }
        if let Some(v) = raw.max_queue {
            spec.max_queue = self.at(v);
        }
        if let Some(v) = raw.threads {
            spec.threads = self.at(v);
        }
        if let Some(v) = raw.max_in_flight {
            spec.max_in_flight = self.at(v);
        }
        spec.initial_sync = raw.initial_sync.unwrap_or(false);
        spec.max_delete = raw.max_delete.map(|v| {
            let at = self.pos(v.span());
            let text = match v.into_inner() {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            At::new(text, at)
        });
        spec.exclude = self.list(raw.exclude).unwrap_or_default();
        if let Some(ev) = raw.events {
            spec.events_at = self.pos(ev.span());
            spec.events = events(ev.into_inner());
        }
        if let Some(r) = raw.rsync {
            if let Some(b) = r.binary {
                spec.rsync_binary = self.at(b);
            }
            if let Some(p) = r.params {
                spec.params = self.list(Some(p)).unwrap_or_default();
            }
            spec.rsync_timeout = self.optional_duration(
                r.timeout,
                "timeout",
                spec.rsync_timeout,
                at,
                MAX_DURATION,
                d,
            );
            spec.extra = self.list(r.extra).unwrap_or_default();
        }
        if let Some(r) = raw.retry {
            spec.retry_min = self.duration(
                r.min_interval,
                "min_interval",
                spec.retry_min,
                MAX_DURATION,
                d,
            );
            spec.retry_max = self.duration(
                r.max_interval,
                "max_interval",
                spec.retry_max,
                MAX_DURATION,
                d,
            );
        }
        if let Some(f) = raw.full_sync {
            spec.full_interval =
                self.optional_duration(f.interval, "interval", None, at, MAX_FULL_INTERVAL, d);
            spec.full_exclude = self.list(f.exclude);
        }
        if let Some(v) = raw.verify {
            let interval = self.duration(
                v.interval,
                "interval",
                At::new(Duration::ZERO, at),
                MAX_FULL_INTERVAL,
                d,
            );
            spec.verify_interval = Some(interval).filter(|i| !i.value.is_zero());
            spec.verify_deep = v.deep.unwrap_or(false);
        }
        spec.targets = raw
            .target
            .unwrap_or_default()
            .into_iter()
            .map(|t| self.target(t))
            .collect();
        if let Some(h) = raw.hooks {
            spec.command_hook = h.command.map(|c| {
                let at = self.pos(c.span());
                let c = c.into_inner();
                CommandSpec {
                    at,
                    argv: c.argv.unwrap_or_default(),
                    include: self.list(c.include),
                    timeout: self
                        .duration(
                            c.timeout,
                            "timeout",
                            At::new(spec::DEFAULT_COMMAND_TIMEOUT, at),
                            MAX_DURATION,
                            d,
                        )
                        .value,
                }
            });
            spec.http_hook = h.http.map(|h| {
                let at = self.pos(h.span());
                let h = h.into_inner();
                HttpSpec {
                    at,
                    url: h.url.map(|u| self.at(u)),
                    timeout: self
                        .duration(
                            h.timeout,
                            "timeout",
                            At::new(spec::DEFAULT_HTTP_TIMEOUT, at),
                            MAX_DURATION,
                            d,
                        )
                        .value,
                }
            });
        }
        spec
    }

    fn target(&self, t: Spanned<RawTarget>) -> TargetSpec {
        let at = self.pos(t.span());
        let t = t.into_inner();
        TargetSpec {
            at,
            dest: t.dest.map(|v| self.at(v)),
            password_file: t.password_file.map(|v| self.at(v)),
            port: t.port.map(|v| self.at(v)),
            name: t.name.map(|v| self.at(v)),
            ssh_args: t.ssh_args.map(|v| self.at(v)),
        }
    }
}

fn events(raw: RawEvents) -> EventSet {
    let def = EventSet::default();
    EventSet {
        delete: raw.delete.unwrap_or(def.delete),
        create_folder: raw.create_folder.unwrap_or(def.create_folder),
        create_file: raw.create_file.unwrap_or(def.create_file),
        close_write: raw.close_write.unwrap_or(def.close_write),
        move_from: raw.move_from.unwrap_or(def.move_from),
        move_to: raw.move_to.unwrap_or(def.move_to),
        attrib: raw.attrib.unwrap_or(def.attrib),
        modify: raw.modify.unwrap_or(def.modify),
    }
}

/// "50ms", "15s", "1m 30s"; "0" is zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("50ms", Some(Duration::from_millis(50))),
            ("15s", Some(Duration::from_secs(15))),
            ("10m", Some(Duration::from_secs(600))),
            ("2h", Some(Duration::from_secs(7200))),
            ("1m 30s", Some(Duration::from_secs(90))),
            ("15", None),
            ("fast", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
    }
}
