//! Deterministic fuzzing of the loader: thousands of random and mutated
//! YAML documents must each give a plan or located errors, never a panic.
//! Plans that load are then routed with random calls.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swbd::dialplan::{CallInfo, Dialplan, DialplanContext};

const KEYS: &[&str] = &[
    "version",
    "routes",
    "no_match",
    "id",
    "name",
    "priority",
    "enabled",
    "match",
    "actions",
    "destination",
    "destination_regex",
    "caller",
    "domain",
    "source",
    "answer",
    "playback",
    "dial",
    "hangup",
    "sleep",
    "set",
    "file",
    "loop",
    "target",
    "targets",
    "timeout",
    "on_failure",
    "code",
    "reason",
    "bogus",
];

const SCALARS: &[&str] = &[
    "1",
    "0",
    "-1",
    "404",
    "99999999999999999999",
    "true",
    "null",
    "~",
    "1.5",
    "30s",
    "500ms",
    "\"1*\"",
    "'1???'",
    "\"[0-9\"",
    "'(\\d+'",
    "'9(?P<n>\\d+)'",
    "\"*\"",
    "\"\"",
    "user/1000",
    "\"user/${destination}\"",
    "\"${1}\"",
    "\"${\"",
    "gateway/gw",
    "gateway/none/${n}",
    "sip:a@b",
    "10.0.0.0/8",
    "::/0",
    "next",
    "stop",
    "a.wav",
    "../x.wav",
    "\"\\u0000\"",
    "&a x",
    "*a",
    "!!str 5",
    "[]",
    "{}",
    "|\n  text",
    "'it''s'",
    "\"\\t\"",
];

const GOOD_DESTINATIONS: &[&str] = &[
    "destination: \"1*\"",
    "destination: \"500\"",
    "destination: \"[2-4]?*9\"",
    "destination_regex: '9(?P<n>\\d+)'",
    "destination_regex: '(1|2)\\d*'",
    "caller: \"1*\", source: [10.0.0.0/8]",
    "domain: \"*.example.com\"",
    "",
];

const GOOD_ACTIONS: &[&str] = &[
    "      - answer\n",
    "      - playback: {file: \"${destination}.wav\", loop: true}\n",
    "      - dial: {targets: [\"user/${destination}\", gateway/gw], timeout: 5s}\n",
    "      - dial: {target: \"sip:${caller}@example.com\", on_failure: stop}\n",
    "      - hangup: {code: 486}\n",
    "      - sleep: 250ms\n",
    "      - set: {a: \"x${caller}\", b: \"${a}$$\"}\n",
];

fn scalar(rng: &mut StdRng) -> String {
    SCALARS[rng.random_range(0..SCALARS.len())].to_string()
}

