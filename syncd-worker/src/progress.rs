//! Progress of an rsync run: parses what `rsync --info=progress2` writes on stdout into a
//! [`Progress`], and renders one as a terminal bar or a plain log line. Pure: no I/O, no
//! clock, no processes — the runner feeds bytes in ([`ProgressParser::feed`]), the
//! callers decide where and how often to draw.
//!
//! rsync 3.1+ writes one record per update, ended by `\r` (by `\n` at a file's end with
//! `-v`; the `-v` file-name lines in between are not records and are skipped):
//!
//! ```text
//!      32,768  45%  120.00MB/s    0:00:12
//!  51,850,750 100%  228.78MB/s    0:00:00 (xfr#350, to-chk=0/352)
//!      56,790   0%   22.91MB/s    0:00:00 (xfr#1, ir-chk=1350/1352)
//! ```
//!
//! Fields: bytes sent so far (digit-grouped, or `32.77K` with `-h`), percent of the
//! bytes known so far, rate (`kB/s`, `MB/s`, `GB/s` are powers of 1024), then a time.
//! A record without the parenthesis is written during a file and its time is the ETA
//! (`??:??:??` when unknown). A record with it is written when a file ends, and its
//! time is the *elapsed* time, so the ETA is estimated from bytes, percent and rate.
//! `xfr#N` counts files transferred; `to-chk=R/T` says R of T entries are left to check
//! (the list is complete), `ir-chk=R/T` the same while the incremental file list is
//! still growing (T is not final, so `files_total` is `None`).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where a running push publishes its latest progress; the caller owns it and reads it.
pub type SharedProgress = Arc<Mutex<Option<Progress>>>;

/// A new, empty [`SharedProgress`].
pub fn shared() -> SharedProgress {
    Arc::new(Mutex::new(None))
}

/// The latest value in `slot` (a poisoned lock still holds a usable value).
pub fn snapshot(slot: &SharedProgress) -> Option<Progress> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Where one rsync run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes transferred so far.
    pub bytes: u64,
    /// Percent of the bytes known so far (0..=100).
    pub percent: u8,
    /// Current rate in bytes per second.
    pub rate_bps: f64,
    /// Seconds left, when known or estimable.
    pub eta_secs: Option<u64>,
    /// Entries checked so far (transferred or found up to date).
    pub files_done: u64,
    /// Entries in the file list, once the list is complete.
    pub files_total: Option<u64>,
}

/// Turns rsync's stdout, in chunks as they arrive, into the latest [`Progress`].
/// Keeps the unfinished last line (bounded) and the file counts of the last record that
/// had them (records written in the middle of a file carry none).
#[derive(Debug, Default)]
pub struct ProgressParser {
    partial: Vec<u8>,
    latest: Option<Progress>,
}

/// Longest unfinished line kept; a longer one (a `-v` file name) cannot be a record.
const MAX_LINE: usize = 512;

impl ProgressParser {
    pub fn new() -> ProgressParser {
        ProgressParser::default()
    }

    /// Take the next chunk of stdout; true when it held at least one new record.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut updated = false;
        for &b in chunk {
            if b == b'\r' || b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                updated |= self.line(&line);
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        updated
    }

    /// The most recent progress seen, if any.
    pub fn latest(&self) -> Option<&Progress> {
        self.latest.as_ref()
    }

    fn line(&mut self, line: &[u8]) -> bool {
        let Some(record) = std::str::from_utf8(line).ok().and_then(parse_record) else {
            return false;
        };
        let mut p = record.progress;
        if !record.has_files {
            if let Some(prev) = &self.latest {
                p.files_done = prev.files_done;
                p.files_total = prev.files_total;
            }
        }
        self.latest = Some(p);
        true
    }
}

/// One parsed record, and whether it carried file counts.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    progress: Progress,
    has_files: bool,
}

/// Parse one `--info=progress2` record; None for anything else.
fn parse_record(line: &str) -> Option<Record> {
    let mut words = line.split_whitespace();
    let bytes = parse_bytes(words.next()?)?;
    let percent: u8 = words.next()?.strip_suffix('%')?.parse().ok()?;
    if percent > 100 {
        return None;
    }
    let rate_bps = parse_rate(words.next()?)?;
    let time = words.next()?;
    let time_secs = parse_time(time)?; // Some(None) for ??:??:??
    let rest: Vec<&str> = words.collect();
    let files = match rest.as_slice() {
        [] => None,
        [xfr, chk] => Some(parse_files(xfr, chk)?),
        _ => return None,
    };
    let (eta_secs, files_done, files_total, has_files) = match files {
        // Nothing moved yet: rsync's `0:00:00` means "unknown", not "done".
        None if rate_bps == 0.0 && percent < 100 => (None, 0, None, false),
        None => (time_secs, 0, None, false),
        Some((done, total)) => (estimate_eta(bytes, percent, rate_bps), done, total, true),
    };
    Some(Record {
        progress: Progress {
            bytes,
            percent,
            rate_bps,
            eta_secs,
            files_done,
            files_total,
        },
        has_files,
    })
}

