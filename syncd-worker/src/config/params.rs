//! Checking the rsync parameters the operator wrote (`params`, `extra`, sersync's
//! `commonParams`) against the ones syncd must control itself. A recursive flag is
//! removed (with a warning) in files mode, because syncd passes `-r` only for directories
//! that must be pushed whole; options that would fight syncd's own (`--files-from`,
//! `--delete`, filters, ...) are errors naming the config key to use instead. Pure.

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
                out.warnings.push((i, recursive_warning(word, None)));
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
        for c in cluster.chars() {
            if in_value {
                kept.push(c);
                continue;
            }
            match c {
                '0' => refused = Some(PATHS),
                'f' => refused = Some(FILTER),
                'r' if strip_recursive => continue,
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
            out.warnings.push((i, recursive_warning(word, None)));
        } else {
            out.warnings.push((i, recursive_warning(word, Some(&kept))));
            out.kept.push(kept);
        }
    }
    out
}

fn recursive_warning(word: &str, now: Option<&str>) -> String {
    let change = match now {
        Some(now) => format!("{word:?} became {now:?}"),
        None => format!("{word:?} was removed"),
    };
    format!(
        "{change}: in files mode syncd adds -r itself, only for directories \
         that must be pushed whole"
    )
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
            ("-artuz", "-atuz", 1),
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
        let got = check_params(&words("-artuz --recursive"), false);
        assert_eq!(got.kept, words("-artuz --recursive"));
        assert!(got.warnings.is_empty());
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
