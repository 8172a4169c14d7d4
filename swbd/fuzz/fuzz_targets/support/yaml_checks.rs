//! Checks shared by the YAML file targets (config, users file).

use std::fmt::Write;

use switchboard_proto::support::yaml::FileError;

/// A YAML double-quoted scalar: printable ASCII verbatim, everything else
/// as a `\u`/`\U` escape, so no character can be folded or reinterpreted.
pub fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Every error names `file`, says something, and a located one points
/// inside `text` (YAML line breaks: LF, CR LF, lone CR).
pub fn errors_are_located(file: &str, text: &str, errors: &[FileError]) {
    assert!(!errors.is_empty());
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    for e in errors {
        assert_eq!(e.file, file);
        assert!(!e.message.trim().is_empty(), "{e:?}");
        if e.line > 0 {
            let line = e.line as usize;
            assert!(
                line <= lines.len() + 1,
                "{e} past the end ({} lines)",
                lines.len()
            );
            let width = lines.get(line - 1).map_or(0, |l| l.len());
            assert!(
                e.column as usize <= width + 1,
                "{e} past the end of its line ({width} bytes)"
            );
        }
    }
}

/// Tokens that stand as the value of one of `keys` in `text`: after the key,
/// a run of blanks, quotes and at least one `:`, a run of at least 8 ASCII alphanumerics that
/// occurs nowhere else in the text (so it is not also a user name).
pub fn secrets<'a>(text: &'a str, keys: &[&str]) -> Vec<&'a str> {
    let mut found = Vec::new();
    for key in keys {
        for (at, _) in text.match_indices(key) {
            let after = &text[at + key.len()..];
            let value = after.trim_start_matches([':', ' ', '\t', '"', '\'']);
            // Only `key: value` (a key that merely starts with `key` is not one).
            if !after[..after.len() - value.len()].contains(':') {
                continue;
            }
            let end = value
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(value.len());
            let token = &value[..end];
            if token.len() >= 8 && text.matches(token).count() == 1 {
                found.push(token);
            }
        }
    }
    found
}

/// No error message repeats a secret of the input.
pub fn no_secret_echoed(text: &str, keys: &[&str], errors: &[FileError]) {
    let secrets = secrets(text, keys);
    for e in errors {
        let shown = e.to_string();
        for s in &secrets {
            assert!(!shown.contains(s), "error echoes the secret {s:?}: {shown}");
        }
    }
}
