//! Property tests of both config parsers (proptest, a bounded number of cases so that
//! `cargo test` stays well under a second or two): whatever the bytes — arbitrary ones,
//! or the shipped `init/syncd.toml` and `init/confxml.xml` truncated, cut, spliced, with
//! bytes or tokens inserted and lines uncommented, repeated or swapped — `parse`
//! returns instead of panicking, and every problem it reports has a position inside the
//! file, shown as `FILE:LINE:COL: message` with only indented detail lines after it.
//! Reads only (a source path is looked at, never written).

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as Cases;

use super::{parse, sersync};

/// The shipped examples, with their source replaced by a directory that exists
/// everywhere, so that the mutations reach the checks after the source's.
fn shipped_toml() -> Vec<u8> {
    include_str!("../../../init/syncd.toml")
        .replace("source = \"/data\"", "source = \"/tmp\"")
        .into_bytes()
}

fn shipped_xml() -> Vec<u8> {
    include_str!("../../../init/confxml.xml")
        .replace("watch=\"/data\"", "watch=\"/tmp\"")
        .into_bytes()
}

/// Tokens that mean something to one of the two syntaxes or to a value's check.
const TOKENS: &[&str] = &[
    "[[sync]]\n",
    "[[sync.target]]\n",
    "[sync.hooks.command]\n",
    "\"",
    "'''",
    "\"\"\"",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "\n",
    "\r\n",
    "\t",
    "<",
    ">",
    "/>",
    "</sersync>",
    "<remote ip=\"h\" name=\"m\"/>",
    "<localpath watch=\"/tmp\">",
    "&amp;",
    "&#0;",
    "<!--",
    "<![CDATA[",
    "\u{feff}",
    "é",
    "\u{0}",
    "\u{ff}",
    "-1",
    "0",
    "99999999999999999999",
    "1e400",
    "\"1s\"",
    "\"0\"",
    "true",
    "rsync://u:pw@h:99999/m",
    "u@h::",
    "::",
    "@",
    "/",
    "(",
    "\\",
];

#[derive(Debug, Clone)]
enum Edit {
    Truncate(Index),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Token(Index, &'static str),
    Byte(Index, u8),
    Uncomment(Index),
    RepeatLine(Index),
    SwapLines(Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Token(i, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        any::<Index>().prop_map(Edit::Uncomment),
        any::<Index>().prop_map(Edit::RepeatLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

/// The lines of `text`, each with its `\n`.
fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply(text: &mut Vec<u8>, e: &Edit) {
    let at = |i: &Index, text: &Vec<u8>| i.index(text.len() + 1);
    match e {
        Edit::Truncate(i) => text.truncate(at(i, text)),
        Edit::Delete(i, n) => {
            let from = at(i, text);
            let to = (from + n).min(text.len());
            text.drain(from..to);
        }
        Edit::Insert(i, bytes) => {
            let p = at(i, text);
            text.splice(p..p, bytes.iter().copied());
        }
        Edit::Token(i, t) => {
            let p = at(i, text);
            text.splice(p..p, t.bytes());
        }
        Edit::Byte(i, b) if !text.is_empty() => {
            let p = i.index(text.len());
            text[p] = *b;
        }
        Edit::Byte(..) => {}
        Edit::Uncomment(i) | Edit::RepeatLine(i) | Edit::SwapLines(i, _) => {
            let mut ls = lines(text);
            if ls.is_empty() {
                return;
            }
            let n = i.index(ls.len());
            match e {
                Edit::Uncomment(_) => {
                    if let Some(rest) = ls[n].strip_prefix(b"# ") {
                        ls[n] = rest.to_vec();
                    }
                }
                Edit::RepeatLine(_) => ls.insert(n, ls[n].clone()),
                Edit::SwapLines(_, j) => {
                    let m = j.index(ls.len());
                    ls.swap(n, m);
                }
                _ => unreachable!("only line edits reach here"),
            }
            *text = ls.concat();
        }
    }
}

/// `parse` returned (a panic fails the case), and an error has every problem at a
/// line and column inside the text as the loader read it.
fn check(text: &[u8], file: &str) -> Result<(), TestCaseError> {
    let Err(err) = parse(text, Path::new(file)) else {
        return Ok(());
    };
    let read = if file.ends_with(".xml") {
        sersync::decode(text)
    } else {
        String::from_utf8_lossy(text).into_owned()
    };
    let file_lines: Vec<&str> = read.split('\n').collect();
    prop_assert!(!err.problems.is_empty());
    for p in &err.problems {
        let Some(pos) = p.pos else {
            return Err(TestCaseError::fail(format!("no position: {p:?}")));
        };
        prop_assert!(
            pos.line >= 1 && pos.line <= file_lines.len(),
            "line {} of {}: {p:?}",
            pos.line,
            file_lines.len()
        );
        let width = file_lines[pos.line - 1].chars().count();
        prop_assert!(
            pos.col >= 1 && pos.col <= width + 1,
            "col {} of a {width}-character line: {p:?}",
            pos.col
        );
    }
    for line in err.to_string().lines() {
        prop_assert!(
            line.starts_with(&format!("{file}:")) || line.starts_with("  "),
            "a line that is neither positioned nor detail: {line:?}\n{err}"
        );
    }
    Ok(())
}

/// `n` cases, or `$PROPTEST_CASES` for a longer search
/// (`PROPTEST_CASES=100000 cargo test -p syncd-worker --lib config::fuzz`).
fn cases(n: u32) -> Cases {
    let default = Cases::default();
    Cases {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            n
        },
        // Nothing written into the source tree; a failure prints its input.
        failure_persistence: None,
        ..default
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_text_as_toml(text in any::<String>()) {
        check(text.as_bytes(), "syncd.toml")?;
    }

    #[test]
    fn arbitrary_bytes_as_either_format(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        xml in any::<bool>(),
    ) {
        check(&bytes, if xml { "confxml.xml" } else { "syncd.toml" })?;
    }

    #[test]
    fn the_shipped_toml_edited(edits in prop::collection::vec(edit(), 1..6)) {
        check(&edited(shipped_toml(), &edits), "syncd.toml")?;
    }

    #[test]
    fn the_shipped_confxml_edited(edits in prop::collection::vec(edit(), 1..6)) {
        check(&edited(shipped_xml(), &edits), "confxml.xml")?;
    }
}

fn edited(mut text: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        apply(&mut text, e);
    }
    text
}

#[test]
fn the_shipped_examples_load_unedited() {
    // The mutations start from valid files.
    for (text, file) in [
        (shipped_toml(), "syncd.toml"),
        (shipped_xml(), "confxml.xml"),
    ] {
        if let Err(e) = parse(&text, Path::new(file)) {
            panic!("{file}: {e}");
        }
    }
}
