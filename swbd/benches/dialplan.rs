//! Route lookup and reload time for a 10,000-route dialplan.
//!
//! `cargo bench -p swbd --bench dialplan`; numbers in
//! docs/BENCHMARKS.md.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use swbd::dialplan::{CallInfo, Dialplan, DialplanContext};

/// 10,000 routes: 40% exact, 30% prefix globs, 15% complex globs (`?`,
/// classes), 15% regexes with captures; every 10th has a caller
/// condition; priorities spread over 5 levels; a catch-all last.
fn big_plan_yaml(routes: usize) -> String {
    let mut y = String::with_capacity(routes * 160);
    y.push_str("version: 1\nroutes:\n");
    for i in 0..routes {
        let m = match i % 20 {
            0..=7 => format!("destination: \"2{i:05}\""),
            8..=13 => format!("destination: \"3{i:05}*\""),
            14..=16 => format!("destination: \"4{i:05}?[0-9]*\""),
            _ => format!("destination_regex: '5{i:05}(?P<ext>\\d+)'"),
        };
        let caller = if i % 10 == 9 { ", caller: \"1*\"" } else { "" };
        let target = if i % 20 >= 17 {
            "${ext}"
        } else {
            "${destination}"
        };
        y.push_str(&format!(
            "  - id: r{i}\n    priority: {}\n    match: {{{m}{caller}}}\n    actions:\n      - dial: {{target: \"user/{target}\", timeout: 20s}}\n      - hangup: {{code: 480}}\n",
            100 + (i % 5) * 10
        ));
    }
    y.push_str("  - id: catch-all\n    priority: 1000\n    match: {destination: \"*\"}\n    actions: [{hangup: {code: 404}}]\n");
    y
}

fn call(dest: &str) -> CallInfo {
    CallInfo {
        destination: dest.into(),
        caller: "1001".into(),
        domain: "pbx.example.com".into(),
        from_domain: "example.net".into(),
        source_ip: Some("10.0.0.5".parse().expect("ip")),
    }
}

fn bench(c: &mut Criterion) {
    let yaml = big_plan_yaml(10_000);
    let ctx = DialplanContext::default();
    let plan = Dialplan::parse("big.yaml", &yaml, &ctx).expect("big plan loads");
    assert!(
        Dialplan::parse_fast("big.yaml", &yaml, &ctx).is_some(),
        "the big plan takes the fast path"
    );

    let mut g = c.benchmark_group("lookup_10k");
    let cases = [
        ("exact", "200040", "r40"),
        ("prefix_glob", "3000089999", "r8"),
        ("complex_glob", "40001475", "r14"),
        ("regex_capture", "5099971234", "r9997"),
        ("miss_to_catch_all", "777", "catch-all"),
    ];
    for (name, dest, want) in cases {
        let c = call(dest);
        let got = plan.route(&c).map(|r| r.route.id.clone());
        assert_eq!(got.as_deref(), Some(want), "{name}");
        g.bench_function(name, |b| b.iter(|| black_box(plan.route(black_box(&c)))));
    }
    g.finish();

    let mut g = c.benchmark_group("reload_10k");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("parse_validate_index", |b| {
        b.iter(|| black_box(Dialplan::parse("big.yaml", black_box(&yaml), &ctx)))
    });
    // The same through serde-saphyr only (what `parse` did before the fast
    // path, and still does for files the fast path declines).
    g.bench_function("parse_validate_index_serde", |b| {
        b.iter(|| {
            black_box(Dialplan::parse_sequential(
                "big.yaml",
                black_box(&yaml),
                &ctx,
            ))
        })
    });
    // The fast path's YAML reading alone (typed, with spans).
    g.bench_function("fast_path_read_only", |b| {
        b.iter(|| black_box(swbd::dialplan::fast_path::parse(black_box(&yaml)).is_some()))
    });
    // The YAML parser alone, for the breakdown in docs/BENCHMARKS.md.
    g.bench_function("yaml_syntax_only", |b| {
        b.iter(|| {
            black_box(serde_saphyr::from_str::<serde::de::IgnoredAny>(black_box(&yaml)).is_ok())
        })
    });
    g.finish();

    let small = big_plan_yaml(1_000);
    let mut g = c.benchmark_group("reload_1k");
    g.bench_function("parse_validate_index", |b| {
        b.iter(|| black_box(Dialplan::parse("1k.yaml", black_box(&small), &ctx)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
