//! `swctl/JSON.md` is a contract: the keys it documents for `calls show`
//! are exactly the keys `calls show -o json` prints (issue #16 found them
//! apart). The doc is parsed, not copied, so editing either side alone
//! fails here.

use std::collections::BTreeSet;

use super::calls;
use crate::cli::Output;
use crate::fixtures;
use crate::views::CallView;

const DOC: &str = include_str!("../../JSON.md");

/// The section of JSON.md whose heading starts with `heading`.
fn section(heading: &str) -> &'static str {
    let start = DOC.find(heading).expect("section in JSON.md");
    let rest = &DOC[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// Backticked names in `text` outside parentheses.
fn names(text: &str) -> Vec<String> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for ch in text.chars() {
        match (ch, &mut cur) {
            ('(', None) => depth += 1,
            (')', None) => depth = depth.saturating_sub(1),
            ('`', None) if depth == 0 => cur = Some(String::new()),
            ('`', Some(name)) => {
                out.push(std::mem::take(name));
                cur = None;
            }
            (c, Some(name)) => name.push(c),
            _ => {}
        }
    }
    out
}

/// Top-level keys from the table's first column, and the keys listed in
/// the paragraph that starts with `` `{array}[]`: ``.
fn documented(sec: &str, array: &str) -> BTreeSet<String> {
    let para = format!("`{array}[]`:");
    let start = sec.find(&para).expect("paragraph");
    let text = &sec[start + para.len()..];
    let end = text.find("\n\n").unwrap_or(text.len());
    names(&text[..end]).into_iter().collect()
}

fn table_keys(sec: &str) -> BTreeSet<String> {
    sec.lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or_default();
            names(first)
        })
        .map(|k| k.trim_end_matches("[]").to_string())
        .collect()
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn calls_show_json_has_exactly_the_documented_keys() {
    let sec = section("## `swctl calls list` / `swctl calls show ID`");
    let mut c = fixtures::calls()[0].clone();
    c.ladder = fixtures::ladder();
    let text = calls::render_show(&CallView::new("pbx1", &c), Output::Json, 80).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let arr = v
        .as_array()
        .expect("an array, as JSON.md says of every listing");
    assert_eq!(arr.len(), 1);
    let call = &arr[0];
    assert_eq!(keys(call), table_keys(sec), "top-level keys vs JSON.md");
    assert_eq!(keys(&call["legs"][0]), documented(sec, "legs"), "legs[]");
    assert_eq!(
        keys(&call["ladder"][0]),
        documented(sec, "ladder"),
        "ladder[]"
    );

    // A call with no ladder kept still has the key in `show`...
    let c = fixtures::calls()[0].clone();
    let text = calls::render_show(&CallView::new("pbx1", &c), Output::Json, 80).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v[0]["ladder"], serde_json::json!([]));
    // ... and lists leave it out.
    let text =
        calls::render_list(&[CallView::new("pbx1", &c)], Output::Json, false, 80).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut listed = table_keys(sec);
    listed.remove("ladder");
    assert_eq!(keys(&v[0]), listed, "calls list keys vs JSON.md");
}

#[test]
fn the_doc_parser_reads_what_it_should() {
    assert_eq!(
        names("`role` (`a` \\| `b`), `sip_call_id`, `x` (`(nested)` `y`)"),
        ["role", "sip_call_id", "x"]
    );
}
