//! Loading and validating configuration: syncd's own TOML (`native`) or sersync 2.5's
//! `confxml.xml` as it is (`sersync`), both checked the same way (`spec`) into the
//! validated [`Config`] of `model`. Every problem is reported with `FILE:LINE:COL` and
//! what to do, all of them at once where practical. Reads the config file and looks at
//! the source directories; never writes anything, never starts anything.

mod dest;
mod diag;
mod glob;
pub mod model;
mod native;
mod params;
mod paths_only;
mod run_as;
mod sersync;
mod spec;
mod watcher;

use std::path::Path;

pub use dest::{parse_dest, quote_shell_word, ConnectTimeouts, Location};
pub use diag::{ConfigError, Pos, Problem};
pub use model::*;
pub use paths_only::{paths_only, ConfigPaths};
pub use spec::DEFAULT_STATE_DIR;
pub use watcher::WatcherChoice;

use diag::Diags;

/// Read the file at `path` (given with `--config`), detect its format, parse and
/// validate it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_hint(
        path,
        vec!["check the path given with --config, and that syncd may read it".to_string()],
    )
}

/// [`load`], with `unreadable` as what to do when the file cannot be read (e.g. for a
/// default path nobody gave).
pub fn load_with_hint(path: &Path, unreadable: Vec<String>) -> Result<Config, ConfigError> {
    let text = std::fs::read(path).map_err(|e| {
        ConfigError::whole_file(
            path,
            format!("cannot read the config file: {e}"),
            unreadable,
        )
    })?;
    parse(&text, path)
}

/// Parse and validate `text`. `path` is used in messages and for format detection: a
/// `.xml` name, or content starting with `<`, is sersync's confxml.xml; anything else is
/// syncd's TOML.
pub fn parse(text: &[u8], path: &Path) -> Result<Config, ConfigError> {
    let mut d = Diags::default();
    let spec = if is_sersync(text, path) {
        sersync::read(&sersync::decode(text), &mut d)
    } else {
        match std::str::from_utf8(text) {
            Ok(text) => native::read(text, &mut d),
            Err(e) => {
                let valid = String::from_utf8_lossy(&text[..e.valid_up_to()]);
                d.error_with(
                    Pos::of_offset(&valid, valid.len()),
                    "this byte is not UTF-8; a TOML file must be UTF-8",
                    &["re-save the file as UTF-8"],
                );
                None
            }
        }
    };
    let config = spec.map(|s| spec::build(s, path, &mut d));
    let warnings = d.finish(path)?;
    match config {
        Some(mut config) => {
            config.warnings = warnings;
            Ok(config)
        }
        // A reader gives None only after recording why.
        None => Err(ConfigError::whole_file(
            path,
            "nothing could be read from the file".to_string(),
            Vec::new(),
        )),
    }
}

fn is_sersync(text: &[u8], path: &Path) -> bool {
    let by_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    by_name || text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
