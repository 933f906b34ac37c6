//! The logger of both binaries: one record per line on stderr, in one of two styles
//! ([`Style`]), chosen once at [`init`]:
//!
//! * `2026-11-24T13:55:40.123Z LEVEL message` (UTC) — a log file (`syncd start` points
//!   stderr at `log_file`), a terminal, a pipe.
//! * `<N>message` — stderr is systemd's journal stream: sd-daemon(3)'s priority prefix
//!   (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace) and no timestamp of
//!   our own (journald adds its own), so `journalctl -u syncd -p warning` works. journald
//!   splits a record on newlines, so every line of a multi-line message gets the prefix.
//!   Chosen only when `$JOURNAL_STREAM` names the very descriptor stderr is (its
//!   `device:inode`, as systemd.exec(5) says to check): a child whose stderr was
//!   redirected elsewhere inherits the variable but keeps timestamps.
//!
//! The controller or the init system decides where stderr goes; the controller can
//! replace it under the running worker ([`crate::log_channel`]). Keeps no state beyond
//! the level and style; never buffers, so a line is out before a crash. Each record is
//! written with a single `write_all` on unbuffered stderr, so lines from different
//! threads do not interleave. [`format_record`] and [`style_for`] are pure.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

const LEVELS: &str = "off, error, warn, info, debug, trace";

/// How a record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `2026-11-24T13:55:40.123Z LEVEL message`.
    Timestamped,
    /// `<N>message`, each line (sd-daemon(3) priority prefixes, for journald).
    Journal,
}

/// The syslog priority of a level, as sd-daemon(3) prefixes it.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One record as written, ending in a newline. Pure: `now` is passed in.
pub fn format_record(style: Style, level: Level, now: SystemTime, message: &str) -> String {
    match style {
        Style::Timestamped => format!(
            "{} {} {}\n",
            humantime::format_rfc3339_millis(now),
            level,
            message
        ),
        Style::Journal => {
            let body = message.strip_suffix('\n').unwrap_or(message);
            let prefix = format!("<{}>", priority(level));
            let mut out = String::with_capacity(body.len() + 4);
            for line in body.split('\n') {
                out.push_str(&prefix);
                out.push_str(line);
                out.push('\n');
            }
            out
        }
    }
}

/// The style for a stderr whose `(device, inode)` is `stderr` (None: unknown), given
/// `$JOURNAL_STREAM` (`"<device>:<inode>"`, decimal). Pure.
pub fn style_for(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> Style {
    let named = journal_stream.and_then(|v| {
        let (dev, ino) = v.trim().split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    });
    match (named, stderr) {
        (Some(n), Some(s)) if n == s => Style::Journal,
        _ => Style::Timestamped,
    }
}

/// The style for this process's stderr now.
pub fn detect_style() -> Style {
    let stderr = nix::sys::stat::fstat(std::io::stderr())
        .ok()
        .map(|st| (st.st_dev, st.st_ino));
    let stream = std::env::var("JOURNAL_STREAM").ok();
    style_for(stream.as_deref(), stderr)
}

/// Write `message` at `level` on stderr in this process's style, whether or not the
/// logger is installed or the level enabled: a command's last word before it exits
/// (`syncd: …`), which a terminal shows as it is and journald files at its priority.
pub fn last_word(level: Level, message: &str) {
    let line = match detect_style() {
        Style::Journal => format_record(Style::Journal, level, SystemTime::now(), message),
        Style::Timestamped => format!("{message}\n"),
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

struct Logger {
    level: LevelFilter,
    style: Style,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_record(
            self.style,
            record.level(),
            SystemTime::now(),
            &record.args().to_string(),
        );
        // Nowhere to report a failed write to stderr: drop the line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Install the logger for the whole process, showing records at `level` and above, in
/// the style stderr calls for ([`detect_style`]).
pub fn init(level: LevelFilter) -> anyhow::Result<()> {
    let style = detect_style();
    log::set_boxed_logger(Box::new(Logger { level, style }))
        .map_err(|e| anyhow::anyhow!("failed to install the logger: {e}"))?;
    log::set_max_level(level);
    Ok(())
}

/// Parse a level name as written in the config or on the command line (any case).
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(format!("unknown log level {s:?}; valid levels: {LEVELS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_level_table() {
        let ok = [
            ("off", LevelFilter::Off),
            ("error", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("Warning", LevelFilter::Warn),
            ("INFO", LevelFilter::Info),
            (" debug ", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ];
        for (input, want) in ok {
            assert_eq!(parse_level(input), Ok(want), "{input:?}");
        }
        for bad in ["", "verbose", "5", "inf"] {
            let err = parse_level(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains(LEVELS), "{err}");
        }
    }

    #[test]
    fn enabled_respects_level() {
        let logger = Logger {
            level: LevelFilter::Warn,
            style: Style::Timestamped,
        };
        let meta = |level| Metadata::builder().level(level).build();
        assert!(logger.enabled(&meta(log::Level::Error)));
        assert!(logger.enabled(&meta(log::Level::Warn)));
        assert!(!logger.enabled(&meta(log::Level::Info)));
    }

    #[test]
    fn format_record_table() {
        use std::time::{Duration, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_millis(1_795_010_140_123);
        let j = Style::Journal;
        let t = Style::Timestamped;
        let cases = [
            (j, Level::Error, "push failed", "<3>push failed\n"),
            (j, Level::Warn, "retrying", "<4>retrying\n"),
            (j, Level::Info, "watching", "<6>watching\n"),
            (j, Level::Debug, "event", "<7>event\n"),
            (j, Level::Trace, "raw", "<7>raw\n"),
            // journald splits on newlines: every line carries the priority.
            (
                j,
                Level::Error,
                "invalid:\n  line 3\n  line 4",
                "<3>invalid:\n<3>  line 3\n<3>  line 4\n",
            ),
            (
                j,
                Level::Warn,
                "ends in a newline\n",
                "<4>ends in a newline\n",
            ),
            (j, Level::Info, "", "<6>\n"),
            (j, Level::Info, "a\n\nb", "<6>a\n<6>\n<6>b\n"),
            (
                t,
                Level::Warn,
                "retrying",
                "2026-11-18T13:55:40.123Z WARN retrying\n",
            ),
            (
                t,
                Level::Error,
                "a\nb",
                "2026-11-18T13:55:40.123Z ERROR a\nb\n",
            ),
        ];
        for (style, level, message, want) in cases {
            assert_eq!(
                format_record(style, level, now, message),
                want,
                "{style:?} {level} {message:?}"
            );
        }
    }

    #[test]
    fn journal_style_only_when_the_stream_is_stderr() {
        let cases = [
            (Some("8:12345"), Some((8, 12345)), Style::Journal),
            (Some(" 8:12345\n"), Some((8, 12345)), Style::Journal),
            // Inherited by a process whose stderr went elsewhere.
            (Some("8:12345"), Some((8, 999)), Style::Timestamped),
            (Some("8:12345"), Some((9, 12345)), Style::Timestamped),
            (Some("8:12345"), None, Style::Timestamped),
            (None, Some((8, 12345)), Style::Timestamped),
            (Some(""), Some((0, 0)), Style::Timestamped),
            (Some("8"), Some((8, 0)), Style::Timestamped),
            (Some("8:x"), Some((8, 0)), Style::Timestamped),
            (Some("-1:5"), Some((8, 5)), Style::Timestamped),
        ];
        for (stream, stderr, want) in cases {
            assert_eq!(style_for(stream, stderr), want, "{stream:?} {stderr:?}");
        }
    }
}