/// `51,850,750` or (with `-h`) `55.45M`; suffixes are powers of 1000 (`-h` in rsync ≥ 3.2).
fn parse_bytes(word: &str) -> Option<u64> {
    let (num, mult) = match word.as_bytes().last()? {
        b'K' => (&word[..word.len() - 1], 1e3),
        b'M' => (&word[..word.len() - 1], 1e6),
        b'G' => (&word[..word.len() - 1], 1e9),
        b'T' => (&word[..word.len() - 1], 1e12),
        b'P' => (&word[..word.len() - 1], 1e15),
        _ => (word, 1.0),
    };
    if mult == 1.0 {
        let digits: String = num.chars().filter(|c| *c != ',').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return digits.parse().ok();
    }
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * mult).round() as u64)
}

/// `120.00MB/s` → bytes per second (rsync's rate units are powers of 1024).
fn parse_rate(word: &str) -> Option<f64> {
    let num_unit = word.strip_suffix("/s")?;
    let split = num_unit.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = num_unit.split_at(split);
    let mult = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * mult)
}

/// `H:MM:SS` → seconds; `??:??:??` → Some(None) (a record, time unknown).
fn parse_time(word: &str) -> Option<Option<u64>> {
    if word == "??:??:??" {
        return Some(None);
    }
    let mut parts = word.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let num = |x: &str| -> Option<u64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    Some(Some(num(h)? * 3600 + num(m)? * 60 + num(s)?))
}

/// `(xfr#12,` `to-chk=100/2000)` → (entries checked, Some(total)); with `ir-chk` the
/// total is still growing: (checked, None).
fn parse_files(xfr: &str, chk: &str) -> Option<(u64, Option<u64>)> {
    let n = xfr.strip_prefix("(xfr#")?.strip_suffix(',')?;
    let _transferred: u64 = n.parse().ok()?;
    let chk = chk.strip_suffix(')')?;
    let (complete, counts) = if let Some(c) = chk.strip_prefix("to-chk=") {
        (true, c)
    } else {
        (false, chk.strip_prefix("ir-chk=")?)
    };
    let (left, total) = counts.split_once('/')?;
    let (left, total): (u64, u64) = (left.parse().ok()?, total.parse().ok()?);
    let done = total.checked_sub(left)?;
    Some((done, complete.then_some(total)))
}

/// Seconds left, from bytes done, the percent they are of the total, and the rate.
fn estimate_eta(bytes: u64, percent: u8, rate_bps: f64) -> Option<u64> {
    if percent >= 100 {
        return Some(0);
    }
    if percent == 0 || rate_bps <= 0.0 {
        return None;
    }
    let total = bytes as f64 * 100.0 / f64::from(percent);
    Some(((total - bytes as f64).max(0.0) / rate_bps).round() as u64)
}

/// `1536` → `1.5 KiB` (powers of 1024, one decimal from KiB up).
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `75` → `1:15`, `3725` → `1:02:05`.
pub fn human_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// The text after the bar: `45%  1200/2000 files  1.2 GiB  120.0 MiB/s  ETA 0:12`.
fn figures(p: &Progress, sep: &str) -> String {
    let files = match p.files_total {
        Some(t) => format!("{}/{t} files", p.files_done),
        None => format!("{}/? files", p.files_done),
    };
    let eta = match p.eta_secs {
        Some(s) => format!("ETA {}", human_duration(s)),
        None => "ETA ?".to_string(),
    };
    [
        format!("{:>3}%", p.percent),
        files,
        human_bytes(p.bytes as f64),
        format!("{}/s", human_bytes(p.rate_bps)),
        eta,
    ]
    .join(sep)
}

/// A one-line terminal bar at most `width` columns wide (no `\r`, no newline):
/// `[#########-----------]  45%  1200/2000 files  1.2 GiB  120.0 MiB/s  ETA 0:12`.
/// When `width` leaves no room for a bar of at least 10 cells, only the figures.
pub fn bar(p: &Progress, width: usize) -> String {
    let text = figures(p, "  ");
    let room = width.saturating_sub(text.chars().count() + 3); // "[" "]" " "
    if room < 10 {
        return text.chars().take(width).collect();
    }
    let cells = room.min(50);
    let filled = (cells * usize::from(p.percent.min(100)) + 50) / 100;
    format!(
        "[{}{}] {text}",
        "#".repeat(filled),
        "-".repeat(cells - filled)
    )
}

