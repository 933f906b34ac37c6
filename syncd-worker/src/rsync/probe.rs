//! What the rsync pair supports, found by asking it: the local binary's version, and a
//! dry run of a `--delete-missing-args` paths run against the real target. The probe
//! lists one name that does not exist in the source and runs with `--dry-run`, so the
//! target is never changed. Runs processes; holds no state.

use std::io;
use std::path::Path;

use anyhow::{bail, Context};

use super::args::{plan, Caps, Invocation};
use super::exit::{classify, Class, Outcome};
use super::password::check_password_file;
use super::run::run;
use crate::batch::Batch;
use crate::config::model::{Mode, SyncJob, Target};
use crate::process::{Drain, Group, How, Input, Output, Spawn};

/// `--delete-missing-args` appeared in rsync 3.1.0.
const DELETE_MISSING_ARGS_SINCE: (u32, u32, u32) = (3, 1, 0);

/// What `rsync --version` printed: its first line, and the version in it if it is an
/// rsync version line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    pub line: String,
    pub version: Option<(u32, u32, u32)>,
}

/// Run `binary --version` (the one place syncd does): `LC_ALL=C`, stdin and stderr
/// `/dev/null`, no deadline (it prints and exits). `Err` when it cannot be run.
pub fn version_line(binary: &Path) -> io::Result<VersionLine> {
    let ended = Spawn::new(binary)
        .arg("--version")
        .env("LC_ALL", "C")
        .stdin(Input::Null)
        // The first line is all that is read; the whole output is about 1 KiB.
        .stdout(Output::Tail(64 * 1024))
        .stderr(Output::Null)
        .group(Group::Inherit)
        .parent_death(None)
        .deadline(None)
        .drain(Drain::ToEnd)
        .run();
    match ended.how {
        How::FailedToStart(e) | How::WaitFailed(e) => Err(e),
        How::Exited(_) | How::TimedOut(_) | How::Cancelled(_) => {
            let text = ended.stdout.lossy();
            let line = text.lines().next().unwrap_or("").trim().to_string();
            Ok(VersionLine {
                version: parse_version(&line),
                line,
            })
        }
    }
}

/// The version of the rsync at `binary`, from the first line of `rsync --version`
/// (`rsync  version 3.5.0  protocol version 32`).
pub fn local_version(binary: &Path) -> anyhow::Result<(u32, u32, u32)> {
    let v = version_line(binary).with_context(|| {
        format!(
            "cannot run the rsync binary {binary:?}: install rsync (apt-get install rsync / \
             yum install rsync) or set rsync.binary to its full path"
        )
    })?;
    match v.version {
        Some(v) => Ok(v),
        None => bail!(
            "{binary:?} --version printed {:?}, not an rsync version line; is rsync.binary really rsync?",
            v.line
        ),
    }
}

/// `Ok(Ok(caps))` when the pair works (with or without `--delete-missing-args`);
/// `Ok(Err(outcome))` when the target could not be probed (unreachable, bad password,
/// a daemon with no connection free (`Busy`, never a configuration error): retry
/// later); `Err` when the local rsync cannot be run at all.
pub fn probe(job: &SyncJob, target: &Target) -> anyhow::Result<Result<Caps, Outcome>> {
    if local_version(&job.rsync.binary)? < DELETE_MISSING_ARGS_SINCE {
        return Ok(Ok(Caps {
            delete_missing_args: false,
        }));
    }
    let inv = probe_invocation(job, target);
    let result = run(&inv)?;
    let outcome = classify(result.code, result.signal, &result.stderr);
    Ok(match outcome.class {
        Class::Success => Ok(Caps {
            delete_missing_args: true,
        }),
        Class::DeleteMissingArgsUnsupported => Ok(Caps {
            delete_missing_args: false,
        }),
        Class::Retry | Class::Busy | Class::ConfigError => Err(outcome),
    })
}

/// A `--dry-run` paths run with `--delete-missing-args` listing one missing name (in
/// files mode whatever the job's mode: a tree-mode job would plan a whole-tree run).
/// Check the password file, then probe what the target's rsync supports; every failure
/// is an `Outcome` (a bad password file is a `ConfigError`, anything else a `Retry`).
pub fn probe_target(job: &SyncJob, target: &Target) -> Result<Caps, Outcome> {
    if let Some(pw) = target.kind.password_file() {
        check_password_file(pw).map_err(|message| Outcome {
            class: Class::ConfigError,
            code: None,
            message,
        })?;
    }
    match probe(job, target) {
        Ok(r) => r,
        Err(e) => Err(Outcome {
            class: Class::Retry,
            code: None,
            message: format!("{e:#}"),
        }),
    }
}

