//! Parallel parsing of big dialplans: the YAML parser is most of a reload
//! (see docs/BENCHMARKS.md), so a large `routes:` list is cut at
//! item boundaries and the pieces are parsed on several threads.
//!
//! This is only a fast path. Each piece keeps its lines at their original
//! line numbers (the piece is preceded by blank lines), so spans and
//! semantic errors are located exactly as in a whole-file parse. Anything
//! unusual (document markers, directives, a second `routes:`, an alias to
//! an anchor in another piece, any syntax error) makes a piece fail, and
//! the caller then parses the whole file sequentially, which gives the
//! authoritative result and the precise serde error. A cut can only
//! change the meaning of a line that is not really an item start (inside
//! a quoted or flow scalar), and then the piece before the cut ends inside
//! that scalar and fails to parse.

use serde::Deserialize;

use super::file::{DialplanFile, RouteFile};

/// Below this size the sequential parse is fast enough.
pub const MIN_PARALLEL_BYTES: usize = 128 * 1024;

/// Fewest hardware threads for the parallel path. On the 2-core
/// development VM, busy with other builds, two pieces were no faster than
/// one (docs/BENCHMARKS.md), so small machines parse sequentially.
pub const MIN_THREADS: usize = 4;

/// Most pieces used.
const MAX_PIECES: usize = 8;

/// One piece: a `routes:` list and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Piece {
    routes: Vec<RouteFile>,
}

