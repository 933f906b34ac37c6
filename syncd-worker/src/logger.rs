//! The worker's logger: one line per record on stderr,
//! `2026-11-24T13:55:40.123Z LEVEL message` (UTC). The controller or the init system
//! decides where stderr goes. Keeps no state beyond the level; never buffers, so a line
//! is out before a crash. Each line is written with a single `write_all` on unbuffered
//! stderr, so lines from different threads do not interleave.

use std::io::Write;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

const LEVELS: &str = "off, error, warn, info, debug, trace";

struct Logger {
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {} {}\n",
            humantime::format_rfc3339_millis(SystemTime::now()),
            record.level(),
            record.args()
        );
        // Nowhere to report a failed write to stderr: drop the line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Install the logger for the whole process, showing records at `level` and above.
pub fn init(level: LevelFilter) -> anyhow::Result<()> {
    log::set_boxed_logger(Box::new(Logger { level }))
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
        };
        let meta = |level| Metadata::builder().level(level).build();
        assert!(logger.enabled(&meta(log::Level::Error)));
        assert!(logger.enabled(&meta(log::Level::Warn)));
        assert!(!logger.enabled(&meta(log::Level::Info)));
    }
}