/// The plain form for logs: `45%, 1200/2000 files, 1.2 GiB, 120.0 MiB/s, ETA 0:12`.
pub fn line(p: &Progress) -> String {
    figures(p, ", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(
        bytes: u64,
        percent: u8,
        rate_bps: f64,
        eta_secs: Option<u64>,
        files_done: u64,
        files_total: Option<u64>,
    ) -> Progress {
        Progress {
            bytes,
            percent,
            rate_bps,
            eta_secs,
            files_done,
            files_total,
        }
    }

    const MB: f64 = 1024.0 * 1024.0;

    /// Records captured from rsync 3.5.0 (`rsync -a --info=progress2 src/ dst/`, with
    /// `-h`, `-v`, `--bwlimit`), one per row, and what they mean.
    #[test]
    fn records_table() {
        let cases: Vec<(&str, Option<(Progress, bool)>)> = vec![
            (
                "         32,768   0%    0.00kB/s    0:00:00  ",
                Some((prog(32_768, 0, 0.0, None, 0, None), false)),
            ),
            (
                "      4,292,608  21%    3.91MB/s    0:00:03  ",
                Some((prog(4_292_608, 21, 3.91 * MB, Some(3), 0, None), false)),
            ),
            (
                "         56,790   0%   22.91MB/s    0:00:00 (xfr#1, to-chk=350/352)",
                Some((prog(56_790, 0, 22.91 * MB, None, 2, Some(352)), true)),
            ),
            (
                "     51,850,750 100%  228.78MB/s    0:00:00 (xfr#350, to-chk=0/352)",
                Some((
                    prog(51_850_750, 100, 228.78 * MB, Some(0), 352, Some(352)),
                    true,
                )),
            ),
            (
                // Incremental recursion: the list is still growing, no final total.
                "        211,370   0%   85.16MB/s    0:00:00 (xfr#2, ir-chk=1349/1352)",
                Some((prog(211_370, 0, 85.16 * MB, None, 3, None), true)),
            ),
            (
                // Elapsed time at a file's end; ETA estimated: 1e6 B left at 1 MiB/s.
                "      1,000,000  50%    1.00MB/s    0:00:09 (xfr#1, to-chk=1/2)",
                Some((prog(1_000_000, 50, MB, Some(1), 1, Some(2)), true)),
            ),
            (
                // -h: sizes in powers of 1000.
                "         55.45M 100%  503.34MB/s    0:00:00 (xfr#1550, to-chk=0/1592)",
                Some((
                    prog(55_450_000, 100, 503.34 * MB, Some(0), 1592, Some(1592)),
                    true,
                )),
            ),
            (
                "          0   0%    0.00kB/s    0:00:00 (xfr#0, ir-chk=1010/1352)",
                Some((prog(0, 0, 0.0, None, 342, None), true)),
            ),
            (
                "  1,234,567,890  12%    1.50GB/s  123:04:05  ",
                Some((
                    prog(
                        1_234_567_890,
                        12,
                        1.5 * 1024.0 * MB,
                        Some(123 * 3600 + 4 * 60 + 5),
                        0,
                        None,
                    ),
                    false,
                )),
            ),
            (
                "      1,024   1%    1.00kB/s  ??:??:??  ",
                Some((prog(1024, 1, 1024.0, None, 0, None), false)),
            ),
            // Not records: -v output, summaries, damaged lines.
            ("sending incremental file list", None),
            ("created directory dst", None),
            ("f10", None),
            ("", None),
            (
                "sent 55,552,041 bytes  received 29,823 bytes  111,163,728.00 bytes/sec",
                None,
            ),
            ("total size is 55,450,750  speedup is 1.00", None),
            ("     32,768  145%  1.00MB/s  0:00:01", None),
            ("     32,768  45%  1.00XB/s  0:00:01", None),
            ("     32,768  45%  1.00MB/s  0:0:01", None),
            ("     32,7x8  45%  1.00MB/s  0:00:01", None),
            (
                "     32,768  45%  1.00MB/s  0:00:01 (xfr#1, to-chk=3/2)",
                None,
            ),
            (
                "     32,768  45%  1.00MB/s  0:00:01 (xfr#1 to-chk=1/2)",
                None,
            ),
            ("     32,768  45%  1.00MB/s", None),
        ];
        for (text, want) in cases {
            let got = parse_record(text).map(|r| (r.progress, r.has_files));
            match (&got, &want) {
                (Some((g, gf)), Some((w, wf))) => {
                    assert_eq!(gf, wf, "{text:?}");
                    assert_eq!(
                        (g.bytes, g.percent, g.eta_secs, g.files_done, g.files_total),
                        (w.bytes, w.percent, w.eta_secs, w.files_done, w.files_total),
                        "{text:?}"
                    );
                    assert!((g.rate_bps - w.rate_bps).abs() < 1.0, "{text:?}: {g:?}");
                }
                _ => assert_eq!(got, want, "{text:?}"),
            }
        }
    }

    /// A real capture (rsync 3.5.0, `-av --info=progress2`): `-v` lines end in `\n`,
    /// records in `\r`, a chunk boundary may cut a record; file counts carry over records
    /// written mid-file.
    #[test]
    fn stream_with_verbose_lines_and_split_chunks() {
        let stream: &[u8] = b"sending incremental file list\ncreated directory dst\n./\nf1\n\r         32,768   0%    0.00kB/s    0:00:00  \r         56,790   0%   22.91MB/s    0:00:00 (xfr#1, ir-chk=1350/1352)\nf10\n\r      4,292,608  21%    3.91MB/s    0:00:03  \r     55,450,750 100%  115.90MB/s    0:00:00 (xfr#1550, to-chk=0/1592)\n\nsent 55,552,041 bytes  received 29,823 bytes  111,163,728.00 bytes/sec\ntotal size is 55,450,750  speedup is 1.00\n";
        for cut in [1, 7, 64, stream.len()] {
            let mut parser = ProgressParser::new();
            let mut seen = Vec::new();
            for chunk in stream.chunks(cut) {
                if parser.feed(chunk) {
                    seen.push(parser.latest().cloned().expect("updated"));
                }
            }
            let p = parser.latest().expect("records were seen");
            assert_eq!(p.bytes, 55_450_750, "cut {cut}");
            assert_eq!((p.files_done, p.files_total), (1592, Some(1592)));
            if cut != 1 {
                continue; // several records in one chunk: only the last is kept
            }
            // The mid-file record kept the previous record's count (2 of a growing list).
            let mid = seen
                .iter()
                .find(|p| p.bytes == 4_292_608)
                .expect("mid-file record");
            assert_eq!((mid.files_done, mid.files_total), (2, None));
            assert_eq!(mid.eta_secs, Some(3));
        }
    }

    #[test]
    fn overlong_lines_are_not_records() {
        let mut parser = ProgressParser::new();
        let mut long = vec![b' '; 2000];
        long.extend_from_slice(b"32,768  45%  1.00MB/s  0:00:01\r");
        assert!(!parser.feed(&long));
        assert!(parser.feed(b"  32,768  45%  1.00MB/s  0:00:01\r"));
    }

    #[test]
    fn human_units_table() {
        for (n, want) in [
            (0.0, "0 B"),
            (1023.0, "1023 B"),
            (1536.0, "1.5 KiB"),
            (120.0 * MB, "120.0 MiB"),
            (3.0 * 1024.0 * 1024.0 * MB, "3.0 TiB"),
        ] {
            assert_eq!(human_bytes(n), want);
        }
        for (s, want) in [(0, "0:00"), (75, "1:15"), (3725, "1:02:05")] {
            assert_eq!(human_duration(s), want);
        }
    }

    #[test]
    fn bar_and_line_table() {
        let p = prog(1_288_490_188, 45, 120.0 * MB, Some(12), 1200, Some(2000));
        let figures = " 45%  1200/2000 files  1.2 GiB  120.0 MiB/s  ETA 0:12";
        let cases: Vec<(usize, String)> = vec![
            (
                100,
                format!("[{}{}] {figures}", "#".repeat(20), "-".repeat(24)),
            ),
            (
                figures.len() + 13,
                format!("[{}{}] {figures}", "#".repeat(5), "-".repeat(5)),
            ),
            // No room for a bar: the figures, cut to the width.
            (figures.len() + 5, figures.to_string()),
            (20, figures.chars().take(20).collect()),
            (
                300,
                format!("[{}{}] {figures}", "#".repeat(23), "-".repeat(27)),
            ),
        ];
        for (width, want) in cases {
            let got = bar(&p, width);
            assert_eq!(got, want, "width {width}");
            assert!(got.chars().count() <= width, "width {width}");
        }
        assert_eq!(
            line(&p),
            " 45%, 1200/2000 files, 1.2 GiB, 120.0 MiB/s, ETA 0:12"
        );
        let unknown = prog(0, 0, 0.0, None, 3, None);
        assert_eq!(line(&unknown), "  0%, 3/? files, 0 B, 0 B/s, ETA ?");
    }

    #[test]
    fn serde_round_trip() {
        let p = prog(5, 1, 2.5, None, 3, Some(4));
        let json = serde_json::to_string(&p).expect("encode");
        assert_eq!(serde_json::from_str::<Progress>(&json).expect("decode"), p);
    }
}
