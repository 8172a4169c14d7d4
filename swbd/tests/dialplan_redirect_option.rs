//! The `dial` action's `redirect` option: `follow` (default) or `pass`,
//! anything else refused at load with FILE:LINE:COLUMN.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use swbd::dialplan::{Action, Dialplan, DialplanContext, Redirect};

fn ctx() -> DialplanContext {
    DialplanContext {
        gateways: Vec::new(),
        audio_dir: None,
    }
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("swbd-redirect-opt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn dial_redirect(plan: &Dialplan) -> Redirect {
    let route = plan.routes().first().expect("a route");
    match route.actions.first() {
        Some(Action::Dial { redirect, .. }) => *redirect,
        other => panic!("not a dial: {other:?}"),
    }
}

#[test]
fn redirect_defaults_to_follow_and_pass_is_read() {
    for (text, want) in [
        ("      - dial: { target: \"user/1\" }\n", Redirect::Follow),
        (
            "      - dial: { target: \"user/1\", redirect: follow }\n",
            Redirect::Follow,
        ),
        (
            "      - dial: { target: \"user/1\", redirect: pass }\n",
            Redirect::Pass,
        ),
        // Block style (the fast path reads it).
        (
            "      - dial:\n          target: user/1\n          redirect: pass\n",
            Redirect::Pass,
        ),
    ] {
        let yaml = format!("version: 1\nroutes:\n  - id: r\n    match: {{}}\n    actions:\n{text}");
        let path = write("ok.yaml", &yaml);
        let plan = Dialplan::load(&path, &ctx()).expect("valid plan");
        assert_eq!(dial_redirect(&plan), want, "{text}");
    }
}

#[test]
fn unknown_redirect_mode_is_refused_with_its_location() {
    let yaml = "version: 1\nroutes:\n  - id: r\n    match: {}\n    actions:\n      - dial: { target: \"user/1\", redirect: bounce }\n";
    let path = write("bad-redirect.yaml", yaml);
    let errors = match Dialplan::load(&path, &ctx()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    let text = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("bad-redirect.yaml:6:"), "{text}");
    assert!(text.contains("bounce"), "{text}");
    assert!(text.contains("follow") && text.contains("pass"), "{text}");
}
