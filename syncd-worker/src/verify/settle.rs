//! Telling drift from changes in flight (see [`super`]'s doc, step 3). Pure: the first
//! and second dry runs' drift and each path's change time come in as values.

use std::time::SystemTime;

use super::itemize::{Drift, Found, KINDS};
use crate::batch::{is_within, RelPath};

/// The drift of the first run that the second (of its paths only) still shows: a path
/// it names with any kind, or a path below a directory it would delete as extra.
pub fn persisting(first: &Drift, second: &Drift) -> Drift {
    let named: std::collections::BTreeSet<&RelPath> = second.all_paths().collect();
    let keep =
        |p: &RelPath| named.contains(p) || second.extra.paths.iter().any(|dir| is_within(p, dir));
    let mut out = Drift::default();
    for kind in KINDS {
        let from = first.get(kind);
        let to = out.of(kind);
        for p in from.paths.iter().filter(|p| keep(p)) {
            to.count += 1;
            to.paths.push(p.clone());
        }
    }
    out
}

/// Split persisting drift into drift and *changing*: a path whose source entry changed
/// at or after `since` (`changed_at`, None when unknown: drift) is changing.
pub fn split_changing(
    drift: Drift,
    changed_at: impl Fn(&[u8]) -> Option<SystemTime>,
    since: SystemTime,
) -> (Drift, Found) {
    let mut out = Drift::default();
    let mut changing = Found::default();
    for kind in KINDS {
        for p in &drift.get(kind).paths {
            let to = if changed_at(p).is_some_and(|t| t >= since) {
                &mut changing
            } else {
                out.of(kind)
            };
            to.count += 1;
            to.paths.push(p.clone());
        }
    }
    (out, changing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(f: &Found) -> Vec<String> {
        f.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn only_what_the_second_run_still_shows_persists() {
        let first = Drift {
            missing: Found::listing(&["pushed-meanwhile", "still-missing"]),
            different: Found::listing(&["was-in-flight", "stale"]),
            extra: Found::listing(&["gone/x", "gone", "deleted-meanwhile"]),
        };
        // The second run lists `gone` (deleted whole with --force): `gone/x` persists.
        let second = Drift {
            missing: Found::listing(&["still-missing"]),
            different: Found::listing(&["stale"]),
            extra: Found::listing(&["gone"]),
        };
        let p = persisting(&first, &second);
        assert_eq!(names(&p.missing), ["still-missing"]);
        assert_eq!(names(&p.different), ["stale"]);
        assert_eq!(names(&p.extra), ["gone/x", "gone"]);
        assert_eq!(p.total(), 4);
        assert!(persisting(&first, &Drift::default()).is_empty());
    }

    #[test]
    fn a_path_changed_since_the_verify_began_is_changing_not_drift() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let drift = Drift {
            missing: Found::listing(&["new-now"]),
            different: Found::listing(&["appended", "old-failure"]),
            extra: Found::listing(&["unknown"]),
        };
        let (d, changing) = split_changing(
            drift,
            |p| match p {
                b"new-now" => Some(t0),
                b"appended" => Some(t0 + Duration::from_secs(3)),
                b"old-failure" => Some(t0 - Duration::from_secs(600)),
                _ => None,
            },
            t0,
        );
        assert_eq!(names(&changing), ["new-now", "appended"]);
        assert_eq!(changing.count, 2);
        assert_eq!(names(&d.different), ["old-failure"]);
        assert_eq!(names(&d.extra), ["unknown"]);
        assert_eq!(d.missing.count, 0);
    }
}