fn value(rng: &mut StdRng, depth: usize, indent: usize) -> String {
    match if depth > 3 { 0 } else { rng.random_range(0..4) } {
        0 | 1 => scalar(rng),
        2 => {
            // Flow sequence.
            let n = rng.random_range(0..4);
            let items: Vec<String> = (0..n).map(|_| scalar(rng)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => format!("\n{}", mapping(rng, depth + 1, indent + 2)),
    }
}

fn mapping(rng: &mut StdRng, depth: usize, indent: usize) -> String {
    let n = rng.random_range(1..5);
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for _ in 0..n {
        let key = KEYS[rng.random_range(0..KEYS.len())];
        if rng.random_bool(0.2) {
            out.push_str(&format!("{pad}{key}:\n{pad}  - {}\n", scalar(rng)));
        } else {
            out.push_str(&format!("{pad}{key}: {}\n", value(rng, depth, indent)));
        }
    }
    out
}

/// A plausible dialplan with random routes.
fn random_plan(rng: &mut StdRng) -> String {
    let mut y = String::from("version: 1\nroutes:\n");
    for i in 0..rng.random_range(0..6) {
        let id = if rng.random_bool(0.05) { 0 } else { i };
        y.push_str(&format!("  - id: r{id}\n"));
        y.push_str(&format!("    priority: {}\n", rng.random_range(-5..5)));
        let dest = if rng.random_bool(0.9) {
            GOOD_DESTINATIONS[rng.random_range(0..GOOD_DESTINATIONS.len())].to_string()
        } else {
            scalar(rng)
        };
        y.push_str(&format!("    match: {{{dest}}}\n"));
        y.push_str("    actions:\n");
        for _ in 0..rng.random_range(1..4) {
            if rng.random_bool(0.9) {
                y.push_str(GOOD_ACTIONS[rng.random_range(0..GOOD_ACTIONS.len())]);
                continue;
            }
            let action = [
                "answer", "playback", "dial", "hangup", "sleep", "set", "nope",
            ][rng.random_range(0..7)];
            match action {
                "answer" => y.push_str("      - answer\n"),
                "sleep" => y.push_str(&format!("      - sleep: {}\n", scalar(rng))),
                "set" => y.push_str(&format!("      - set: {{v: {}}}\n", scalar(rng))),
                a => y.push_str(&format!("      - {a}:\n{}", mapping(rng, 2, 10))),
            }
        }
    }
    y
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        if chars.is_empty() {
            break;
        }
        let at = rng.random_range(0..chars.len());
        match rng.random_range(0..6) {
            0 => {
                chars.remove(at);
            }
            1 => chars.insert(
                at,
                [
                    ':', '-', ' ', '\n', '{', '[', '"', '\'', '*', '&', '\t', '#', '$', '\u{feff}',
                    'é',
                ][rng.random_range(0..15)],
            ),
            2 => chars.truncate(at),
            3 => {
                let end = (at + rng.random_range(1..40)).min(chars.len());
                let dup: Vec<char> = chars.get(at..end).unwrap_or_default().to_vec();
                let to = rng.random_range(0..chars.len());
                for (i, c) in dup.into_iter().enumerate() {
                    chars.insert(to + i, c);
                }
            }
            4 => {
                if let Some(c) = chars.get_mut(at) {
                    *c = char::from(rng.random_range(0x20u8..0x7f));
                }
            }
            _ => {
                let s = scalar(rng);
                for (i, c) in s.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Iterations: `DIALPLAN_FUZZ_ITERS` (for longer runs), else `default`.
fn iterations(default: usize) -> usize {
    std::env::var("DIALPLAN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seed: `DIALPLAN_FUZZ_SEED`, else `default` (runs are deterministic).
fn seed(default: u64) -> u64 {
    std::env::var("DIALPLAN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let mut out = vec![swbd::dialplan::DEFAULT_YAML.to_string()];
    out.push(std::fs::read_to_string(root.join("dialplans/examples/office.yaml")).expect("office"));
    for e in std::fs::read_dir(root.join("testdata/dialplans"))
        .expect("fixtures")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "yaml") {
            out.push(std::fs::read_to_string(e.path()).expect("fixture"));
        }
    }
    out
}

fn check(yaml: &str, ctx: &DialplanContext, rng: &mut StdRng) -> bool {
    match Dialplan::parse("fuzz.yaml", yaml, ctx) {
        Ok(plan) => {
            for _ in 0..4 {
                let dest: String = (0..rng.random_range(0..8))
                    .map(|_| ['1', '2', '5', '9', '0', '+', '*', 'a', 'é'][rng.random_range(0..9)])
                    .collect();
                let call = CallInfo {
                    destination: dest.clone(),
                    caller: "1001".into(),
                    domain: "x.example.com".into(),
                    from_domain: "y.example.com".into(),
                    source_ip: Some("10.1.2.3".parse().expect("ip")),
                };
                let _ = plan.route(&call);
                let _ = plan.test_route(&dest, "1001", "bogus", "", "");
            }
            let _ = plan.to_proto();
            true
        }
        Err(errs) => {
            assert!(!errs.is_empty(), "refused without an error:\n{yaml}");
            for e in &errs {
                assert_eq!(e.file, "fuzz.yaml");
                assert!(!e.message.is_empty(), "empty message for:\n{yaml}");
            }
            false
        }
    }
}

#[test]
fn dialplan_random_and_mutated_documents_never_panic() {
    let ctx = DialplanContext {
        gateways: vec!["gw".into(), "carrier-a".into(), "carrier-b".into()],
        audio_dir: None,
    };
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(seed(0x5b_d1a1));
    let (mut ok, mut refused) = (0, 0);
    for i in 0..iterations(6000) {
        let doc = match i % 3 {
            0 => random_plan(&mut rng),
            1 => mapping(&mut rng, 0, 0),
            _ => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate(&mut rng, seed)
            }
        };
        if check(&doc, &ctx, &mut rng) {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    println!("{ok} loaded, {refused} refused");
    // Both paths were exercised.
    assert!(ok > 500, "only {ok} documents loaded");
    assert!(refused > 1000, "only {refused} documents refused");
}

/// Compare the parallel fast path with the sequential parse.
fn same_as_sequential(doc: &str, ctx: &DialplanContext, pieces: usize) -> bool {
    let Some(fast) = Dialplan::parse_in_pieces("fuzz.yaml", doc, ctx, pieces) else {
        return false;
    };
    let slow = Dialplan::parse_sequential("fuzz.yaml", doc, ctx);
    let view = |r: &Result<Dialplan, Vec<switchboard_proto::support::yaml::FileError>>| match r {
        Ok(p) => Ok((
            p.to_proto().routes,
            p.no_match().clone(),
            p.version().hash.clone(),
        )),
        Err(e) => Err(e.clone()),
    };
    assert_eq!(
        view(&fast),
        view(&slow),
        "parallel parse differs for:\n{doc}"
    );
    true
}

#[test]
fn dialplan_parallel_parse_matches_sequential() {
    let ctx = DialplanContext {
        gateways: vec!["gw".into(), "carrier-a".into(), "carrier-b".into()],
        audio_dir: None,
    };
    let mut rng = StdRng::seed_from_u64(seed(0xfa57));
    let seeds = seeds();
    let mut taken = 0;
    for i in 0..iterations(3000) {
        let doc = match i % 2 {
            0 => random_plan(&mut rng),
            _ => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                if i % 4 == 1 {
                    seed.clone()
                } else {
                    mutate(&mut rng, seed)
                }
            }
        };
        let pieces = rng.random_range(2..6);
        if same_as_sequential(&doc, &ctx, pieces) {
            taken += 1;
        }
    }
    println!("parallel path taken for {taken} documents");
    assert!(taken > 500, "parallel path taken only {taken} times");
}
