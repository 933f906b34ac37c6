//! The `syncd.toml(5)` man page, made from the commented template `init/syncd.toml` (the
//! file the packages install as `/etc/syncd/syncd.toml`): one source for both, so the
//! reference cannot drift from the template. Pure: text in, roff out.
//!
//! How the template reads (and must keep reading): a header comment up to the first blank
//! line (the page's DESCRIPTION, after its first line); then settings, each a `key = value`
//! line, or `# key = value` when commented out, with the comment lines just above it as
//! its description; table headers (`[inotify]`, `[[sync]]`, or `# [sync.hooks.http]`)
//! start a subsection, the comment just above a header introduces it. A comment followed
//! by a blank line is a paragraph of its own. Comment lines keep their line breaks when
//! they are aligned (two spaces in a row, or indented); the others are filled.

/// The template the page is made from, as the packages install it.
pub const TEMPLATE: &str = include_str!("../../init/syncd.toml");

/// One line of the template, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    /// A comment line's text, without `# ` (empty for a bare `#`).
    Prose(&'a str),
    /// `key = value`, or `# key = value` (commented out), with a trailing `# note` if any.
    Setting {
        key: &'a str,
        value: &'a str,
        note: Option<&'a str>,
    },
    /// `[table]` or `[[array]]`, or the same commented out.
    Header(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    let line = line.trim_end();
    if line.is_empty() {
        return Line::Blank;
    }
    let (body, commented) = match line.strip_prefix('#') {
        Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), true),
        None => (line, false),
    };
    if is_header(body) {
        return Line::Header(body);
    }
    if let Some((key, rest)) = body.split_once(" = ") {
        let key_like = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if key_like && !rest.is_empty() {
            let (value, note) = match rest.split_once("  #") {
                Some((v, n)) => (v.trim_end(), Some(n.trim())),
                None => (rest, None),
            };
            return Line::Setting { key, value, note };
        }
    }
    if commented {
        Line::Prose(body)
    } else {
        // A line the template does not use: shown as it is rather than dropped.
        Line::Prose(line)
    }
}

fn is_header(s: &str) -> bool {
    let inner = s
        .strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .or_else(|| s.strip_prefix('[').and_then(|r| r.strip_suffix(']')));
    inner.is_some_and(|i| {
        !i.is_empty()
            && i.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
    })
}

/// Roff-escape one line of text: backslashes, hyphens (so they are not hyphenation
/// points and copy as ASCII), and a leading control character.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    if text.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

/// A comment line that is laid out by hand (a table, a command, an indented
/// continuation): it keeps its own line.
fn is_aligned(text: &str) -> bool {
    text.starts_with(' ') || text.trim_start().contains("  ")
}

/// Roff for paragraphs of comment text (each paragraph a list of lines).
fn prose(out: &mut String, lines: &[&str]) {
    for text in lines {
        if text.is_empty() {
            out.push_str(".PP\n");
        } else if is_aligned(text) {
            // No filling, no adjusting: the spaces stay as written.
            out.push_str(".nf\n");
            out.push_str(&esc(text));
            out.push_str("\n.fi\n");
        } else {
            out.push_str(&esc(text));
            out.push('\n');
        }
    }
}