fn probe_invocation(job: &SyncJob, target: &Target) -> Invocation {
    let mut files_job = job.clone();
    files_job.mode = Mode::Files;
    let batch = Batch {
        paths: vec![probe_name(&job.source)],
        ..Batch::default()
    };
    let caps = Caps {
        delete_missing_args: true,
    };
    let mut inv = plan(&files_job, target, &batch, caps, &[])
        .pop()
        .expect("a one-path batch plans exactly one run");
    inv.args.insert(0, "--dry-run".into());
    inv
}

/// A name absent from `source`: `.syncd-probe-<pid>`, with a suffix if that exists.
fn probe_name(source: &Path) -> Vec<u8> {
    let pid = std::process::id();
    let mut name = format!(".syncd-probe-{pid}");
    let mut n = 0;
    while source.join(&name).symlink_metadata().is_ok() {
        n += 1;
        name = format!(".syncd-probe-{pid}-{n}");
    }
    name.into_bytes()
}

/// `rsync  version 3.5.0  protocol version 32` -> (3, 5, 0); also `3.2.7-1ubuntu1.4`,
/// `3.1.2pre1`, `3.4.1-dev` style suffixes.
pub fn parse_version(line: &str) -> Option<(u32, u32, u32)> {
    let mut words = line.split_whitespace();
    if words.next() != Some("rsync") || words.next() != Some("version") {
        return None;
    }
    let v = words.next()?;
    let mut parts = v.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;
    use crate::rsync::tests::{job, local};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parse_version_table() {
        let cases = [
            ("rsync  version 3.5.0  protocol version 32", Some((3, 5, 0))),
            ("rsync  version v3.4.3  protocol version 32", None),
            (
                "rsync  version 3.2.7-1ubuntu1.4  protocol version 31",
                Some((3, 2, 7)),
            ),
            (
                "rsync  version 3.1.2pre1  protocol version 31",
                Some((3, 1, 2)),
            ),
            ("rsync  version 3.0  protocol version 30", Some((3, 0, 0))),
            ("openrsync: protocol version 29", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_version(line), want, "{line:?}");
        }
    }

    #[test]
    fn probe_invocation_is_a_dry_paths_run_even_in_tree_mode() {
        for mode in [Mode::Files, Mode::Tree] {
            let mut j = job("/nonexistent-source", vec![local("/b")]);
            j.mode = mode;
            let inv = probe_invocation(&j, &local("/b"));
            let args: Vec<String> = inv
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(args[0], "--dry-run", "{mode:?}");
            assert!(
                args.contains(&"--delete-missing-args".to_string()),
                "{mode:?}"
            );
            assert!(!args.contains(&"-r".to_string()), "{mode:?}");
            let want = format!(".syncd-probe-{}\0", std::process::id());
            assert_eq!(inv.stdin, want.as_bytes(), "{mode:?}");
        }
    }

    #[test]
    fn local_version_of_the_installed_rsync() {
        let v =
            local_version(Path::new("rsync")).expect("rsync is installed (the project needs it)");
        assert!(v >= (3, 1, 0), "{v:?}");
    }

    #[test]
    fn version_line_reads_the_first_line_once() {
        let bin = tempfile::tempdir().expect("tempdir");
        let fake = fake_rsync_343(bin.path());
        assert_eq!(
            version_line(&fake).expect("fake runs"),
            VersionLine {
                line: "rsync  version 3.4.3  protocol version 32".into(),
                version: Some((3, 4, 3)),
            }
        );
        // Not rsync: GNU `true --version` names itself.
        let other = version_line(Path::new("/bin/true")).expect("true runs");
        assert!(other.line.starts_with("true"), "{other:?}");
        assert_eq!(other.version, None);
        let missing = version_line(Path::new("/nonexistent/rsync")).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn local_version_of_a_missing_binary_says_install_rsync() {
        let err = local_version(Path::new("/nonexistent/rsync")).expect_err("missing");
        let err = format!("{err:#}");
        assert!(
            err.contains("/nonexistent/rsync") && err.contains("install rsync"),
            "{err}"
        );
    }

    #[test]
    fn probe_of_a_local_target_finds_delete_missing_args_and_changes_nothing() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("f"), b"x").expect("write");
        // A file on the target with the probe's own name: a real (non-dry) run would
        // delete it, the probe must not.
        let name = String::from_utf8(probe_name(src.path())).expect("ascii");
        fs::write(dst.path().join(&name), b"keep").expect("write");
        let t = local(dst.path().to_str().expect("utf-8 tempdir"));
        let j = job(src.path().to_str().expect("utf-8 tempdir"), vec![t.clone()]);
        let caps = probe(&j, &t)
            .expect("rsync runs")
            .expect("local target works");
        assert_eq!(
            caps,
            Caps {
                delete_missing_args: true
            }
        );
        let left: Vec<_> = fs::read_dir(dst.path())
            .expect("read dst")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(&name)]);
    }

    /// Stand-in for rsync 3.4.3, which we cannot install here: it reports that version
    /// and fails every transfer the way 3.4.3 fails `--delete-missing-args` with
    /// `--files-from` (RsyncProject/rsync#910).
    fn fake_rsync_343(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("rsync-3.4.3-standin");
        let script = r#"#!/bin/sh
if [ "$1" = "--version" ]; then
  echo "rsync  version 3.4.3  protocol version 32"
  exit 0
fi
cat >/dev/null
echo 'rsync: [receiver] invalid file mode 00 for ".syncd-probe" (protocol incompatibility)' >&2
echo 'rsync error: protocol incompatibility (code 2) at flist.c(1045) [receiver=3.4.3]' >&2
exit 2
"#;
        fs::write(&p, script).expect("write fake rsync");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod fake rsync");
        p
    }

    #[test]
    fn probe_against_a_343_stand_in_falls_back_to_the_filter_form() {
        let bin = tempfile::tempdir().expect("tempdir");
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let t = local(dst.path().to_str().expect("utf-8"));
        let mut j = job(src.path().to_str().expect("utf-8"), vec![t.clone()]);
        j.rsync.binary = fake_rsync_343(bin.path());
        assert_eq!(
            local_version(&j.rsync.binary).expect("fake runs"),
            (3, 4, 3)
        );
        let caps = probe(&j, &t)
            .expect("fake runs")
            .expect("classified as a capability");
        assert_eq!(
            caps,
            Caps {
                delete_missing_args: false
            }
        );
    }

    #[test]
    fn probe_with_a_local_rsync_older_than_3_1_0_does_not_run_a_transfer() {
        // Stand-in for rsync 3.0.9: it has no --delete-missing-args; a transfer attempt
        // would exit 99 and the probe would report an outcome instead of caps.
        let bin = tempfile::tempdir().expect("tempdir");
        let p = bin.path().join("rsync-3.0.9-standin");
        let script = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'rsync  version 3.0.9  protocol version 30'; exit 0; }\nexit 99\n";
        fs::write(&p, script).expect("write fake rsync");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod fake rsync");
        let t = local("/nonexistent-target");
        let mut j = job("/nonexistent-source", vec![t.clone()]);
        j.rsync.binary = p;
        let caps = probe(&j, &t)
            .expect("fake runs")
            .expect("caps, not an outcome");
        assert!(!caps.delete_missing_args);
    }

    #[test]
    fn probe_of_an_unreachable_target_is_an_outcome_to_retry() {
        let src = tempfile::tempdir().expect("tempdir");
        // Port 1 on 127.0.0.1: nothing listens there, so the connect is refused.
        let t = Target {
            name: "down".into(),
            kind: TargetKind::Daemon {
                user: None,
                host: "127.0.0.1".into(),
                module: "mod".into(),
                port: Some(1),
                password_file: None,
            },
        };
        let j = job(src.path().to_str().expect("utf-8"), vec![t.clone()]);
        let outcome = probe(&j, &t)
            .expect("rsync runs")
            .expect_err("target is down");
        assert_eq!(outcome.class, Class::Retry, "{}", outcome.message);
        assert_eq!(outcome.code, Some(10), "{}", outcome.message);
    }
}
