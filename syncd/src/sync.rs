//! `syncd sync [--full]`: PLACEHOLDER, owned by the progress helper.

use std::process::ExitCode;

use syncd_worker::config::Config;

use crate::settings::Settings;

/// Push now in the foreground with progress; through the daemon when it runs.
pub fn run(_settings: &Settings, _config: &Config, _full: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("syncd sync is not implemented yet")
}