/// The man page `syncd.toml.5` for `version`, from `template` (normally [`TEMPLATE`]).
pub fn render(template: &str, version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH SYNCD.TOML 5 \"\" \"syncd {}\" \"File Formats\"\n",
        esc(version)
    ));
    // Left-aligned, unhyphenated: the text is full of paths, keys and commands.
    out.push_str(".nh\n.ad l\n");
    out.push_str(".SH NAME\nsyncd.toml \\- syncd configuration file\n");
    out.push_str(".SH SYNOPSIS\n/etc/syncd/syncd.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    let mut lines = template.lines().map(classify).peekable();
    // The header comment: its first line names the file (the NAME above says it).
    let mut first = true;
    let mut header: Vec<&str> = Vec::new();
    while let Some(Line::Prose(text)) = lines.peek().cloned() {
        lines.next();
        if !std::mem::take(&mut first) {
            header.push(text);
        }
    }
    while header.first().is_some_and(|t| t.is_empty()) {
        header.remove(0);
    }
    prose(&mut out, &header);
    out.push_str(".SH SETTINGS\n");
    let mut pending: Vec<&str> = Vec::new();
    for line in lines {
        match line {
            Line::Blank => {
                if !pending.is_empty() {
                    out.push_str(".PP\n");
                    prose(&mut out, &pending);
                    pending.clear();
                }
            }
            Line::Prose(text) => pending.push(text),
            Line::Header(name) => {
                out.push_str(&format!(".SS \"{}\"\n", esc(name)));
                if !pending.is_empty() {
                    out.push_str(".PP\n");
                    prose(&mut out, &pending);
                    pending.clear();
                }
            }
            Line::Setting { key, value, note } => {
                out.push_str(&format!(".TP\n\\fB{}\\fR = {}\n", esc(key), esc(value)));
                prose(&mut out, &pending);
                pending.clear();
                if let Some(note) = note {
                    prose(&mut out, &[note]);
                }
            }
        }
    }
    if !pending.is_empty() {
        out.push_str(".PP\n");
        prose(&mut out, &pending);
    }
    out.push_str(concat!(
        ".SH FILES\n",
        ".TP\n/etc/syncd/syncd.toml\n",
        "The configuration, installed as the template this page is made from.\n",
        ".TP\n/usr/share/doc/syncd/examples/\n",
        "More examples: an NFS source, and sersync's confxml.xml, which syncd also reads.\n",
        ".SH \"SEE ALSO\"\n",
        "\\fBsyncd\\fR(1), \\fBsyncd\\-check\\fR(1), \\fBsyncd\\-reload\\fR(1), ",
        "\\fBsyncd\\-worker\\fR(1), \\fBrsync\\fR(1)\n",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's text as a reader's eyes see the source lines: escapes undone, font
    /// changes and macros' names dropped.
    fn unescaped(page: &str) -> Vec<String> {
        page.lines()
            .map(|l| {
                let l = l
                    .replace("\\fB", "")
                    .replace("\\fR", "")
                    .replace("\\-", "-")
                    .replace("\\e", "\\")
                    .replace("\\&", "");
                match l.strip_prefix(".SS ") {
                    Some(h) => h.trim_matches('"').to_owned(),
                    None => l,
                }
            })
            .collect()
    }

    #[test]
    fn every_line_of_the_template_is_on_the_page() {
        let page = render(TEMPLATE, "9.9.9");
        let page_lines = unescaped(&page);
        let mut missing = Vec::new();
        // The first line names the file; NAME and SYNOPSIS say it.
        for line in TEMPLATE.lines().skip(1) {
            let text = line.trim();
            let text = text
                .strip_prefix("# ")
                .or_else(|| text.strip_prefix('#'))
                .unwrap_or(text);
            let text = text.split("  #").next().unwrap_or(text).trim();
            if text.is_empty() {
                continue;
            }
            if !page_lines.iter().any(|p| p.contains(text)) {
                missing.push(text.to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "lines of init/syncd.toml not on the page:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn every_setting_is_a_tagged_entry_in_its_section() {
        let page = render(TEMPLATE, "9.9.9");
        for needle in [
            ".TP\n\\fBstate_dir\\fR = \"/var/lib/syncd\"\n",
            ".TP\n\\fBpid_file\\fR = \"/run/syncd/syncd.pid\"\n",
            ".SS \"[inotify]\"\n",
            ".SS \"[[sync.target]]\"\n",
            ".SS \"[sync.hooks.http]\"\n",
            ".TP\n\\fBmodify\\fR = false\nIN_MODIFY fires on every write",
            ".TP\n\\fBinclude\\fR = ['\\e.php$']\nonly paths matching one of these; default: all\n",
        ] {
            assert!(page.contains(needle), "{needle:?} not in:\n{page}");
        }
        let keys = TEMPLATE
            .lines()
            .filter(|l| matches!(classify(l), Line::Setting { .. }))
            .count();
        assert_eq!(page.matches(".TP\n\\fB").count(), keys, "{page}");
        assert!(keys > 40, "only {keys} settings found in the template");
        // The header comment is the description, without the file's title line.
        let desc = page.split(".SH DESCRIPTION\n").nth(1).expect("DESCRIPTION");
        assert!(
            desc.starts_with("Every key is shown with its default."),
            "{desc}"
        );
        assert!(!page.contains("syncd's configuration."), "{page}");
    }

    #[test]
    fn lines_are_classified_as_the_template_uses_them() {
        assert_eq!(classify(""), Line::Blank);
        assert_eq!(classify("#"), Line::Prose(""));
        assert_eq!(classify("# A short name."), Line::Prose("A short name."));
        assert_eq!(classify("[[sync]]"), Line::Header("[[sync]]"));
        assert_eq!(
            classify("# [sync.hooks.command]"),
            Line::Header("[sync.hooks.command]")
        );
        assert_eq!(
            classify("max_batch = 20000"),
            Line::Setting {
                key: "max_batch",
                value: "20000",
                note: None
            }
        );
        assert_eq!(
            classify("# timeout = \"60s\""),
            Line::Setting {
                key: "timeout",
                value: "\"60s\"",
                note: None
            }
        );
        // Prose that merely mentions an assignment is prose.
        assert_eq!(
            classify("# (lsyncd's maxProcesses = 1). Between 1 and 8."),
            Line::Prose("(lsyncd's maxProcesses = 1). Between 1 and 8.")
        );
        assert_eq!(esc(".x -y \\z"), "\\&.x \\-y \\ez");
    }
}
