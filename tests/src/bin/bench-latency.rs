//! `bench-latency`: per-file latency of a sync tool, the probe `bench/run` runs for its
//! latency rows (and for the CPU row, 10,000 files at 1,000/s). Not a test.
//!
//! ```text
//! bench-latency --src SRC/lat --dst DST/lat --rate 1000 --seconds 10 [--size 4096]
//!               [--deadline 60] [--no-wait]
//! ```
//!
//! Method:
//! * Before the first write it places one inotify watch on DST (`IN_MOVED_TO`: rsync
//!   writes a temp file and renames it into place; `IN_CLOSE_WRITE`: tools that write in
//!   place), and checks that DST holds none of the files it is about to write.
//! * The writer (main thread) creates `f0000000`, `f0000001`, ... in SRC on a fixed
//!   schedule, file `i` at `start + i / rate` (absolute, so a late write does not shift
//!   the ones after it), each with one `write` of `--size` bytes, and records the moment
//!   its `close` returned: the write-complete time. How late it ever was against the
//!   schedule is reported (`max_lag_ms`), so a saturated box shows.
//! * The reader thread blocks in `poll` on the inotify descriptor, takes one timestamp as
//!   each read returns (all events of that read arrived by then), and counts a file as
//!   arrived at the first event for its name where the file in DST has the full size (a
//!   tool that copies a file while it is still empty does not count; all files have the
//!   same size, so the full size means the full content). After an inotify queue overflow
//!   it checks every file not yet arrived with one `stat` each.
//! * Latency of a file = arrival - write-complete (0 if the copy was seen before `close`
//!   returned). It stops when every file arrived or `--deadline` seconds after the last
//!   write. Percentiles are nearest-rank over all files; a file that never arrived counts
//!   as infinitely late (its percentile is `null`).
//!
//! Own overhead: the writer sleeps between files and reuses one buffer; the reader sleeps
//! in `poll`, reads up to 64 KiB of events at a time and `stat`s only names it wrote. Both
//! use the monotonic clock.
//!
//! Output: one human line, then one JSON line (`p50_ms`, `p90_ms`, `p99_ms`, `max_ms`,
//! `mean_ms`, `files`, `arrived`, `missing`, `max_lag_ms`, `overflows`, ...). Exit 0 when
//! every file arrived, 1 when some did not by the deadline, 2 on a usage or I/O error.
//! `--no-wait` only writes (no watch, no waiting): the workload for the one-rsync floor.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::json;

const USAGE: &str = "usage: bench-latency --src DIR --dst DIR --rate FILES_PER_S --seconds S \
                     [--size BYTES] [--deadline S] [--no-wait]";

/// Digits of the file number in a name (`f0000042`).
const DIGITS: usize = 7;

struct Args {
    src: PathBuf,
    dst: Option<PathBuf>,
    rate: f64,
    files: usize,
    seconds: f64,
    size: usize,
    deadline: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-latency: {e}");
            ExitCode::from(2)
        }
    }
}

