//! Turning an rsync-style glob (sersync's `<crontabfilter>` expressions such as `*.php` or
//! `info/*`) into a regular expression for [`crate::exclude::ExcludeSet`], which matches
//! against the path relative to the source root. Pure string work.

/// Convert `glob` to a regex: `*` → `[^/]*`, `?` → `[^/]`, `**` → `.*`, a final `/***` →
/// "this directory and everything in it", `[...]` kept as a class (`[!...]` negated), every
/// other regex metacharacter escaped. Unanchored globs match at a directory boundary
/// (`(^|/)GLOB$`); a leading `/` anchors to the source root (`^GLOB$`). A trailing `/`
/// (directories only, in rsync) is dropped.
pub fn glob_to_regex(glob: &str) -> String {
    let (anchored, body) = match glob.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, glob),
    };
    let body = body.strip_suffix('/').unwrap_or(body);
    let (body, whole_dir) = match body.strip_suffix("/***") {
        Some(dir) => (dir, true),
        None => (body, false),
    };
    let mut out = String::from(if anchored { "^" } else { "(^|/)" });
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                let run = chars[i..].iter().take_while(|c| **c == '*').count();
                out.push_str(if run >= 2 { ".*" } else { "[^/]*" });
                i += run;
                continue;
            }
            '?' => out.push_str("[^/]"),
            '[' => match class(&chars[i..]) {
                Some((regex, used)) => {
                    out.push_str(&regex);
                    i += used;
                    continue;
                }
                None => out.push_str(r"\["),
            },
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
        i += 1;
    }
    if whole_dir {
        out.push_str("(/.*)?");
    }
    out.push('$');
    out
}

/// A bracket class at the start of `chars` (which starts with `[`): the regex for it and
/// how many characters it used, or None when it is not closed.
fn class(chars: &[char]) -> Option<(String, usize)> {
    let mut out = String::from("[");
    let mut i = 1;
    if matches!(chars.get(i), Some('!') | Some('^')) {
        out.push('^');
        i += 1;
    }
    // A `]` right after the opening (or the negation) is a literal member.
    if chars.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            ']' => {
                out.push(']');
                return Some((out, i + 1));
            }
            '-' => out.push('-'),
            c if c.is_alphanumeric() => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn conversions() {
        let cases = [
            ("*.php", r"(^|/)[^/]*\.php$"),
            ("info/*", r"(^|/)info/[^/]*$"),
            ("/static/**", r"^static/.*$"),
            ("cache/", r"(^|/)cache$"),
            ("logs/***", r"(^|/)logs(/.*)?$"),
            ("a?c", r"(^|/)a[^/]c$"),
            ("file[0-9].txt", r"(^|/)file[0-9]\.txt$"),
            ("x[!ab]", r"(^|/)x[^ab]$"),
            ("odd[", r"(^|/)odd\[$"),
            ("a+b(1)", r"(^|/)a\+b\(1\)$"),
        ];
        for (glob, want) in cases {
            assert_eq!(glob_to_regex(glob), want, "{glob}");
            assert!(Regex::new(want).is_ok(), "{want}");
        }
    }

    #[test]
    fn converted_globs_match_like_rsync() {
        let cases = [
            ("*.php", "index.php", true),
            ("*.php", "www/a/index.php", true),
            ("*.php", "index.php.bak", false),
            ("*.php", "xphp", false),
            ("info/*", "info/a", true),
            ("info/*", "site/info/a", true),
            ("info/*", "myinfo/a", false),
            ("info/*", "info/a/b", false), // the ExcludeSet's ancestor rule covers b
            ("/info", "info", true),
            ("/info", "x/info", false),
            ("a/**/z", "a/b/c/z", true),
            ("logs/***", "logs", true),
            ("logs/***", "logs/x/y", true),
            ("x[!ab]", "xc", true),
            ("x[!ab]", "xa", false),
        ];
        for (glob, path, want) in cases {
            let re = Regex::new(&glob_to_regex(glob)).unwrap();
            assert_eq!(re.is_match(path), want, "{glob} on {path}");
        }
    }
}
