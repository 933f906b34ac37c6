//! `bench-burst-ideal`: the best any rsync-driven watcher could do on `bench/run`'s burst
//! row (a) on this machine: a bound to read syncd's figure against, not a tool. Not a test.
//!
//! ```text
//! bench-burst-ideal --corpus DIR --src SRC --into NAME --dest USER@127.0.0.1::MODULE
//!                   --port PORT --password-file FILE [--parallel N]
//! ```
//!
//! It runs the workload itself (`cp -a CORPUS/. SRC/NAME/`, as the row does) and pushes
//! beside it with knowledge no watcher has:
//! * it knows every file's final size (the corpus's) and the order `cp -a` writes them in
//!   (the source directory's entries by inode number: gnulib's `savedir`), so it needs no
//!   events, no queue and no batching window: a file is pushed as soon as it has its full
//!   size and a push slot is free;
//! * up to `--parallel` rsync runs at once (`-a --sockopts=TCP_NODELAY --from0
//!   --files-from=-`, the options of syncd's paths push), each carrying every finished
//!   file not yet pushed;
//! * it never pushes the directory's own attributes or the files' times set after the
//!   data (the bench's `diff -r` compares contents only).
//!
//! So its time is a lower bound for syncd's on the same machine: measured, not assumed.
//! It polls every 2 ms (one `stat` per finished file, plus one for the next unfinished).
//! Exits 0 once the copy ended and every push ended, 2 on a usage or I/O error or a failed
//! `cp` or rsync run. The corpus must be flat (files only).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: bench-burst-ideal --corpus DIR --src SRC --into NAME \
                     --dest USER@HOST::MODULE --port PORT --password-file FILE [--parallel N]";

/// How long to sleep between two looks at the copy and the pushes.
const POLL: Duration = Duration::from_millis(2);

struct Args {
    corpus: PathBuf,
    src: PathBuf,
    into: String,
    dest: String,
    port: u16,
    password_file: PathBuf,
    parallel: usize,
}

/// One file of the corpus: its name and its final size.
struct File {
    name: OsString,
    size: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-burst-ideal: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args(std::env::args().skip(1))?;
    let files = corpus_in_copy_order(&args.corpus)?;
    let into = args.src.join(&args.into);
    let mut cp = Command::new("cp")
        .arg("-a")
        .arg(args.corpus.join("."))
        .arg(&into)
        .spawn()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    let mut copied = false;
    let mut next = 0;
    let mut flying: Vec<Child> = Vec::new();
    loop {
        if !copied {
            if let Some(status) = cp.try_wait().map_err(|e| format!("cp: {e}"))? {
                if !status.success() {
                    return Err(format!("cp -a failed: {status}"));
                }
                copied = true;
            }
        }
        reap(&mut flying)?;
        if flying.len() < args.parallel {
            let from = next;
            while next < files.len() && finished(&into, &files[next]) {
                next += 1;
            }
            if copied && next < files.len() {
                let name = files[next].name.to_string_lossy();
                return Err(format!(
                    "cp ended but {name} is not the corpus's size (a nested corpus?)"
                ));
            }
            if next > from {
                flying.push(push(&args, &files[from..next])?);
            }
        }
        if copied && next == files.len() && flying.is_empty() {
            return Ok(());
        }
        thread::sleep(POLL);
    }
}

/// The corpus's files in the order `cp -a` copies them: by inode number.
fn corpus_in_copy_order(corpus: &Path) -> Result<Vec<File>, String> {
    let entries = fs::read_dir(corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", corpus.display()))?;
        let meta = entry
            .metadata()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if !meta.is_file() {
            return Err(format!(
                "{}: not a regular file (the corpus must be flat)",
                entry.path().display()
            ));
        }
        files.push((meta.ino(), entry.file_name(), meta.len()));
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|(_, name, size)| File { name, size })
        .collect())
}

fn finished(into: &Path, file: &File) -> bool {
    fs::metadata(into.join(&file.name)).is_ok_and(|m| m.len() == file.size)
}

/// Start one rsync run carrying `files` (paths relative to SRC, NUL-separated on stdin).
fn push(args: &Args, files: &[File]) -> Result<Child, String> {
    let mut child = Command::new("rsync")
        .args(["-a", "--sockopts=TCP_NODELAY", "--from0", "--files-from=-"])
        .arg(format!("--port={}", args.port))
        .arg(format!("--password-file={}", args.password_file.display()))
        .arg(format!("{}/", args.src.display()))
        .arg(&args.dest)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run rsync: {e}"))?;
    let mut list = Vec::new();
    for f in files {
        list.extend_from_slice(args.into.as_bytes());
        list.push(b'/');
        list.extend_from_slice(f.name.as_encoded_bytes());
        list.push(0);
    }
    let mut stdin = child.stdin.take().ok_or("rsync has no stdin")?;
    stdin
        .write_all(&list)
        .map_err(|e| format!("writing rsync's file list: {e}"))?;
    Ok(child)
}

/// Drop the runs that ended (`try_wait` reaped them); a failed one is an error.
fn reap(flying: &mut Vec<Child>) -> Result<(), String> {
    let mut failed = None;
    flying.retain_mut(|run| match run.try_wait() {
        Ok(None) => true,
        Ok(Some(status)) => {
            if !status.success() {
                failed = Some(format!("an rsync run failed: {status}"));
            }
            false
        }
        Err(e) => {
            failed = Some(format!("rsync: {e}"));
            true
        }
    });
    failed.map_or(Ok(()), Err)
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut corpus, mut src, mut into, mut dest, mut port, mut pwfile) =
        (None, None, None, None, None, None);
    let mut parallel = 2;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--corpus" => corpus = Some(PathBuf::from(value()?)),
            "--src" => src = Some(PathBuf::from(value()?)),
            "--into" => into = Some(value()?),
            "--dest" => dest = Some(value()?),
            "--port" => {
                let v = value()?;
                port = Some(v.parse().map_err(|_| format!("--port {v}: not a port"))?);
            }
            "--password-file" => pwfile = Some(PathBuf::from(value()?)),
            "--parallel" => {
                let v = value()?;
                parallel = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--parallel {v}: not a positive number"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let need = |name: &str| format!("{name} is required\n{USAGE}");
    Ok(Args {
        corpus: corpus.ok_or_else(|| need("--corpus"))?,
        src: src.ok_or_else(|| need("--src"))?,
        into: into.ok_or_else(|| need("--into"))?,
        dest: dest.ok_or_else(|| need("--dest"))?,
        port: port.ok_or_else(|| need("--port"))?,
        password_file: pwfile.ok_or_else(|| need("--password-file"))?,
        parallel,
    })
}
