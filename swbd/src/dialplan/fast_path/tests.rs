//! Unit tests of the fast path: it gives what serde-saphyr gives, or declines.

use super::*;

/// The fast path's result, and serde-saphyr's, as Debug text.
fn both(yaml: &str) -> (Option<String>, Option<String>) {
    let fast = parse(yaml).map(|f| format!("{f:?}"));
    let slow = serde_saphyr::from_str::<DialplanFile>(yaml)
        .ok()
        .map(|f| format!("{f:?}"));
    (fast, slow)
}

/// Taken, and identical to serde-saphyr, spans included.
#[track_caller]
fn same(yaml: &str) {
    let (fast, slow) = both(yaml);
    assert!(fast.is_some(), "declined:\n{yaml}");
    assert_eq!(fast, slow, "for:\n{yaml}");
}

#[track_caller]
fn declined(yaml: &str) {
    let (fast, _) = both(yaml);
    assert_eq!(fast, None, "taken:\n{yaml}");
}

const HEAD: &str = "version: 1\nroutes:\n";

fn one_route(body: &str) -> String {
    format!("{HEAD}  - id: a\n{body}")
}

#[test]
fn block_and_flow_collections() {
    same("version: 1\n");
    same("version: 1\nroutes: []\nno_match: {code: 480, reason: Busy Now}\n");
    same(&one_route("    match: {}\n    actions: [answer]\n"));
    same(&one_route(
        "    match:\n      destination: \"1*\"\n      source: [10.0.0.0/8, '::/0']\n    actions:\n      - answer\n      - hangup: {code: 486}\n",
    ));
    // Indentless sequences, for routes and for actions.
    same(
        "version: 1\nroutes:\n- id: a\n  match: {}\n  actions:\n  - answer\n  - sleep: 2\n- id: b\n  match: {caller: x}\n  actions: [answer]\n",
    );
    // Block mappings inside actions.
    same(&one_route(
        "    match: {}\n    actions:\n      - dial:\n          target: \"user/${destination}\"\n          timeout: 25s\n          on_failure: stop\n      - hangup:\n          code: 480\n          reason: Later\n",
    ));
    // Flow mappings as sequence items.
    same(&one_route(
        "    match: {}\n    actions: [{hangup: {code: 404}}, {sleep: 1.5s}]\n",
    ));
    // Empty flow collections and extra spaces.
    same(&one_route(
        "    match: {  }\n    actions: [ answer ,  {set: { a: x ,b: \"y\" }} ]\n",
    ));
}

#[test]
fn scalars_and_escapes() {
    same(&one_route(
        "    name: it's a 'name', with a#hash and a:colon # comment\n    match: {destination: '1''2*', caller: \"\\x41\\u00e9\\\\\\\"\\t\"}\n    actions: [answer]\n",
    ));
    same(&one_route(
        "    name: é unicode ☎\n    match: {domain: \"*.exämple.com\"}\n    actions:\n      - set: {v: \"☎${caller}\", w: sip:a@b}\n      - playback: {file: \"ü.wav\", loop: false}\n",
    ));
    // Numbers and booleans where strings are wanted stay strings.
    same(&one_route(
        "    name: 123\n    match: {destination: 1*, caller: true}\n    actions: [{set: {a: 1, b: 1.5}}]\n",
    ));
    same(&one_route(
        "    priority: -5\n    enabled: false\n    match: {}\n    actions: [{sleep: 30}, {sleep: 500ms}, {sleep: \"2m\"}, {sleep: 1.25h}]\n",
    ));
}

#[test]
fn comments_and_blank_lines() {
    same(
        "version: 1\nroutes:\n  - id: a\n    match:\n\n      # why\n      caller: \"1*\"   \n    actions:\n      # first\n\n      - answer   \n      -   hangup:   {code: 480}  # end\n",
    );
    same("version: 1\nroutes:\n- id: a\n  match: {}\n  actions:\n  # first\n  - answer\n");
    same(
        "# top\n\nversion: 1 # one\n\n# routes\nroutes:\n  # first\n\n  - id: a # id\n    # inside\n    match: {} # m\n    actions: # a\n      - answer # x\n   # odd indent comment\n",
    );
}

