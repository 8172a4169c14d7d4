//! Deterministic fuzzing of the loader: thousands of random and mutated
//! YAML documents must each give a plan or located errors, never a panic.
//! Plans that load are then routed with random calls.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

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
    "redirect",
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
    "follow",
    "pass",
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
    "      - dial: {target: \"user/${destination}\", redirect: pass}\n",
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

/// A string in a random YAML style: plain, single- or double-quoted (with
/// escapes), sometimes with non-ASCII text.
fn styled(rng: &mut StdRng, text: &str) -> String {
    let plain_ok = !text.contains(['{', '}', '[', ']', ',', '#']) && !text.contains(": ");
    match rng.random_range(0..6) {
        0 | 1 if plain_ok => text.to_string(),
        0 | 1 => format!("'{text}'"),
        2 => format!("'{}'", text.replace('\'', "''")),
        3 => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        4 => {
            // Escape one character.
            let mut out = String::from("\"");
            for (i, c) in text.chars().enumerate() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if i == 0 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        _ => format!("\"{text}é☎\""),
    }
}

/// A plan in the styles people write (block or flow, any quoting,
/// comments, blank lines, indentless lists), mostly valid.
fn styled_plan(rng: &mut StdRng) -> String {
    let mut y = String::new();
    if rng.random_bool(0.3) {
        y.push_str("# generated plan ☎\n\n");
    }
    y.push_str("version: 1\n");
    if rng.random_bool(0.3) {
        let reason = styled(rng, "Not Here");
        if rng.random_bool(0.5) {
            y.push_str(&format!("no_match: {{code: 404, reason: {reason}}}\n"));
        } else {
            y.push_str(&format!(
                "no_match:\n  code: 480 # busy\n  reason: {reason}\n"
            ));
        }
    }
    let routes = rng.random_range(0..8);
    if routes == 0 {
        y.push_str("routes: []\n");
    } else {
        y.push_str("routes:\n");
    }
    let (dash, inner) = match rng.random_range(0..3) {
        0 => ("", "  "),
        1 => ("  ", "    "),
        _ => ("    ", "      "),
    };
    for i in 0..routes {
        let id = styled(rng, &format!("r{i}"));
        y.push_str(&format!("{dash}- id: {id}\n"));
        if rng.random_bool(0.3) {
            let name = styled(rng, "Route — für alle");
            y.push_str(&format!("{inner}name: {name}\n"));
        }
        if rng.random_bool(0.5) {
            y.push_str(&format!("{inner}priority: {}\n", rng.random_range(-3..300)));
        }
        if rng.random_bool(0.2) {
            y.push_str(&format!("{inner}enabled: {}\n", rng.random_bool(0.5)));
        }
        if rng.random_bool(0.2) {
            y.push_str(&format!("{inner}# a comment\n\n"));
        }
        let mut conds = Vec::new();
        if rng.random_bool(0.7) {
            if rng.random_bool(0.7) {
                conds.push(("destination", styled(rng, &format!("{i}?[0-9]*"))));
            } else {
                conds.push(("destination_regex", styled(rng, "9(?P<n>\\d+)")));
            }
        }
        if rng.random_bool(0.3) {
            conds.push(("caller", styled(rng, "1*")));
        }
        if rng.random_bool(0.2) {
            conds.push(("domain", styled(rng, "*.example.com")));
        }
        if rng.random_bool(0.2) {
            let a = styled(rng, "10.0.0.0/8");
            let b = styled(rng, "2001:db8::/32");
            conds.push(("source", format!("[{a}, {b}]")));
        }
        if rng.random_bool(0.5) {
            let body: Vec<String> = conds.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            y.push_str(&format!("{inner}match: {{{}}}\n", body.join(", ")));
        } else if conds.is_empty() {
            y.push_str(&format!("{inner}match: {{}}\n"));
        } else {
            y.push_str(&format!("{inner}match:\n"));
            for (k, v) in &conds {
                y.push_str(&format!("{inner}  {k}: {v}\n"));
            }
        }
        let mut actions = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let target = styled(rng, "user/${destination}");
            let flow = match rng.random_range(0..7) {
                0 => "answer".to_string(),
                1 => format!(
                    "{{playback: {{file: {}, loop: true}}}}",
                    styled(rng, "a.wav")
                ),
                2 => format!("{{dial: {{target: {target}, timeout: 20s, on_failure: stop}}}}"),
                3 => format!(
                    "{{dial: {{targets: [{target}, {}]}}}}",
                    styled(rng, "sip:${caller}@example.com")
                ),
                4 => format!("{{hangup: {{code: 486, reason: {}}}}}", styled(rng, "Busy")),
                5 => format!(
                    "{{sleep: {}}}",
                    ["2", "250ms", "1.5s", "\"3s\"", "'1m'"][rng.random_range(0..5)]
                ),
                _ => format!(
                    "{{set: {{a: {}, b: {}}}}}",
                    styled(rng, "x${caller}"),
                    styled(rng, "${a}$$")
                ),
            };
            actions.push(flow);
        }
        match rng.random_range(0..3) {
            0 => y.push_str(&format!("{inner}actions: [{}]\n", actions.join(", "))),
            n => {
                y.push_str(&format!("{inner}actions:\n"));
                let pad = if n == 1 {
                    inner.to_string()
                } else {
                    format!("{inner}  ")
                };
                for a in &actions {
                    // `{x: {...}}` as a block mapping entry: `- x: {...}`.
                    let item = match a.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
                        Some(inner_map) if rng.random_bool(0.7) => inner_map.to_string(),
                        _ => a.clone(),
                    };
                    y.push_str(&format!("{pad}- {item}\n"));
                }
            }
        }
    }
    y
}

