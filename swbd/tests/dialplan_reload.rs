//! Live reload: plans swap atomically under running calls, a bad plan is
//! refused and the old one keeps running, and both are announced.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use swbd::dialplan::{
    CallControl, CallInfo, CallOutcome, ControlError, DialOutcome, Dialplan, DialplanContext,
    DialplanStore, ReloadSource, Target, execute,
};
use swbd::events::{Event, EventBus};
use tokio_util::sync::CancellationToken;

/// Plan `k`: every route of it says `k`, in a variable, a target and the
/// hangup reason, so a call that mixed two plans would show it.
fn plan_yaml(k: usize) -> String {
    format!(
        "version: 1\nroutes:\n  - id: plan-{k}\n    match: {{destination: \"1*\"}}\n    actions:\n      - set: {{tag: \"{k}\"}}\n      - sleep: 1ms\n      - dial: {{target: \"user/${{tag}}-{k}\"}}\n      - hangup: {{code: 480, reason: \"plan {k}\"}}\n"
    )
}

const BAD: &str =
    "version: 1\nroutes:\n  - id: x\n    match: {destination_regex: '(('}\n    actions: [answer]\n";

/// Always fails the dial and remembers the target.
#[derive(Default)]
struct Recorder {
    dialed: Vec<String>,
}

impl CallControl for Recorder {
    async fn answer(&mut self) -> Result<(), ControlError> {
        Ok(())
    }
    async fn play(&mut self, _: &str, _: bool) -> Result<(), ControlError> {
        Ok(())
    }
    async fn dial(&mut self, targets: &[Target], _: Duration) -> DialOutcome {
        self.dialed.extend(targets.iter().map(ToString::to_string));
        tokio::task::yield_now().await;
        DialOutcome::NoAnswer
    }
    async fn hangup(&mut self, _: u16, _: &str) {}
}