/// True when every file arrived (or with `--no-wait`, when every file was written).
fn run() -> Result<bool, String> {
    let args = parse_args(std::env::args().skip(1))?;
    let watcher = match &args.dst {
        Some(dst) => Some(Watcher::new(dst, args.files, args.size as u64)?),
        None => None,
    };
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds) + args.deadline;
    let reader = watcher.map(|w| thread::spawn(move || w.collect(until)));
    let written = write_files(&args, start)?;
    let Some(reader) = reader else {
        let json = json!({
            "rate": args.rate, "seconds": args.seconds, "files": args.files, "size": args.size,
            "write_s": secs(written.last_write.saturating_duration_since(start)),
            "max_lag_ms": ms(written.max_lag),
        });
        println!(
            "wrote {} files in {:.2} s",
            args.files,
            written
                .last_write
                .saturating_duration_since(start)
                .as_secs_f64()
        );
        println!("{json}");
        return Ok(true);
    };
    let arrivals = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())??;
    let mut latencies: Vec<Option<Duration>> = written
        .done
        .iter()
        .zip(&arrivals.at)
        .map(|(w, a)| a.map(|a| a.saturating_duration_since(*w)))
        .collect();
    sort_latencies(&mut latencies);
    let arrived = latencies.iter().flatten().count();
    let missing = args.files - arrived;
    let mean = if arrived > 0 {
        Some(latencies.iter().flatten().sum::<Duration>() / arrived as u32)
    } else {
        None
    };
    let p = |q: f64| percentile(&latencies, q).map(ms);
    let json = json!({
        "rate": args.rate, "seconds": args.seconds, "files": args.files, "size": args.size,
        "arrived": arrived, "missing": missing,
        "p50_ms": p(50.0), "p90_ms": p(90.0), "p99_ms": p(99.0), "max_ms": p(100.0),
        "mean_ms": mean.map(ms),
        "write_s": secs(written.last_write.saturating_duration_since(start)),
        "max_lag_ms": ms(written.max_lag),
        "overflows": arrivals.overflows,
    });
    let show = |q: f64| match percentile(&latencies, q) {
        Some(d) => format!("{:.1}", ms(d)),
        None => "-".to_string(),
    };
    println!(
        "{}/s for {} s: {arrived} of {} files arrived; latency ms p50 {} p90 {} p99 {} max {}",
        args.rate,
        args.seconds,
        args.files,
        show(50.0),
        show(90.0),
        show(99.0),
        show(100.0)
    );
    println!("{json}");
    Ok(missing == 0)
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut src, mut dst, mut rate, mut seconds) = (None, None, None, None);
    let (mut size, mut deadline, mut no_wait) = (4096usize, 60.0f64, false);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let number = |name: &str, v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or(format!("{name} {v}: give a positive number"))
        };
        match flag.as_str() {
            "--src" => src = Some(PathBuf::from(value("--src")?)),
            "--dst" => dst = Some(PathBuf::from(value("--dst")?)),
            "--rate" => rate = Some(number("--rate", value("--rate")?)?),
            "--seconds" => seconds = Some(number("--seconds", value("--seconds")?)?),
            "--deadline" => deadline = number("--deadline", value("--deadline")?)?,
            "--size" => {
                let v = value("--size")?;
                size = v.parse().ok().filter(|s| *s >= 16).ok_or(format!(
                    "--size {v}: give a whole number of bytes, at least 16"
                ))?;
            }
            "--no-wait" => no_wait = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let src = src.ok_or(format!("--src is required\n{USAGE}"))?;
    let rate = rate.ok_or(format!("--rate is required\n{USAGE}"))?;
    let seconds = seconds.ok_or(format!("--seconds is required\n{USAGE}"))?;
    let dst = match (dst, no_wait) {
        (Some(_), true) => return Err(format!("--dst and --no-wait exclude each other\n{USAGE}")),
        (None, false) => return Err(format!("--dst is required (or --no-wait)\n{USAGE}")),
        (dst, _) => dst,
    };
    let files = (rate * seconds).round() as usize;
    if files == 0 || files >= 10usize.pow(DIGITS as u32) {
        return Err(format!(
            "--rate x --seconds = {files} files: give 1 to {}",
            10usize.pow(DIGITS as u32) - 1
        ));
    }
    Ok(Args {
        src,
        dst,
        rate,
        files,
        seconds,
        size,
        deadline: Duration::from_secs_f64(deadline),
    })
}

fn file_name(i: usize) -> String {
    format!("f{i:0DIGITS$}")
}

