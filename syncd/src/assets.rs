//! Man pages and shell completions generated from the clap definitions in [`crate::cli`],
//! for the packages: `packaging/build` runs the hidden `syncd gen-assets DIR`. Owns only
//! writing those files into the directory it is given; where they are installed and
//! whether they are compressed is the packaging's business.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Write `syncd.1`, one `syncd-<command>.1` per visible subcommand, and the bash, zsh and
/// fish completions (`syncd.bash`, `_syncd`, `syncd.fish`) into `dir`, creating it if
/// missing. Returns the files written, sorted.
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
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
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
        // clap_complete 4.6 offers hidden subcommands too (gen-assets): accepted.
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
