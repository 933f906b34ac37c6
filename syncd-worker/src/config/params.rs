//! Checking the rsync parameters the operator wrote (`params`, `extra`, sersync's
//! `commonParams`) against the ones syncd must control itself. A recursive flag is
//! removed (with a warning) in files mode, because syncd passes `-r` only for directories
//! that must be pushed whole. `-u`/`--update` is removed (with a warning) in every mode:
//! it skips a file whose target copy is newer, so a file restored on the source with its
//! older mtime never reaches the backup (sersync's example has `-artuz`, so it is dropped
//! rather than refused: those configs keep starting). Options that would fight syncd's
//! own (`--files-from`, `--delete`, filters, ...) or stop the target from mirroring the
//! source (`--existing`, `--ignore-existing`: deliberate, so refused, not dropped) are
//! errors naming what to do instead. Pure.

/// Short options that take an argument: the rest of a cluster after one is its value.
const SHORT_WITH_ARG: &[char] = &['B', 'e', 'f', 'T', 'M', '@'];

/// What checking one list of parameters found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ParamCheck {
    /// The parameters to use.
    pub kept: Vec<String>,
    /// (index of the word, text) for words that were changed.
    pub warnings: Vec<(usize, String)>,
    /// (index of the word, message, what to do instead) for words that are refused.
    pub errors: Vec<(usize, String, &'static str)>,
}

const PATHS: &str = "remove it: syncd passes the changed paths itself (--files-from=- --from0)";
const DELETE: &str = "remove it: syncd decides deletions itself (files mode: \
     --delete-missing-args for what was deleted at the source; tree mode: --delete)";
const PASSWORD: &str = "remove it and set `password_file` in the [[sync.target]] block \
     (sersync: <auth start=\"true\" passwordfile=...>)";
const SKIP: &str = "remove it: syncd keeps the target an exact copy of the source, and this \
     option makes rsync skip files (new ones with --existing, changed ones with \
     --ignore-existing), so the backup would silently differ";
const FILTER: &str = "remove it and use `exclude` in the [[sync]] block (regular expressions \
     on the relative path), or `exclude` in [sync.full_sync] for the periodic full push only";

/// Check `words`; `strip_recursive` is true in files mode.
pub(super) fn check_params(words: &[String], strip_recursive: bool) -> ParamCheck {
    let mut out = ParamCheck::default();
    for (i, word) in words.iter().enumerate() {
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            let refused = if name.starts_with("files-from") || name == "from0" {
                Some(PATHS)
            } else if name == "del" || name.starts_with("delete") {
                // --del, --delete, --delete-after, --delete-excluded, ...
                Some(DELETE)
            } else if name == "password-file" {
                Some(PASSWORD)
            } else if ["existing", "ignore-existing", "ignore-non-existing"].contains(&name) {
                Some(SKIP)
            } else if ["include", "exclude", "filter"]
                .iter()
                .any(|f| name.starts_with(f))
            {
                Some(FILTER)
            } else {
                None
            };
            if let Some(advice) = refused {
                out.errors
                    .push((i, format!("{word:?} is controlled by syncd"), advice));
            } else if name == "recursive" && strip_recursive {
                out.warnings
                    .push((i, dropped_warning(word, None, &[RECURSIVE])));
            } else if name == "update" {
                out.warnings
                    .push((i, dropped_warning(word, None, &[UPDATE])));
            } else {
                out.kept.push(word.clone());
            }
            continue;
        }
        let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) else {
            out.kept.push(word.clone());
            continue;
        };
        let mut kept = String::from("-");
        let mut refused = None;
        let mut in_value = false;
        let mut why = Vec::new();
        for c in cluster.chars() {
            if in_value {
                kept.push(c);
                continue;
            }
            match c {
                '0' => refused = Some(PATHS),
                'f' => refused = Some(FILTER),
                'r' if strip_recursive => {
                    if !why.contains(&RECURSIVE) {
                        why.push(RECURSIVE);
                    }
                    continue;
                }
                'u' => {
                    if !why.contains(&UPDATE) {
                        why.push(UPDATE);
                    }
                    continue;
                }
                _ => {}
            }
            in_value = SHORT_WITH_ARG.contains(&c);
            kept.push(c);
        }
        if let Some(advice) = refused {
            out.errors
                .push((i, format!("{word:?} is controlled by syncd"), advice));
        } else if kept.len() == word.len() {
            out.kept.push(word.clone());
        } else if kept == "-" {
            out.warnings.push((i, dropped_warning(word, None, &why)));
        } else {
            out.warnings
                .push((i, dropped_warning(word, Some(&kept), &why)));
            out.kept.push(kept);
        }
    }
    out
}

const RECURSIVE: &str =
    "in files mode syncd adds -r itself, only for directories that must be pushed whole";
const UPDATE: &str = "-u/--update skips files that are newer on the target, so a file \
     restored on the source with an older modification time would never reach the backup";