#[test]
fn exotic_yaml_is_declined() {
    let body = "    match: {}\n    actions: [answer]\n";
    for doc in [
        format!("---\n{HEAD}"),
        format!("%YAML 1.2\n---\n{HEAD}"),
        format!("{HEAD}  - id: &x a\n{body}"),
        format!("{HEAD}  - id: !!str a\n{body}"),
        format!("{HEAD}  - id: |\n      a\n{body}"),
        format!("{HEAD}  - id: >\n      a\n{body}"),
        format!("{HEAD}  - id: a\n    name: two\n      lines\n{body}"),
        format!("{HEAD}  - id: \"a\n      b\"\n{body}"),
        format!(
            "{HEAD}  - id: a\n    match: {{destination: x,\n      caller: y}}\n    actions: [answer]\n"
        ),
        format!("{HEAD}  - ? id\n    : a\n{body}"),
        format!("{HEAD}  - \"id\": a\n{body}"),
        format!("{HEAD}  -\n    id: a\n{body}"),
        format!("{HEAD}\t- id: a\n{body}"),
        "version: 1\r\nroutes: []\r\n".to_string(),
        "\u{feff}version: 1\n".to_string(),
        format!("{HEAD}  - id: a\n    id: b\n{body}"),
        format!("{HEAD}  - id: a\n    bogus: b\n{body}"),
        format!("{HEAD}  - id: a\n    name:\n{body}"),
        format!("{HEAD}  - id: ~\n{body}"),
        format!("{HEAD}  - id: null\n{body}"),
        format!("{HEAD}  - id: a\n    priority: 0x10\n{body}"),
        format!("{HEAD}  - id: a\n    priority: 010\n{body}"),
        format!("{HEAD}  - id: a\n    priority: \"5\"\n{body}"),
        format!("{HEAD}  - id: a\n    enabled: yes\n{body}"),
        format!("{HEAD}  - id: a\n    enabled: True\n{body}"),
        format!("{HEAD}  - id: a\n    match: {{}}\n    actions: [{{sleep: 2d}}]\n"),
        format!("{HEAD}  - id: a\n    match: {{}}\n    actions: [\"answer\"]\n"),
        format!("{HEAD}  - id: a\n    match: {{}}\n    actions: [answer,]\n"),
        format!("{HEAD}  - id: a\n    match: {{}}\n    actions: [sleep: 1]\n"),
        format!("{HEAD}  - id: a\n    match: {{destination: \"\\q\"}}\n    actions: [answer]\n"),
        format!("{HEAD}  - id: a\n    match: {{}}\n    actions: [{{set: {{a: x, a: y}}}}]\n"),
        format!(
            "{HEAD}  - id: a\n    match: {{}}\n    actions: [{{dial: {{on_failure: Stop}}}}]\n"
        ),
        "version: 1\nversion: 1\n".to_string(),
        "  version: 1\n".to_string(),
        String::new(),
    ] {
        declined(&doc);
    }
}

#[test]
fn locations_are_serde_saphyrs() {
    let yaml = "version: 1\nroutes:\n  - id: é\n    match: {destination: \"ü*\"}\n    actions:\n      - set: {x: \"${caller}\"}\n";
    let f = parse(yaml).expect("taken");
    let r = f.routes.first().expect("route");
    let d = r.match_.destination.as_ref().expect("destination");
    assert_eq!((d.referenced.line(), d.referenced.column()), (4, 26));
    assert_eq!(d.referenced.span().byte_len(), Some(5));
    assert_eq!(d.referenced.span().len(), 4);
    same(yaml);
}

/// Eight nodes a route (map, 3 keys, id, match map, actions list,
/// `answer`) plus five (root map, 2 keys, version, routes list).
fn nodes_plan(routes: usize) -> String {
    let mut y = String::from("version: 1\nroutes:\n");
    for i in 0..routes {
        y.push_str(&format!(
            "  - id: r{i}\n    match: {{}}\n    actions: [answer]\n"
        ));
    }
    y
}

#[test]
fn budget_sized_documents_are_left_to_serde() {
    // 248,997 nodes: both read it.
    let below = nodes_plan((MAX_NODES - 5) / 8);
    assert!(parse(&below).is_some());
    assert!(serde_saphyr::from_str::<DialplanFile>(&below).is_ok());
    // 250,005 nodes: over serde-saphyr's budget, so declined.
    let over = nodes_plan(31_250);
    assert!(parse(&over).is_none());
    assert!(serde_saphyr::from_str::<DialplanFile>(&over).is_err());
}
