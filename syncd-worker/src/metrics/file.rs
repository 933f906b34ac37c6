//! Writing `metrics_file`: node_exporter's textfile convention (a temp file in the same
//! directory renamed over the old one, through [`crate::durable::replace`]; mode 0644 so
//! node_exporter, often another user, can read it; not fsynced: a report, like the status
//! file). It keeps the text last written and writes only a text that differs, at most
//! once every [`METRICS_MIN_GAP`]: a change inside the gap waits, and [`MetricsFile::due`]
//! tells the engine when to come back for it. It has no timer of its own, so a worker
//! whose status does not change never writes it (invariant: an idle syncd makes no
//! system call). A failed write is logged once per distinct error (and its recovery once),
//! never a reason to stop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::deadline::after;
use crate::durable::{self, Flush};

/// At most one write this often while values change.
pub const METRICS_MIN_GAP: Duration = Duration::from_secs(1);

/// The metrics file and what was last written to it.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    /// The text on disk (None: nothing written yet by this worker).
    written: Option<String>,
    last_write: Option<Instant>,
    /// A text that differs from `written`, waiting for the gap.
    pending: Option<String>,
    /// The last write's error, logged once.
    failing: Option<String>,
}

impl MetricsFile {
    /// The writer of `path`; removes temp files a killed writer left beside it.
    pub fn new(path: &Path) -> MetricsFile {
        durable::remove_leftover_temps(path);
        MetricsFile {
            path: path.to_path_buf(),
            written: None,
            last_write: None,
            pending: None,
            failing: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metrics now are `text`: written at once when it differs from the file and the
    /// gap since the last write has passed; otherwise kept for [`MetricsFile::due`].
    pub fn offer(&mut self, text: String, now: Instant) {
        if self.written.as_deref() == Some(text.as_str()) {
            self.pending = None;
            return;
        }
        self.pending = Some(text);
        self.write_if_due(now);
    }

    /// When a changed text is to be written; None: the file says what the worker knows.
    pub fn due(&self) -> Option<Instant> {
        self.pending.as_ref()?;
        Some(
            self.last_write
                .map_or_else(Instant::now, |w| after(w, METRICS_MIN_GAP)),
        )
    }

    /// Write the waiting text if its time has come.
    pub fn write_if_due(&mut self, now: Instant) {
        let gap_passed = self
            .last_write
            .is_none_or(|w| now >= after(w, METRICS_MIN_GAP));
        if self.pending.is_some() && gap_passed {
            self.flush(now);
        }
    }

    /// Write the waiting text now, gap or not (the worker stops).
    pub fn flush(&mut self, now: Instant) {
        let Some(text) = self.pending.take() else {
            return;
        };
        self.last_write = Some(now);
        match durable::replace(&self.path, text.as_bytes(), 0o644, Flush::Atomic) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    log::info!("metrics file {} written again", self.path.display());
                }
                self.written = Some(text);
            }
            Err(e) => {
                let msg = e.to_string();
                if self.failing.as_deref() != Some(msg.as_str()) {
                    log::error!(
                        "cannot write the metrics file (metrics_file): {msg}; make its directory and let the worker's user write there; tried again at the next change"
                    );
                }
                self.failing = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_changed_text_at_most_once_a_gap_and_an_unchanged_one_never() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("syncd.prom");
        let mut m = MetricsFile::new(&p);
        let t0 = Instant::now();
        assert_eq!(m.due(), None, "nothing to write before a first text");
        m.offer("a 1\n".into(), t0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644, "node_exporter must read it");
        assert_eq!(m.due(), None);
        // The same text: nothing due, nothing written (the file is removed to see it).
        std::fs::remove_file(&p).unwrap();
        m.offer("a 1\n".into(), t0 + METRICS_MIN_GAP * 3);
        assert!(!p.exists(), "an unchanged text is not written again");
        assert_eq!(m.due(), None);
        std::fs::write(&p, "a 1\n").unwrap();
        // A change inside the gap waits for it; a later change replaces it.
        let t1 = t0 + METRICS_MIN_GAP / 2;
        m.offer("a 2\n".into(), t1);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        assert_eq!(m.due(), Some(t0 + METRICS_MIN_GAP));
        m.offer("a 3\n".into(), t1);
        m.write_if_due(t1);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        m.write_if_due(t0 + METRICS_MIN_GAP);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 3\n");
        assert_eq!(m.due(), None);
        // Back to the text on disk before the gap: nothing waits.
        m.offer("a 4\n".into(), t0 + METRICS_MIN_GAP);
        m.offer("a 3\n".into(), t0 + METRICS_MIN_GAP);
        assert_eq!(m.due(), None);
        // flush ignores the gap.
        m.offer("a 5\n".into(), t0 + METRICS_MIN_GAP);
        m.flush(t0 + METRICS_MIN_GAP);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 5\n");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }

    #[test]
    fn a_failed_write_is_tried_again_at_the_next_change() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing-dir/syncd.prom");
        let mut m = MetricsFile::new(&p);
        let t0 = Instant::now();
        m.offer("a 1\n".into(), t0);
        assert!(m.failing.is_some());
        assert_eq!(m.due(), None, "no retry loop on its own");
        std::fs::create_dir(d.path().join("missing-dir")).unwrap();
        m.offer("a 1\n".into(), t0 + METRICS_MIN_GAP);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        assert!(m.failing.is_none());
    }
}
