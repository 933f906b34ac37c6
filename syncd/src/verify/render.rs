//! What `syncd verify` prints: one report per (sync, target) as text or JSON, and the
//! exit code. Pure: reports in, text out.

use serde::Serialize;
use syncd_worker::verify::{Checked, Drift, Found};

/// Exit codes of `syncd verify`.
pub const EXIT_EQUAL: u8 = 0;
pub const EXIT_DRIFT: u8 = 1;
pub const EXIT_FAILED: u8 = 2;

/// One check's result as shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckView {
    /// "equal", "drift" or "failed".
    pub outcome: &'static str,
    pub missing: FoundView,
    pub different: FoundView,
    pub extra: FoundView,
    /// Differences in flight while verify ran (the daemon was pushing them): not drift.
    pub changing: FoundView,
    pub seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct FoundView {
    pub count: u64,
    /// The first paths, relative to the source (lossy UTF-8).
    pub paths: Vec<String>,
}

/// What `--fix` did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FixView {
    /// Paths pushed (0 when nothing was run).
    pub paths: usize,
    pub seconds: f64,
    pub error: Option<String>,
    /// The verify run after the push.
    pub after: Option<CheckView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetView {
    pub sync: String,
    pub target: String,
    /// "deep" (`--checksum`) or "quick" (size and modification time).
    pub mode: &'static str,
    #[serde(flatten)]
    pub check: CheckView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The worst outcome of all targets (after `--fix`: of the second verify).
    pub outcome: &'static str,
    pub targets: Vec<TargetView>,
}

impl CheckView {
    pub fn of(result: &Result<Checked, String>, show: usize, seconds: f64) -> CheckView {
        match result {
            Ok(c) => CheckView {
                outcome: if c.drift.is_empty() { "equal" } else { "drift" },
                missing: FoundView::of(&c.drift.missing, show),
                different: FoundView::of(&c.drift.different, show),
                extra: FoundView::of(&c.drift.extra, show),
                changing: FoundView::of(&c.changing, show),
                seconds: c.elapsed.as_secs_f64(),
                error: None,
            },
            Err(e) => CheckView {
                outcome: "failed",
                missing: FoundView::default(),
                different: FoundView::default(),
                extra: FoundView::default(),
                changing: FoundView::default(),
                seconds,
                error: Some(e.clone()),
            },
        }
    }
}

impl FoundView {
    fn of(f: &Found, show: usize) -> FoundView {
        FoundView {
            count: f.count,
            paths: f
                .paths
                .iter()
                .take(show)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
        }
    }
}

/// The outcome that decides the exit code: after a fix, its second verify.
fn final_outcome(t: &TargetView) -> &'static str {
    match &t.fix {
        Some(FixView { error: Some(_), .. }) => "failed",
        Some(FixView {
            after: Some(after), ..
        }) => after.outcome,
        _ => t.check.outcome,
    }
}

impl Report {
    pub fn new(targets: Vec<TargetView>) -> Report {
        let rank = |o: &str| match o {
            "failed" => 2,
            "drift" => 1,
            _ => 0,
        };
        let outcome = targets
            .iter()
            .map(final_outcome)
            .max_by_key(|o| rank(o))
            .unwrap_or("equal");
        Report { outcome, targets }
    }

    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            "failed" => EXIT_FAILED,
            "drift" => EXIT_DRIFT,
            _ => EXIT_EQUAL,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            out.push_str(&format!("{} → {}: ", t.sync, t.target));
            out.push_str(&check_text(&t.check, t.mode));
            if let Some(fix) = &t.fix {
                match (&fix.error, &fix.after) {
                    (Some(e), _) => out.push_str(&format!("  fix: {e}\n")),
                    (None, Some(after)) => {
                        out.push_str(&format!(
                            "  fix: pushed {} path{} ({:.2}s); verified again: ",
                            fix.paths,
                            if fix.paths == 1 { "" } else { "s" },
                            fix.seconds
                        ));
                        out.push_str(&check_text(after, t.mode));
                    }
                    (None, None) => {}
                }
            }
        }
        out
    }
}