/// YAML-aware mutations: indentation, anchors, tags, odd quoting, unicode.
fn mutate_yaml(rng: &mut StdRng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    for _ in 0..rng.random_range(1..3) {
        let at = rng.random_range(0..lines.len());
        let Some(line) = lines.get_mut(at) else {
            continue;
        };
        let pos = rng.random_range(0..=line.len());
        let pos = (0..=pos)
            .rev()
            .find(|p| line.is_char_boundary(*p))
            .unwrap_or(0);
        match rng.random_range(0..10) {
            0 => line.insert_str(0, "  "),
            1 => {
                if line.starts_with(' ') {
                    line.remove(0);
                }
            }
            2 => line.insert_str(pos, "&a "),
            3 => line.insert_str(pos, "*a"),
            4 => line.insert_str(pos, "!!str "),
            5 => line.insert_str(
                pos,
                ["'", "\"", "''", "\\", "\\u00e9"][rng.random_range(0..5)],
            ),
            6 => line.insert_str(
                pos,
                ["é", "☎", "\u{85}", "\u{2028}", "\u{a0}"][rng.random_range(0..5)],
            ),
            7 => line.insert_str(pos, [" # c", "#", ": ", ", ", "- "][rng.random_range(0..5)]),
            8 => {
                let dup = line.clone();
                lines.insert(at, dup);
            }
            _ => line.insert_str(
                pos,
                ["|", ">", "~", "null", "0x1", "yes", "[", "}"][rng.random_range(0..8)],
            ),
        }
    }
    let mut out = lines.join("\n");
    if rng.random_bool(0.9) {
        out.push('\n');
    }
    out
}

/// The fast path declines `doc` or gives exactly serde-saphyr's
/// `DialplanFile` (every span included), and the same plan or errors.
fn fast_path_agrees(doc: &str, ctx: &DialplanContext) -> bool {
    let Some(fast) = swbd::dialplan::fast_path::parse(doc) else {
        assert!(
            Dialplan::parse_fast("fuzz.yaml", doc, ctx).is_none(),
            "parse_fast took what fast_path::parse declined:\n{doc}"
        );
        return false;
    };
    let slow = serde_saphyr::from_str::<swbd::dialplan::file::DialplanFile>(doc)
        .unwrap_or_else(|e| panic!("fast path took a file serde refuses ({e}):\n{doc}"));
    assert_eq!(
        format!("{fast:#?}"),
        format!("{slow:#?}"),
        "fast path differs for:\n{doc}"
    );
    let view = |r: &Result<Dialplan, Vec<switchboard_proto::support::yaml::FileError>>| match r {
        Ok(p) => Ok((
            p.to_proto().routes,
            p.no_match().clone(),
            p.version().hash.clone(),
        )),
        Err(e) => Err(e.clone()),
    };
    let fast_plan = Dialplan::parse_fast("fuzz.yaml", doc, ctx).expect("taken");
    let slow_plan = Dialplan::parse_sequential("fuzz.yaml", doc, ctx);
    assert_eq!(
        view(&fast_plan),
        view(&slow_plan),
        "plans differ for:\n{doc}"
    );
    let public = Dialplan::parse("fuzz.yaml", doc, ctx);
    assert_eq!(view(&public), view(&slow_plan), "parse differs for:\n{doc}");
    true
}

#[test]
fn dialplan_fast_path_matches_serde() {
    let ctx = DialplanContext {
        gateways: vec!["gw".into(), "carrier-a".into(), "carrier-b".into()],
        audio_dir: None,
    };
    let mut rng = StdRng::seed_from_u64(seed(0xd1a1_fa57));
    let seeds = seeds();
    let (mut taken, mut declined, mut declined_valid) = (0, 0, 0);
    for i in 0..iterations(6000) {
        let doc = match i % 6 {
            0 => random_plan(&mut rng),
            1 => styled_plan(&mut rng),
            2 => {
                let plan = styled_plan(&mut rng);
                mutate_yaml(&mut rng, &plan)
            }
            3 => {
                let plan = styled_plan(&mut rng);
                mutate(&mut rng, &plan)
            }
            4 => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                if i % 4 == 0 {
                    seed.clone()
                } else {
                    mutate_yaml(&mut rng, seed)
                }
            }
            _ => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate(&mut rng, seed)
            }
        };
        if fast_path_agrees(&doc, &ctx) {
            taken += 1;
        } else {
            declined += 1;
            if serde_saphyr::from_str::<swbd::dialplan::file::DialplanFile>(&doc).is_ok() {
                declined_valid += 1;
            }
        }
    }
    println!(
        "fast path taken for {taken} documents, declined {declined} ({declined_valid} of them valid for serde)"
    );
    assert!(taken > 1500, "fast path taken only {taken} times");
    assert!(declined > 1000, "fast path declined only {declined} times");
}

#[test]
fn dialplan_fast_path_takes_the_shipped_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let ctx = DialplanContext {
        gateways: vec!["carrier-a".into(), "carrier-b".into()],
        audio_dir: None,
    };
    for (name, text) in [
        ("default.yaml", swbd::dialplan::DEFAULT_YAML.to_string()),
        (
            "office.yaml",
            std::fs::read_to_string(root.join("dialplans/examples/office.yaml")).expect("office"),
        ),
    ] {
        assert!(fast_path_agrees(&text, &ctx), "{name} was declined");
    }
}
