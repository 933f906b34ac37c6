//! `syncd check`: PLACEHOLDER, owned by the sysctl/check helper.

use std::process::ExitCode;

use syncd_worker::config::Config;

use crate::settings::Settings;

/// Check everything and print what to fix. Exit 0 when all is well, 1 otherwise.
pub fn run(_settings: &Settings, _config: &Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("syncd check is not implemented yet")
}