/// `equal (quick, 0.05s)` / `drift (…): 1 missing, …` with the first paths, one per line.
fn check_text(c: &CheckView, mode: &str) -> String {
    let mut out = match c.outcome {
        "failed" => format!(
            "could not be checked: {}\n",
            c.error.as_deref().unwrap_or("unknown error")
        ),
        outcome => format!(
            "{outcome} ({mode}, {:.2}s){}\n",
            c.seconds,
            if outcome == "drift" {
                format!(
                    ": {} missing, {} different, {} extra on the target",
                    c.missing.count, c.different.count, c.extra.count
                )
            } else {
                String::new()
            }
        ),
    };
    for (label, f) in [
        ("missing", &c.missing),
        ("different", &c.different),
        ("extra", &c.extra),
        ("changing", &c.changing),
    ] {
        for p in &f.paths {
            out.push_str(&format!("  {label:<9} {}\n", printable(p)));
        }
        let more = f.count.saturating_sub(f.paths.len() as u64);
        if more > 0 {
            out.push_str(&format!("  {label:<9} … and {more} more\n"));
        }
    }
    if c.changing.count > 0 {
        out.push_str(&format!(
            "  ({} path{} changed while verify ran and the daemon is pushing them: not drift)\n",
            c.changing.count,
            if c.changing.count == 1 { "" } else { "s" }
        ));
    }
    out
}

/// A path for one line of text: control characters (a newline in a name) escaped.
pub fn printable(p: &str) -> String {
    p.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<char>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The drift counts in one line (for logs).
pub fn summary(d: &Drift) -> String {
    format!(
        "{} missing, {} different, {} extra",
        d.missing.count, d.different.count, d.extra.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use syncd_worker::verify::Checked;

    fn view(result: Result<Checked, String>, fix: Option<FixView>) -> TargetView {
        TargetView {
            sync: "data".into(),
            target: "backup".into(),
            mode: "quick",
            check: CheckView::of(&result, 2, 0.5),
            fix,
        }
    }

    fn drifting() -> Checked {
        Checked {
            drift: Drift {
                missing: Found::listing(&["a", "b", "c"]),
                different: Found::listing(&[]),
                extra: Found::listing(&["new\nline"]),
            },
            elapsed: Duration::from_millis(1500),
            ..Checked::default()
        }
    }

    #[test]
    fn exit_codes_follow_the_worst_target_and_a_fix_counts_by_its_second_verify() {
        let equal = || view(Ok(Checked::default()), None);
        let drift = || view(Ok(drifting()), None);
        let failed = || view(Err("daemon down".into()), None);
        let cases = [
            (vec![equal()], 0),
            (vec![equal(), drift()], 1),
            (vec![drift(), failed(), equal()], 2),
            (vec![], 0),
        ];
        for (targets, code) in cases {
            assert_eq!(
                Report::new(targets.clone()).exit_code(),
                code,
                "{targets:?}"
            );
        }
        let after = |c: Result<Checked, String>| FixView {
            paths: 4,
            seconds: 0.1,
            error: None,
            after: Some(CheckView::of(&c, 2, 0.0)),
        };
        let fixed = view(Ok(drifting()), Some(after(Ok(Checked::default()))));
        assert_eq!(Report::new(vec![fixed]).exit_code(), 0);
        let still = view(Ok(drifting()), Some(after(Ok(drifting()))));
        assert_eq!(Report::new(vec![still]).exit_code(), 1);
        let refused = view(
            Ok(drifting()),
            Some(FixView {
                paths: 0,
                seconds: 0.0,
                error: Some("deletion guard".into()),
                after: None,
            }),
        );
        assert_eq!(Report::new(vec![refused]).exit_code(), 2);
    }

    #[test]
    fn text_names_the_counts_and_the_first_paths() {
        let r = Report::new(vec![view(Ok(drifting()), None)]);
        assert_eq!(
            r.text(),
            "data → backup: drift (quick, 1.50s): 3 missing, 0 different, 1 extra on the target\n  \
             missing   a\n  missing   b\n  missing   … and 1 more\n  extra     new\\nline\n"
        );
        let r = Report::new(vec![view(Err("rsync: connection refused".into()), None)]);
        assert_eq!(
            r.text(),
            "data → backup: could not be checked: rsync: connection refused\n"
        );
    }

    #[test]
    fn json_has_counts_paths_and_the_outcome() {
        let r = Report::new(vec![view(Ok(drifting()), None)]);
        let v = serde_json::to_value(&r).expect("serialize");
        assert_eq!(v["outcome"], "drift");
        assert_eq!(v["targets"][0]["missing"]["count"], 3);
        assert_eq!(v["targets"][0]["extra"]["paths"][0], "new\nline");
        assert_eq!(v["targets"][0]["sync"], "data");
        assert!(v["targets"][0].get("fix").is_none());
    }
}
