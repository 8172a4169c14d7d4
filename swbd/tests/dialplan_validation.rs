//! Every kind of dialplan error, one fixture each under
//! `testdata/dialplans/bad-*.yaml`, located to the exact line and column.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};

use swbd::dialplan::{Dialplan, DialplanContext, check_file};
use switchboard_proto::support::yaml::FileError;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn ctx() -> DialplanContext {
    DialplanContext {
        gateways: vec!["carrier-a".into()],
        audio_dir: Some(root().join("testdata/dialplans/audio")),
    }
}

fn errors_of(name: &str) -> Vec<FileError> {
    let path = root().join("testdata/dialplans").join(name);
    match Dialplan::load(&path, &ctx()) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e,
    }
}

/// (fixture, LINE:COL, message substring) for single-error fixtures.
const CASES: &[(&str, &str, &str)] = &[
    ("bad-syntax.yaml", "5:5", "did not find expected ',' or '}'"),
    (
        "bad-unknown-key.yaml",
        "5:5",
        "unknown field `actoins`, expected one of",
    ),
    (
        "bad-unknown-action.yaml",
        "7:9",
        "unknown variant `transfer`, expected one of answer, playback, dial, hangup, sleep, set",
    ),
    (
        "bad-regex.yaml",
        "5:26",
        "bad regex \"9(\\\\d+\": found open group without closing ')'",
    ),
    (
        "bad-glob.yaml",
        "5:20",
        "bad glob \"1[0-9\": `[` is never closed by `]`",
    ),
    (
        "bad-duplicate-id.yaml",
        "6:9",
        "duplicate route id \"extensions\" (first defined at line 3)",
    ),
    (
        "bad-unknown-gateway.yaml",
        "7:19",
        "unknown gateway \"carrier-z\" (configured gateways: carrier-a)",
    ),
    (
        "bad-undefined-variable.yaml",
        "7:19",
        "undefined variable ${extension} (defined here: caller, destination, domain, from_domain, referrer, route_id, source_ip)",
    ),
    (
        "bad-missing-audio.yaml",
        "8:26",
        "playback file \"missing.wav\" not found under audio directory",
    ),
    (
        "bad-audio-path.yaml",
        "6:26",
        "must be a relative path inside the audio directory",
    ),
    (
        "bad-cidr.yaml",
        "5:28",
        "bad source network \"10.0.0.0/40\": prefix length must be 0-32",
    ),
    (
        "bad-target.yaml",
        "6:37",
        "bad dial target \"tel:+15551234\": unknown kind of target (expected user/NAME, sip:URI or gateway/NAME[/USER])",
    ),
    (
        "bad-status.yaml",
        "6:24",
        "bad SIP status 200: expected a failure status 400-699",
    ),
    (
        "bad-duration.yaml",
        "6:16",
        "\"3 days\" is not a duration (expected like 30s, 500ms, 2m)",
    ),
    (
        "bad-version.yaml",
        "1:10",
        "unsupported dialplan version 2 (expected 1)",
    ),
    (
        "bad-set-builtin.yaml",
        "6:15",
        "cannot set built-in variable \"destination\"",
    ),
    ("bad-no-actions.yaml", "5:14", "route has no actions"),
    (
        "bad-both-destinations.yaml",
        "6:26",
        "give either `destination` (glob) or `destination_regex`, not both",
    ),
    (
        "bad-dial-targets.yaml",
        "6:9",
        "dial needs exactly one of `target: X` or a non-empty `targets: [X, Y]`",
    ),
    ("bad-template.yaml", "6:24", "`${` is never closed by `}`"),
];

#[test]
fn dialplan_each_fixture_reports_its_error_at_the_right_place() {
    let mut failures = Vec::new();
    for (file, at, msg) in CASES {
        let errs = errors_of(file);
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let ok = errs.len() == 1
            && errs.first().is_some_and(|e| {
                format!("{}:{}", e.line, e.column) == *at
                    && e.message.contains(msg)
                    && e.file.ends_with(file)
            });
        if !ok {
            failures.push(format!("{file}: want {at} {msg:?}, got {shown:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dialplan_every_semantic_error_in_a_file_is_reported() {
    let errs = errors_of("bad-many.yaml");
    let got: Vec<String> = errs
        .iter()
        .map(|e| format!("{}:{}", e.line, e.column))
        .collect();
    assert_eq!(
        got,
        ["5:32", "7:9", "8:41", "10:24", "11:26", "12:24"],
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .all(|e| e.to_string().contains("bad-many.yaml:"))
    );
}

#[test]
fn dialplan_every_bad_fixture_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("testdata/dialplans"))
        .expect("fixtures dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("bad-") && n.ends_with(".yaml"))
        .collect();
    names.sort();
    for n in &names {
        assert!(
            n == "bad-many.yaml" || CASES.iter().any(|(f, _, _)| f == n),
            "{n} has no row in CASES"
        );
    }
    assert!(names.len() > CASES.len());
}

#[test]
fn dialplan_missing_audio_is_not_checked_without_an_audio_dir() {
    let path = root().join("testdata/dialplans/bad-missing-audio.yaml");
    let ctx = DialplanContext {
        audio_dir: None,
        ..ctx()
    };
    let summary = check_file(&path, &ctx).expect("accepted without an audio dir");
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("playback files were not checked")),
        "{summary}"
    );
}

#[test]
fn dialplan_unreadable_file_is_an_error_not_a_panic() {
    let errs = check_file(Path::new("/nonexistent/dialplan.yaml"), &ctx()).expect_err("refused");
    assert_eq!(errs.len(), 1);
    assert!(
        errs.first()
            .is_some_and(|e| e.message.contains("no such file"))
    );
}
