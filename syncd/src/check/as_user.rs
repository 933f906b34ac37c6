//! `syncd check` with `user` set: what that account can and cannot reach, found by asking
//! the kernel as that account. The check (root) starts `syncd probe-access` (hidden) as
//! the user — groups, gid, uid and no capabilities, as the worker gets them — hands it a
//! [`Request`] as JSON on stdin and reads an [`Answer`] on stdout: each source walked
//! (symlinks not followed, excludes left out), the first [`LIMIT`] paths it cannot read
//! and how many there are, and `access(2)` on the files and directories the worker needs.
//!
//! Must not: open a file for reading (`access` only, so no atime changes), follow a
//! symlink, or change anything.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nix::unistd::{access, AccessFlags};
use serde::{Deserialize, Serialize};
use syncd_worker::config::{Config, RunAs, TargetKind};
use syncd_worker::exclude::ExcludeSet;
use syncd_worker::process::{Credentials, Input, Output, Spawn};

use super::{Finding, Status};
use crate::settings::Settings;

/// How many unreadable paths of one source are named.
pub const LIMIT: usize = 10;
/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "probe-access";
/// A walk of a very large tree takes long; past this the check says so and goes on.
const WALK_LIMIT: Duration = Duration::from_secs(600);

/// What the child is asked. Paths as bytes (they need not be UTF-8).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub limit: usize,
    pub trees: Vec<TreeRequest>,
    /// Path and `access(2)` mode bits (R_OK 4, W_OK 2, X_OK 1).
    pub access: Vec<(Vec<u8>, i32)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TreeRequest {
    pub root: Vec<u8>,
    pub exclude: Vec<String>,
}

/// What the child found, in the order asked.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub trees: Vec<TreeAnswer>,
    /// None: allowed; else the error.
    pub access: Vec<Option<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TreeAnswer {
    /// The first `limit` unreadable paths (relative to the root) and why.
    pub unreadable: Vec<(Vec<u8>, String)>,
    pub count: u64,
    /// Entries looked at.
    pub walked: u64,
}

/// The child: read a [`Request`] on stdin, answer on stdout.
pub fn serve() -> anyhow::Result<ExitCode> {
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .context("read the request")?;
    let req: Request = serde_json::from_slice(&text).context("parse the request")?;
    let answer = Answer {
        trees: req.trees.iter().map(|t| walk(t, req.limit)).collect(),
        access: req
            .access
            .iter()
            .map(|(p, mode)| {
                access(OsStr::from_bytes(p), AccessFlags::from_bits_truncate(*mode))
                    .err()
                    .map(|e| e.desc().to_string())
            })
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Walk one tree as the current user: a directory must be listable and enterable, a
/// regular file readable; symlinks and special files are not looked into.
fn walk(tree: &TreeRequest, limit: usize) -> TreeAnswer {
    let exclude = ExcludeSet::new(&tree.exclude).unwrap_or_default();
    let root = PathBuf::from(OsStr::from_bytes(&tree.root));
    let mut a = TreeAnswer::default();
    let note = |a: &mut TreeAnswer, rel: &[u8], why: String| {
        a.count += 1;
        if a.unreadable.len() < limit {
            a.unreadable.push((rel.to_vec(), why));
        }
    };
    if let Err(e) = access(&root, AccessFlags::R_OK | AccessFlags::X_OK) {
        note(
            &mut a,
            b".",
            format!("cannot list or enter it: {}", e.desc()),
        );
        return a;
    }
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(OsStr::from_bytes(&rel));
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                note(&mut a, &rel, format!("cannot list it: {e}"));
                continue;
            }
        };
        for entry in entries.flatten() {
            a.walked += 1;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(entry.file_name().as_bytes());
            if exclude.is_excluded(&child) {
                continue;
            }
            let Ok(ft) = entry.file_type() else {
                note(&mut a, &child, "cannot see what it is".to_string());
                continue;
            };
            let path = entry.path();
            if ft.is_dir() {
                match access(&path, AccessFlags::R_OK | AccessFlags::X_OK) {
                    Ok(()) => stack.push(child),
                    Err(e) => note(
                        &mut a,
                        &child,
                        format!("cannot list or enter it: {}", e.desc()),
                    ),
                }
            } else if ft.is_file() {
                if let Err(e) = access(&path, AccessFlags::R_OK) {
                    note(&mut a, &child, format!("cannot read it: {}", e.desc()));
                }
            }
        }
    }
    a
}

