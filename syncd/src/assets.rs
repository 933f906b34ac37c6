//! Man pages and shell completions generated from the clap definitions in [`crate::cli`],
//! for the packages: `packaging/build` runs the hidden `syncd gen-assets DIR`. Owns only
//! writing those files into the directory it is given; where they are installed and
//! whether they are compressed is the packaging's business.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Command, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::conf_man;

/// Write `syncd.1`, one `syncd-<command>.1` per visible subcommand, `syncd.toml.5` (the
/// configuration reference, from `init/syncd.toml`: [`crate::conf_man`]), and the bash,
/// zsh and fish completions (`syncd.bash`, `_syncd`, `syncd.fish`) into `dir`, creating
/// it if missing. Returns the files written, sorted.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}: check the path and its permissions",
            dir.display()
        )
    })?;
    let cmd = Cli::command();
    let mut written: Vec<PathBuf> = Vec::new();
    // The pages clap_mangen writes: the top one and one per subcommand it does not hide.
    written.push(dir.join("syncd.1"));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(dir.join(format!("syncd-{}.1", sub.get_name())));
    }
    clap_mangen::generate_to(cmd.clone(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let conf_page = dir.join("syncd.toml.5");
    let version = cmd.get_version().unwrap_or("unknown");
    std::fs::write(&conf_page, conf_man::render(conf_man::TEMPLATE, version))
        .with_context(|| format!("cannot write {}", conf_page.display()))?;
    written.push(conf_page);
    // clap_complete offers hidden commands and options too: complete only what the
    // help shows.
    let visible = visible_only(&cmd);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = visible.clone();
        let path =
            clap_complete::generate_to(shell, &mut cmd, "syncd", dir).with_context(|| {
                format!("cannot write the {shell} completion into {}", dir.display())
            })?;
        written.push(path);
    }
    for path in &written {
        anyhow::ensure!(
            path.is_file(),
            "{} was not written: the man page generator's file names changed",
            path.display()
        );
    }
    written.sort();
    Ok(written)
}

/// `cmd` without its hidden subcommands and hidden options (at every level): what the
/// completions may offer. Keeps what completion uses: names, help, versions, arguments.
fn visible_only(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_owned());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_owned());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out.args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible_only),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_page_and_completion_and_nothing_for_hidden_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("dist");
        let written = generate(&out).expect("generate");
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .expect("read dist")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let expected = [
            "_syncd",
            "syncd-check.1",
            "syncd-reload.1",
            "syncd-reopen-logs.1",
            "syncd-restart.1",
            "syncd-run.1",
            "syncd-start.1",
            "syncd-status.1",
            "syncd-stop.1",
            "syncd-sync.1",
            "syncd-verify.1",
            "syncd.1",
            "syncd.bash",
            "syncd.fish",
            "syncd.toml.5",
        ];
        assert_eq!(names, expected);
        assert_eq!(written.len(), expected.len());

        let top = std::fs::read_to_string(out.join("syncd.1")).expect("syncd.1");
        assert!(
            top.starts_with(".ie"),
            "not roff: {}",
            &top[..top.len().min(80)]
        );
        assert!(
            top.contains("syncd\\-start(1)"),
            "no SEE ALSO/subcommand reference:\n{top}"
        );
        assert!(
            !top.contains("gen\\-assets"),
            "hidden command leaked into the page"
        );
        let stop = std::fs::read_to_string(out.join("syncd-stop.1")).expect("syncd-stop.1");
        assert!(
            stop.contains("\\-\\-timeout"),
            "stop page lacks --timeout:\n{stop}"
        );
        let bash = std::fs::read_to_string(out.join("syncd.bash")).expect("syncd.bash");
        assert!(
            bash.contains("complete -F _syncd"),
            "bash completion not registered"
        );
        assert!(
            bash.contains(" status "),
            "bash completion lacks the commands"
        );
    }

    /// The text of a page's NAME section: the lines between `.SH NAME` and the next `.SH`.
    fn name_section(page: &str) -> Vec<&str> {
        page.lines()
            .skip_while(|l| *l != ".SH NAME")
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"))
            .collect()
    }

    #[test]
    fn every_page_has_a_one_line_name_summary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = generate(dir.path()).expect("generate");
        let pages: Vec<_> = written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "1" || e == "5"))
            .collect();
        assert!(pages.len() >= 10, "{pages:?}");
        for path in pages {
            let page = std::fs::read_to_string(path).expect("page");
            let name = name_section(&page);
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
            assert_eq!(
                name.len(),
                1,
                "{}: NAME is not one line: {name:?}",
                path.display()
            );
            // `whatis` and `apropos` show it on one terminal line.
            let text = name[0].replace("\\-", "-");
            assert!(
                text.starts_with(&format!("{} - ", stem.replace("\\-", "-"))) && text.len() <= 80,
                "{}: NAME line {text:?} is not 'name - summary' in 80 columns",
                path.display()
            );
        }
    }

    #[test]
    fn completions_offer_every_visible_command_and_nothing_hidden() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(dir.path()).expect("generate");
        let cmd = Cli::command();
        for file in ["syncd.bash", "_syncd", "syncd.fish"] {
            let text = std::fs::read_to_string(dir.path().join(file)).expect(file);
            for hidden in ["gen-assets", "gen_assets", "probe-access", "lock-fd"] {
                assert!(!text.contains(hidden), "{file} offers hidden {hidden}");
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                assert!(
                    text.contains(sub.get_name()),
                    "{file} lacks the {} command",
                    sub.get_name()
                );
            }
            for flag in ["config", "pidfile", "timeout", "json", "full"] {
                assert!(text.contains(flag), "{file} lacks --{flag}");
            }
        }
    }

    #[test]
    fn unwritable_directory_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let err = generate(&file.join("sub")).expect_err("a file in the path");
        assert!(format!("{err:#}").contains("not-a-dir"), "{err:#}");
    }
}