/// The file number of a name this probe writes (`f0000042` → 42), else None (rsync's
/// temp names, anything else).
fn file_index(name: &OsStr) -> Option<usize> {
    let digits = name.to_str()?.strip_prefix('f')?;
    if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

struct Written {
    /// When each file's close returned.
    done: Vec<Instant>,
    last_write: Instant,
    /// The latest any write started after its due time.
    max_lag: Duration,
}

fn write_files(args: &Args, start: Instant) -> Result<Written, String> {
    let mut buf = vec![b'.'; args.size];
    if let Some(last) = buf.last_mut() {
        *last = b'\n';
    }
    let mut done = Vec::with_capacity(args.files);
    let mut max_lag = Duration::ZERO;
    for i in 0..args.files {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        let now = Instant::now();
        match due.checked_duration_since(now) {
            Some(wait) => thread::sleep(wait),
            None => max_lag = max_lag.max(now - due),
        }
        let header = format!("file {i}\n");
        buf[..header.len()].copy_from_slice(header.as_bytes());
        let path = args.src.join(file_name(i));
        File::create(&path)
            .and_then(|mut f| f.write_all(&buf))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        done.push(Instant::now());
    }
    Ok(Written {
        last_write: done.last().copied().unwrap_or(start),
        done,
        max_lag,
    })
}

/// The reader's side: an inotify watch on DST and what arrived when.
struct Watcher {
    inotify: Inotify,
    dst: PathBuf,
    size: u64,
    arrivals: Arrivals,
}

struct Arrivals {
    at: Vec<Option<Instant>>,
    overflows: u32,
}

impl Watcher {
    fn new(dst: &Path, files: usize, size: u64) -> Result<Watcher, String> {
        let inotify = Inotify::init().map_err(|e| format!("inotify_init: {e}"))?;
        inotify
            .watches()
            .add(dst, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)
            .map_err(|e| format!("cannot watch {}: {e}", dst.display()))?;
        let entries =
            fs::read_dir(dst).map_err(|e| format!("cannot list {}: {e}", dst.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dst.display()))?;
            if file_index(&entry.file_name()).is_some() {
                return Err(format!(
                    "{} already holds {:?}: start with a target without the probe's files",
                    dst.display(),
                    entry.file_name()
                ));
            }
        }
        Ok(Watcher {
            inotify,
            dst: dst.to_path_buf(),
            size,
            arrivals: Arrivals {
                at: vec![None; files],
                overflows: 0,
            },
        })
    }

    /// Records arrivals until every file arrived or `until`.
    fn collect(mut self, until: Instant) -> Result<Arrivals, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = self.arrivals.at.len();
        while pending > 0 {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let ready = {
                let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, timeout) {
                    Ok(n) => n > 0,
                    Err(nix::errno::Errno::EINTR) => false,
                    Err(e) => return Err(format!("poll on inotify: {e}")),
                }
            };
            if !ready {
                continue;
            }
            let events = match self.inotify.read_events(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("reading inotify events: {e}")),
            };
            let t = Instant::now();
            let mut overflow = false;
            for ev in events {
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    overflow = true;
                } else if ev.mask.contains(EventMask::IGNORED) {
                    return Err(format!("{} was removed or unmounted", self.dst.display()));
                } else if let Some(i) = ev.name.and_then(file_index) {
                    pending -= usize::from(self.arrived(i, t));
                }
            }
            if overflow {
                self.arrivals.overflows += 1;
                for i in 0..self.arrivals.at.len() {
                    pending -= usize::from(self.arrived(i, t));
                }
            }
        }
        Ok(self.arrivals)
    }

    /// Records file `i` as arrived at `t` if it was not yet and has its full size in DST;
    /// true if it was recorded now.
    fn arrived(&mut self, i: usize, t: Instant) -> bool {
        let Some(slot) = self.arrivals.at.get_mut(i) else {
            return false;
        };
        if slot.is_some() {
            return false;
        }
        let full = fs::symlink_metadata(self.dst.join(file_name(i)))
            .is_ok_and(|m| m.is_file() && m.len() == self.size);
        if full {
            *slot = Some(t);
        }
        full
    }
}

/// Sorts ascending, files that never arrived (None) last.
fn sort_latencies(v: &mut [Option<Duration>]) {
    v.sort_by_key(|d| (d.is_none(), *d));
}

/// Nearest-rank percentile `q` (0 < q ≤ 100) of latencies sorted by [`sort_latencies`];
/// None when that rank is a file that never arrived, or there are no files.
fn percentile(sorted: &[Option<Duration>], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[Option<u64>]) -> Vec<Option<Duration>> {
        let mut v: Vec<_> = v.iter().map(|x| x.map(Duration::from_millis)).collect();
        sort_latencies(&mut v);
        v
    }

    #[test]
    fn percentiles_are_nearest_rank_with_missing_files_last() {
        let v = ms_list(&(1..=100).rev().map(Some).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        let v = ms_list(&[Some(5), None, Some(1), Some(3)]);
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(3)));
        assert_eq!(percentile(&v, 75.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&v, 90.0), None);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn only_the_probes_own_names_count() {
        assert_eq!(file_index(OsStr::new(&file_name(42))), Some(42));
        assert_eq!(file_index(OsStr::new("f0000042.x")), None);
        assert_eq!(file_index(OsStr::new(".f0000042.Ab12Cd")), None);
        assert_eq!(file_index(OsStr::new("f42")), None);
    }
}