/// Parse `yaml` in up to `pieces` parts on scoped threads; `None` when the
/// file does not have the simple shape this needs or any part fails.
pub fn parse(yaml: &str, pieces: usize) -> Option<DialplanFile> {
    let lines: Vec<&str> = yaml.split_inclusive('\n').collect();
    let is_top_level = |l: &str| {
        let first = l.chars().next();
        !matches!(first, None | Some(' ' | '\t' | '#' | '\n' | '\r'))
    };
    if lines
        .iter()
        .any(|l| l.starts_with("---") || l.starts_with("...") || l.starts_with('%'))
    {
        return None;
    }
    let mut routes_lines = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_top_level(l) && l.starts_with("routes:"));
    let (routes_at, routes_line) = routes_lines.next()?;
    if routes_lines.next().is_some() || routes_line.trim_end() != "routes:" {
        return None;
    }
    // Item indentation: the first content line of the list.
    let body_start = routes_at + 1;
    let first_item = (body_start..lines.len()).find(|&i| {
        lines
            .get(i)
            .is_some_and(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    })?;
    let first = lines.get(first_item)?;
    let indent = first.len() - first.trim_start_matches(' ').len();
    let item_prefix = format!("{}-", " ".repeat(indent));
    let is_item = |l: &str| {
        l.strip_prefix(item_prefix.as_str())
            .is_some_and(|rest| rest.starts_with([' ', '\n', '\r']) || rest.is_empty())
    };
    // The list ends at the next top-level line that is not an item.
    let end = (first_item..lines.len())
        .find(|&i| {
            lines
                .get(i)
                .is_some_and(|l| is_top_level(l) && !(indent == 0 && is_item(l)))
        })
        .unwrap_or(lines.len());
    let items: Vec<usize> = (first_item..end)
        .filter(|&i| lines.get(i).is_some_and(|l| is_item(l)))
        .collect();
    // The list must start with an item, or this is not a block sequence.
    if items.first() != Some(&first_item) {
        return None;
    }
    let pieces = pieces.clamp(1, MAX_PIECES).min(items.len().max(1));
    // Cut points: item starts, evenly spread.
    let mut cuts: Vec<usize> = (0..pieces)
        .filter_map(|k| items.get(k * items.len() / pieces).copied())
        .collect();
    cuts.dedup();
    cuts.push(end);

    // Everything but the list: `routes: []` in its place, so the rest
    // keeps its structure, and blank lines for the items (line numbers kept).
    let mut header = String::with_capacity(yaml.len() / 8);
    for (i, l) in lines.iter().enumerate() {
        if i == routes_at {
            header.push_str("routes: []\n");
        } else if (routes_at..end).contains(&i) {
            header.push('\n');
        } else {
            header.push_str(l);
        }
    }
    let texts: Vec<String> = cuts
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (*w.first()?, *w.get(1)?);
            let mut t = String::new();
            // Line a (0-based) must stay line a + 1: `routes:` goes on line a.
            t.push_str(&"\n".repeat(a.saturating_sub(1)));
            t.push_str("routes:\n");
            for l in lines.get(a..b)? {
                t.push_str(l);
            }
            Some(t)
        })
        .collect();

    let (head, parts) = std::thread::scope(|s| {
        // A thread that cannot be spawned makes its piece fail (no panic).
        let handles: Vec<_> = texts
            .iter()
            .map(|t| {
                std::thread::Builder::new()
                    .name("dialplan-parse".into())
                    .spawn_scoped(s, move || serde_saphyr::from_str::<Piece>(t).ok())
                    .ok()
            })
            .collect();
        let head = serde_saphyr::from_str::<DialplanFile>(&header).ok();
        let parts: Vec<Option<Piece>> = handles
            .into_iter()
            .map(|h| h.and_then(|h| h.join().ok().flatten()))
            .collect();
        (head, parts)
    });
    let mut file = head?;
    if !file.routes.is_empty() {
        return None;
    }
    for p in parts {
        file.routes.extend(p?.routes);
    }
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Dialplan, DialplanContext};

    /// The fast path either declines or gives exactly the sequential result.
    fn agrees(doc: &str) -> bool {
        let ctx = DialplanContext::default();
        let mut taken = false;
        for pieces in 2..5 {
            if let Some(fast) = Dialplan::parse_in_pieces("t.yaml", doc, &ctx, pieces) {
                taken = true;
                let slow = Dialplan::parse_sequential("t.yaml", doc, &ctx);
                match (fast, slow) {
                    (Ok(a), Ok(b)) => assert_eq!(a.to_proto().routes, b.to_proto().routes, "{doc}"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "{doc}"),
                    (a, b) => panic!("differ for\n{doc}\nfast {a:?}\nslow {b:?}"),
                }
            }
        }
        taken
    }

    const ROUTE: &str = "  - id: r{}\n    match: {destination: \"{}*\"}\n    actions: [answer]\n";

    fn routes(n: usize) -> String {
        (0..n)
            .map(|i| ROUTE.replacen("{}", &i.to_string(), 2))
            .collect()
    }

    #[test]
    fn plain_lists_take_the_fast_path() {
        let doc = format!(
            "# plan\nversion: 1\nroutes:\n{}no_match: {{code: 480}}\n",
            routes(9)
        );
        assert!(agrees(&doc));
        let p = Dialplan::parse_in_pieces("t.yaml", &doc, &DialplanContext::default(), 3)
            .expect("taken")
            .expect("valid");
        assert_eq!(p.routes().len(), 9);
        assert_eq!(p.no_match().code, 480);
    }

    #[test]
    fn semantic_errors_keep_their_lines() {
        let doc = format!(
            "version: 1\nroutes:\n{}  - id: bad\n    match: {{destination_regex: '('}}\n    actions: [answer]\n",
            routes(7)
        );
        assert!(agrees(&doc));
        let errs = Dialplan::parse_in_pieces("t.yaml", &doc, &DialplanContext::default(), 4)
            .expect("taken")
            .expect_err("bad regex");
        assert_eq!(errs.first().map(|e| (e.line, e.column)), Some((25, 32)));
    }

    #[test]
    fn tricky_shapes_agree_or_decline() {
        let docs = [
            // Zero-indented sequence.
            "version: 1\nroutes:\n- id: a\n  match: {}\n  actions: [answer]\n- id: b\n  match: {}\n  actions: [answer]\n".to_string(),
            // A quoted string whose continuation looks like an item.
            "version: 1\nroutes:\n  - id: a\n    name: \"x\n  - id: b\"\n    match: {}\n    actions: [answer]\n  - id: c\n    match: {}\n    actions: [answer]\n".to_string(),
            // A block scalar holding item-like text.
            "version: 1\nroutes:\n  - id: a\n    name: |\n      - id: z\n    match: {}\n    actions: [answer]\n  - id: b\n    match: {}\n    actions: [answer]\n".to_string(),
            // An anchor used in a later piece.
            "version: 1\nroutes:\n  - id: a\n    match: &m {destination: \"1*\"}\n    actions: [answer]\n  - id: b\n    match: *m\n    actions: [answer]\n  - id: c\n    match: *m\n    actions: [answer]\n".to_string(),
            // Document markers, CRLF, indented header, flow list, comments between items.
            format!("---\nversion: 1\nroutes:\n{}", routes(3)),
            format!("version: 1\r\nroutes:\r\n{}", routes(3).replace('\n', "\r\n")),
            format!("  version: 1\nroutes:\n{}", routes(3)),
            "version: 1\nroutes: [{id: a, match: {}, actions: [answer]}]\n".to_string(),
            format!("version: 1\nroutes:\n  # first\n{}  # between\n{}", routes(2), routes(2).replace("id: r", "id: s")),
            // Two routes keys, items then a stray indented line.
            format!("version: 1\nroutes:\n{}routes:\n{}", routes(2), routes(2)),
            format!("version: 1\nroutes:\n{} stray: 1\n", routes(3)),
        ];
        for d in &docs {
            agrees(d);
        }
    }
}
