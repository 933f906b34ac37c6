//! The file paths a config names (`pid_file`, `log_file`, `state_dir`, `status_file`),
//! read from a config that does not load as a whole (a source missing, a bad key, a typo
//! in a target): `syncd stop`, `status`, `reload` must still find the running syncd
//! that an earlier, valid version of the file started. Without this, a config broken
//! after the start made `stop` look for the default pidfile and report a syncd with its
//! own `pid_file` as not running — and the init script's stop failed.
//!
//! Lenient on purpose, and only for finding files: a top-level key that is an absolute
//! path string is taken, anything else is left out (the caller falls back to flags and
//! defaults for it). A file that is not TOML at all (broken syntax, or sersync's XML, which
//! names none of these paths) gives nothing. Pure: parses the text it is given.

use std::path::PathBuf;

/// The paths a config names at its top level; None for each it does not (usably) name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPaths {
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub status_file: Option<PathBuf>,
}

/// The paths in `text`, whatever else is wrong with it; None when it is not TOML.
pub fn paths_only(text: &[u8]) -> Option<ConfigPaths> {
    let text = std::str::from_utf8(text).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let path = |key: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    Some(ConfigPaths {
        pid_file: path("pid_file"),
        log_file: path("log_file"),
        state_dir: path("state_dir"),
        status_file: path("status_file"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_whatever_else_is_wrong() {
        let text = br#"
pid_file = "/srv/run/syncd.pid"
state_dir = "/srv/state"
log_file = "relative/not/taken.log"
status_file = 7
no_such_key = true

[[sync]]
source = "/does/not/exist"
[[sync.target]]
dest = "u:secret@h::m"
"#;
        assert_eq!(
            paths_only(text),
            Some(ConfigPaths {
                pid_file: Some("/srv/run/syncd.pid".into()),
                log_file: None,
                state_dir: Some("/srv/state".into()),
                status_file: None,
            })
        );
    }

    #[test]
    fn what_is_not_toml_gives_nothing() {
        for text in [
            &b"pid_file = \"/a\"\n[[sync\n"[..],
            b"<?xml version=\"1.0\"?><head/>",
            b"\xff\xfe",
        ] {
            assert_eq!(paths_only(text), None, "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(paths_only(b""), Some(ConfigPaths::default()));
    }
}