/// The findings about `user` for `syncd check`.
pub fn findings(settings: &Settings, config: &Config, run_as: &RunAs) -> Vec<Finding> {
    let subject = format!("user {}", run_as.user);
    let who = format!(
        "uid {}, group {} (gid {})",
        run_as.uid, run_as.group, run_as.gid
    );
    if !nix::unistd::geteuid().is_root() {
        return vec![Finding::new(
            Status::Warning,
            subject,
            format!("the worker is to run as {who}, but this check is not root: it cannot look as that user"),
        )
        .fix("run `syncd check` as root (syncd itself must run as root to start the worker as another user)")];
    }
    let creds = match Credentials::of(&run_as.user, run_as.uid, run_as.gid) {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::new(
                Status::Problem,
                subject,
                format!("cannot look up its groups: {e}"),
            )
            .fix("check /etc/group and /etc/nsswitch.conf")]
        }
    };
    let mut out = vec![Finding::ok(
        &subject,
        format!("the worker, rsync, ssh and hooks will run as {who}, with no capabilities"),
    )];
    let (req, asks) = request(settings, config);
    let answer = match ask(&creds, &req) {
        Ok(a) => a,
        Err(e) => {
            out.push(
                Finding::new(
                    Status::Warning,
                    subject,
                    format!("could not look as that user: {e:#}"),
                )
                .fix("run `syncd probe-access` by hand to see why"),
            );
            return out;
        }
    };
    for (job, tree) in config.syncs.iter().zip(&answer.trees) {
        out.push(tree_finding(&run_as.user, &job.source, tree));
    }
    for (ask, err) in asks.iter().zip(&answer.access) {
        out.push(ask.finding(&run_as.user, err.as_deref()));
    }
    out
}

/// One `access(2)` question and what its answer means.
struct Ask {
    path: PathBuf,
    what: &'static str,
    kind: AskKind,
}

enum AskKind {
    /// The worker reads it (the config): without it, it does not start.
    MustRead,
    /// A password file: without it, the worker gets a private copy.
    Password,
    /// A directory whose files the worker writes (the status file's).
    MustWrite,
    /// The state directory's parent: syncd gives the directory to the user, who must
    /// still get to it.
    MustReach,
    /// The state directory: the user's already, or given to it at the next start.
    StateDir,
}

impl Ask {
    fn mode(&self) -> AccessFlags {
        match self.kind {
            AskKind::MustRead | AskKind::Password => AccessFlags::R_OK,
            AskKind::MustWrite | AskKind::StateDir => AccessFlags::W_OK | AccessFlags::X_OK,
            AskKind::MustReach => AccessFlags::X_OK,
        }
    }

    fn finding(&self, user: &str, err: Option<&str>) -> Finding {
        let subject = format!("{} {}", self.what, self.path.display());
        let Some(err) = err else {
            let can = match self.kind {
                AskKind::MustRead | AskKind::Password => "readable",
                AskKind::MustWrite | AskKind::StateDir => "writable",
                AskKind::MustReach => "reachable",
            };
            return Finding::ok(subject, format!("{can} by user {user}"));
        };
        let shown = self.path.display();
        match self.kind {
            AskKind::MustRead => Finding::new(
                Status::Problem,
                subject,
                format!("user {user} cannot read it ({err}): the worker reads its config itself"),
            )
            .fix(format!("chmod 644 {shown} (it holds no secret: passwords are in password_file), and let {user} search its directory")),
            AskKind::Password => Finding::new(
                Status::Warning,
                subject,
                format!("user {user} cannot read it ({err}): at each start and reload syncd gives the worker a private copy in <state_dir>/secrets"),
            )
            .fix("nothing to do if it stays root's with mode 600; the copy is removed at stop"),
            AskKind::MustWrite => Finding::new(
                Status::Problem,
                subject,
                format!("user {user} cannot write there ({err})"),
            )
            .fix(format!("chown {user} {shown}, or leave status_file to its default in state_dir")),
            AskKind::StateDir => Finding::ok(
                subject,
                format!("not writable by user {user} yet ({err}): syncd start creates it if needed and gives it, with what is in it, to {user}"),
            ),
            AskKind::MustReach => Finding::new(
                Status::Problem,
                subject,
                format!("user {user} cannot get through it to the state directory ({err})"),
            )
            .fix(format!("chmod o+x {shown}, or choose a state_dir the user can reach")),
        }
    }
}

fn request(settings: &Settings, config: &Config) -> (Request, Vec<Ask>) {
    let mut asks = vec![Ask {
        path: settings.config.clone(),
        what: "config",
        kind: AskKind::MustRead,
    }];
    if let Some(parent) = settings.state_dir.parent() {
        asks.push(Ask {
            path: parent.to_path_buf(),
            what: "state directory's parent",
            kind: AskKind::MustReach,
        });
    }
    asks.push(Ask {
        path: settings.state_dir.clone(),
        what: "state directory",
        kind: AskKind::StateDir,
    });
    if settings.status_file.parent() != Some(settings.state_dir.as_path()) {
        if let Some(dir) = settings.status_file.parent() {
            asks.push(Ask {
                path: dir.to_path_buf(),
                what: "status file directory",
                kind: AskKind::MustWrite,
            });
        }
    }
    let mut seen: Vec<&Path> = Vec::new();
    for t in config.syncs.iter().flat_map(|j| &j.targets) {
        if let TargetKind::Daemon {
            password_file: Some(p),
            ..
        } = &t.kind
        {
            if !seen.contains(&p.as_path()) {
                seen.push(p);
                asks.push(Ask {
                    path: p.clone(),
                    what: "password file",
                    kind: AskKind::Password,
                });
            }
        }
    }
    let req = Request {
        limit: LIMIT,
        trees: config
            .syncs
            .iter()
            .map(|j| TreeRequest {
                root: j.source.as_os_str().as_bytes().to_vec(),
                exclude: j.exclude.patterns().map(str::to_string).collect(),
            })
            .collect(),
        access: asks
            .iter()
            .map(|a| (a.path.as_os_str().as_bytes().to_vec(), a.mode().bits()))
            .collect(),
    };
    (req, asks)
}

