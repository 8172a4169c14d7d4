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

/// The values of `keys` anywhere in the YAML document `text` (read
/// untyped, so a file the typed loader refuses still shows its secrets), as
/// far as they are at least 8 characters long and written out exactly once
/// in the text (a secret equal to a user name may be named in an error; an
/// escaped one cannot be swapped, see [`no_secret_echoed`]).
pub fn secrets(text: &str, keys: &[&str]) -> Vec<String> {
    fn walk(v: &serde_json::Value, keys: &[&str], out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if keys.contains(&k.as_str()) {
                        match v {
                            serde_json::Value::String(s) => out.push(s.clone()),
                            serde_json::Value::Number(n) => out.push(n.to_string()),
                            _ => {}
                        }
                    }
                    walk(v, keys, out);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    walk(v, keys, out);
                }
            }
            _ => {}
        }
    }
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(&doc, keys, &mut found);
    found.retain(|s| s.chars().count() >= 8 && text.matches(s.as_str()).count() == 1);
    found
}

/// No error message repeats a secret of the input. A secret that shows up
/// in a message counts as echoed only if it is the input's doing: with its
/// letters and digits swapped (same length, same YAML structure) the input
/// must load to messages without it. Otherwise the secret merely equals
/// text the loader writes anyway (a fuzzer-made password
/// `expected mapping start` is no leak).
pub fn no_secret_echoed(
    text: &str,
    keys: &[&str],
    errors: &[FileError],
    load: impl Fn(&str) -> Vec<FileError>,
) {
    for s in secrets(text, keys) {
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        if !shown.iter().any(|m| m.contains(&s)) {
            continue;
        }
        let swapped: String = s
            .chars()
            .map(|c| match c {
                'Z' => 'Y',
                c if c.is_ascii_alphanumeric() => 'Z',
                c => c,
            })
            .collect();
        if swapped == s {
            continue;
        }
        let again: Vec<String> = load(&text.replacen(&s, &swapped, 1))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            again.iter().any(|m| m.contains(&s)),
            "error echoes the secret {s:?}: {shown:?}"
        );
    }
}