fn store(events: &EventBus) -> DialplanStore {
    let first = Dialplan::parse("plan-0", &plan_yaml(0), &DialplanContext::default())
        .expect("plan 0 loads");
    DialplanStore::new(first, None, DialplanContext::default(), events.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialplan_calls_never_see_a_torn_plan_while_plans_swap() {
    let events = EventBus::new();
    let store = store(&events);
    let versions: HashMap<String, usize> = (0..4)
        .map(|k| {
            let p =
                Dialplan::parse("x", &plan_yaml(k), &DialplanContext::default()).expect("loads");
            (p.version().hash.clone(), k)
        })
        .collect();
    let versions = Arc::new(versions);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));

    let mut callers = Vec::new();
    for _ in 0..8 {
        let (store, versions, stop, calls) =
            (store.clone(), versions.clone(), stop.clone(), calls.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let plan = store.current();
                let call = CallInfo {
                    destination: "1000".into(),
                    ..Default::default()
                };
                let mut rec = Recorder::default();
                let ex = execute(&plan, &call, &mut rec, &CancellationToken::new()).await;
                let k = *versions.get(&ex.dialplan_version).expect("a known version");
                assert_eq!(ex.route_id, Some(format!("plan-{k}")));
                assert_eq!(rec.dialed, [format!("user/{k}-{k}")]);
                assert_eq!(
                    ex.outcome,
                    CallOutcome::HungUp {
                        code: 480,
                        reason: format!("plan {k}")
                    }
                );
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let reloader = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut applied = 0;
            for i in 0..200 {
                if i % 5 == 4 {
                    let before = store.current().version().clone();
                    let errs = store
                        .reload(ReloadSource::Text {
                            name: "bad.yaml",
                            yaml: BAD,
                        })
                        .expect_err("bad plan refused");
                    assert!(!errs.is_empty());
                    assert_eq!(store.current().version(), &before, "old plan kept");
                } else {
                    let yaml = plan_yaml(i % 4);
                    store
                        .reload(ReloadSource::Text {
                            name: "good.yaml",
                            yaml: &yaml,
                        })
                        .expect("good plan applied");
                    applied += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            applied
        })
    };
    let applied = reloader.await.expect("reloader");
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.expect("caller task");
    }
    assert_eq!(applied, 160);
    assert!(calls.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn dialplan_a_call_keeps_the_plan_it_started_with() {
    let events = EventBus::new();
    let store = store(&events);
    let old = store.current();
    store
        .reload(ReloadSource::Text {
            name: "p1",
            yaml: &plan_yaml(1),
        })
        .expect("applied");
    let call = CallInfo {
        destination: "1000".into(),
        ..Default::default()
    };
    let mut rec = Recorder::default();
    let ex = execute(&old, &call, &mut rec, &CancellationToken::new()).await;
    assert_eq!(ex.route_id.as_deref(), Some("plan-0"));
    assert_eq!(
        store.current().routes().first().map(|r| r.id.as_str()),
        Some("plan-1")
    );
}

#[test]
fn dialplan_reloads_are_announced_and_bad_ones_change_nothing() {
    let events = EventBus::new();
    let mut rx = events.subscribe();
    let store = store(&events);
    let v0 = store.current().version().hash.clone();

    let errs = store
        .reload(ReloadSource::Text {
            name: "bad.yaml",
            yaml: BAD,
        })
        .expect_err("refused");
    assert!(
        errs.first()
            .is_some_and(|e| e.to_string().starts_with("bad.yaml:4:"))
    );
    assert_eq!(store.current().version().hash, v0);
    match &rx.try_recv().expect("event").1 {
        Event::DialplanRefused {
            version,
            source,
            errors,
        } => {
            assert_eq!(version, &v0);
            assert_eq!(source, "bad.yaml");
            assert_eq!(errors, &errs);
        }
        other => panic!("{other:?}"),
    }

    let v1 = store
        .reload(ReloadSource::Text {
            name: "p1.yaml",
            yaml: &plan_yaml(1),
        })
        .expect("applied");
    assert_ne!(v1.hash, v0);
    assert_eq!(store.current().version(), &v1);
    match &rx.try_recv().expect("event").1 {
        Event::DialplanApplied { version, source } => {
            assert_eq!(version, &v1.hash);
            assert_eq!(source, "p1.yaml");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dialplan_reload_configured_rereads_the_file() {
    let dir = std::env::temp_dir().join(format!("swbd-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan_yaml(2)).expect("write");
    let mut cfg = swbd::config::Config::default();
    cfg.dialplan.file = Some(file.clone());
    let events = EventBus::new();
    let store = DialplanStore::from_config(&cfg, events).expect("loads");
    assert_eq!(store.current().source(), file.display().to_string());
    assert_eq!(
        store.current().routes().first().map(|r| r.id.as_str()),
        Some("plan-2")
    );

    std::fs::write(&file, plan_yaml(3)).expect("write");
    store.reload(ReloadSource::Configured).expect("applied");
    assert_eq!(
        store.current().routes().first().map(|r| r.id.as_str()),
        Some("plan-3")
    );

    std::fs::write(&file, BAD).expect("write");
    let errs = store.reload(ReloadSource::Configured).expect_err("refused");
    assert!(
        errs.first()
            .is_some_and(|e| e.file == file.display().to_string())
    );
    assert_eq!(
        store.current().routes().first().map(|r| r.id.as_str()),
        Some("plan-3")
    );

    std::fs::remove_file(&file).expect("rm");
    let errs = store
        .reload(ReloadSource::Configured)
        .expect_err("missing file refused");
    assert!(
        errs.first()
            .is_some_and(|e| e.message.contains("cannot read"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dialplan_default_config_runs_the_embedded_plan() {
    let store = DialplanStore::from_config(&swbd::config::Config::default(), EventBus::new())
        .expect("loads");
    assert_eq!(store.current().source(), swbd::dialplan::DEFAULT_SOURCE);
    store.reload(ReloadSource::Configured).expect("re-applies");
}

#[tokio::test]
async fn dialplan_reload_async_runs_off_the_runtime() {
    let store = DialplanStore::from_config(&swbd::config::Config::default(), EventBus::new())
        .expect("loads");
    let v = store
        .reload_async(None)
        .await
        .expect("configured re-applied");
    assert_eq!(store.current().version(), &v);
    let errs = store
        .reload_async(Some("/nonexistent/plan.yaml".into()))
        .await
        .expect_err("refused");
    assert!(
        errs.first()
            .is_some_and(|e| e.file == "/nonexistent/plan.yaml")
    );
    assert_eq!(store.current().version(), &v);
}