/// Run `syncd probe-access` as the user and read its answer.
fn ask(creds: &Credentials, req: &Request) -> anyhow::Result<Answer> {
    let exe = std::env::current_exe().context("cannot find syncd's own executable")?;
    let ended = Spawn::new(&exe)
        .arg(SUBCOMMAND)
        .current_dir("/")
        .stdin(Input::Bytes(serde_json::to_vec(req)?))
        .stdout(Output::Tail(4 << 20))
        .stderr(Output::Tail(8 << 10))
        .deadline(Some(WALK_LIMIT))
        .as_user(Some(creds.clone()))
        .run();
    if let syncd_worker::process::How::FailedToStart(e) = &ended.how {
        anyhow::bail!(
            "cannot start {} {SUBCOMMAND} as the user: {e} (it takes root with CAP_SETUID, CAP_SETGID and CAP_SETPCAP)",
            exe.display()
        );
    }
    if ended.code() != Some(0) {
        anyhow::bail!(
            "{} {SUBCOMMAND} as the user: {:?} {}",
            exe.display(),
            ended.how,
            ended.stderr.lossy().trim()
        );
    }
    serde_json::from_slice(&ended.stdout.bytes).context("cannot read its answer")
}

/// One source as the user sees it.
fn tree_finding(user: &str, source: &Path, tree: &TreeAnswer) -> Finding {
    let subject = format!("source {}", source.display());
    if tree.count == 0 {
        return Finding::ok(
            subject,
            format!(
                "user {user} can read all {} entries (excludes left out)",
                tree.walked
            ),
        );
    }
    let first: Vec<String> = tree
        .unreadable
        .iter()
        .map(|(p, why)| format!("{} ({why})", String::from_utf8_lossy(p)))
        .collect();
    let more = if tree.count > tree.unreadable.len() as u64 {
        format!(", first {}", tree.unreadable.len())
    } else {
        String::new()
    };
    Finding::new(
        Status::Warning,
        subject,
        format!(
            "user {user} cannot read {} of {} entries{more}: {}; rsync reports them as failing paths and retries them",
            tree.count,
            tree.walked.max(tree.count),
            first.join(", ")
        ),
    )
    .fix(format!(
        "give {user} read access (setfacl -R -m u:{user}:rX,d:u:{user}:rX {}), exclude them, or run the worker as root (remove `user`)",
        source.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_finding_names_the_first_paths_and_the_count() {
        let tree = TreeAnswer {
            unreadable: vec![(
                b"a/secret".to_vec(),
                "cannot read it: Permission denied".into(),
            )],
            count: 3,
            walked: 100,
        };
        let f = tree_finding("syncd", Path::new("/data"), &tree);
        assert_eq!(f.status, Status::Warning);
        assert!(
            f.message.contains("cannot read 3 of 100 entries, first 1: a/secret (cannot read it: Permission denied)"),
            "{}",
            f.message
        );
        assert!(f
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("setfacl -R -m u:syncd:rX")));
        let clean = tree_finding(
            "syncd",
            Path::new("/data"),
            &TreeAnswer {
                walked: 5,
                ..TreeAnswer::default()
            },
        );
        assert_eq!(clean.status, Status::Ok);
    }

    #[test]
    fn each_question_says_what_its_answer_means() {
        let ask = |kind| Ask {
            path: "/p".into(),
            what: "thing",
            kind,
        };
        // (kind, allowed?, status, text in the message or fix)
        let cases = [
            (AskKind::MustRead, true, Status::Ok, "readable by user u"),
            (AskKind::MustRead, false, Status::Problem, "chmod 644 /p"),
            (AskKind::Password, false, Status::Warning, "private copy"),
            (AskKind::MustWrite, false, Status::Problem, "chown u /p"),
            (AskKind::MustReach, false, Status::Problem, "chmod o+x /p"),
            (AskKind::StateDir, true, Status::Ok, "writable by user u"),
            (
                AskKind::StateDir,
                false,
                Status::Ok,
                "gives it, with what is in it, to u",
            ),
        ];
        for (kind, allowed, status, text) in cases {
            let f = ask(kind).finding("u", (!allowed).then_some("Permission denied"));
            let all = format!("{} {}", f.message, f.fix.clone().unwrap_or_default());
            assert!(f.status == status && all.contains(text), "{f:?}");
            assert_eq!(
                f.fix.is_some(),
                status == Status::Problem || status == Status::Warning,
                "{f:?}"
            );
        }
    }
}