fn dropped_warning(word: &str, now: Option<&str>, why: &[&str]) -> String {
    let change = match now {
        Some(now) => format!("{word:?} became {now:?}"),
        None => format!("{word:?} was removed"),
    };
    format!("{change}: {}", why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn recursive_flags_are_stripped_in_files_mode() {
        // (params, kept, number of warnings)
        let cases = [
            ("-artuz", "-atz", 1),
            ("-a", "-a", 0),
            ("-r -a", "-a", 1),
            ("--recursive -a", "-a", 1),
            ("-az --bwlimit=20m", "-az --bwlimit=20m", 0),
            ("-avr --compress", "-av --compress", 1),
            ("-rrt", "-t", 1),
            ("-e ssh", "-e ssh", 0),
            ("-essh-r", "-essh-r", 0), // the r is part of -e's value
            ("-Ttmp/r", "-Ttmp/r", 0),
            ("--no-recursive", "--no-recursive", 0),
        ];
        for (params, kept, warned) in cases {
            let got = check_params(&words(params), true);
            assert_eq!(got.kept, words(kept), "{params}");
            assert_eq!(got.warnings.len(), warned, "{params}: {:?}", got.warnings);
            assert!(got.errors.is_empty(), "{params}: {:?}", got.errors);
        }
    }

    #[test]
    fn tree_mode_keeps_recursion() {
        let got = check_params(&words("-artz --recursive"), false);
        assert_eq!(got.kept, words("-artz --recursive"));
        assert!(got.warnings.is_empty());
    }

    #[test]
    fn update_is_dropped_in_every_mode_with_a_warning() {
        // (params, files mode?, kept, warnings that must each hold these words)
        type Case = (&'static str, bool, &'static str, &'static [&'static str]);
        let cases: &[Case] = &[
            (
                "-artuz",
                true,
                "-atz",
                &["\"-artuz\" became \"-atz\"", "-r itself", "older"],
            ),
            (
                "-artuz",
                false,
                "-artz",
                &["\"-artuz\" became \"-artz\"", "older"],
            ),
            ("-u -a", true, "-a", &["\"-u\" was removed", "older"]),
            ("-uu", false, "", &["\"-uu\" was removed"]),
            (
                "--update -a",
                false,
                "-a",
                &["\"--update\" was removed", "older"],
            ),
            ("-a --no-update", true, "-a --no-update", &[]),
            ("-Bu", true, "-Bu", &[]), // the u is -B's value
            ("-e ssh -u", true, "-e ssh", &["\"-u\" was removed"]),
        ];
        for (params, files, kept, warned) in cases {
            let got = check_params(&words(params), *files);
            assert_eq!(got.kept, words(kept), "{params}");
            assert!(got.errors.is_empty(), "{params}: {:?}", got.errors);
            assert_eq!(
                got.warnings.len(),
                usize::from(!warned.is_empty()),
                "{params}"
            );
            for w in *warned {
                assert!(
                    got.warnings.iter().any(|(_, text)| text.contains(w)),
                    "{params}: {:?} lacks {w:?}",
                    got.warnings
                );
            }
        }
    }

    #[test]
    fn controlled_params_are_refused_with_the_key_to_use() {
        let cases = [
            ("--files-from=/tmp/x", "--files-from"),
            ("--from0", "--files-from"),
            ("-a0", "--files-from"),
            ("-0", "--files-from"),
            ("--delete", "deletions"),
            ("--del", "deletions"),
            ("--delete-after", "deletions"),
            ("--delete-excluded", "deletions"),
            ("--password-file=/etc/rsync.password", "password_file"),
            ("--exclude=*.tmp", "exclude"),
            ("--exclude-from=list", "exclude"),
            ("--include=*.php", "exclude"),
            ("--filter=- x", "exclude"),
            ("-f- x", "exclude"),
            ("-avf", "exclude"),
            ("--existing", "exact copy"),
            ("--ignore-existing", "exact copy"),
            ("--ignore-non-existing", "exact copy"),
        ];
        for (param, advice) in cases {
            let got = check_params(&[param.to_string(), "-a".to_string()], true);
            assert_eq!(got.errors.len(), 1, "{param}: {got:?}");
            let (index, msg, hint) = &got.errors[0];
            assert_eq!(*index, 0);
            assert!(msg.contains(param), "{msg}");
            assert!(hint.contains(advice), "{param}: {hint}");
            assert_eq!(got.kept, vec!["-a".to_string()], "{param}");
        }
    }

    #[test]
    fn harmless_long_options_pass() {
        for p in [
            "--bwlimit=20m",
            "--compress",
            "--delay-updates",
            "--dry-run",
            "--delete",
        ] {
            let got = check_params(&[p.to_string()], true);
            assert_eq!(got.errors.is_empty(), p != "--delete", "{p}");
        }
    }
}
