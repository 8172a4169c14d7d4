//! Rendering listings: aligned tables that fit the terminal, or JSON/YAML.

use serde::Serialize;

use crate::cli::Output;

/// Render `rows` (a header then data) as aligned columns. Cells longer than
/// `max_cell` are cut with `…` so a table never wraps into garbage.
pub fn table(header: &[&str], rows: &[Vec<String>], max_cell: usize) -> String {
    let cut = |s: &str| -> String {
        if s.chars().count() > max_cell && max_cell > 1 {
            let mut t: String = s.chars().take(max_cell - 1).collect();
            t.push('…');
            t
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// Cut `s` to `max` characters, ending with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// Render a table that fits `width` columns: the widest columns shrink first
/// (never below their header) and cut cells end with `…`. Control characters
/// from peers are replaced so a row is always one line. `width = None`: no
/// limit (`-o wide`).
pub fn fit(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(n) {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    // A column never shrinks so far that two different values look the
    // same (`s000000…` twice): its floor is the narrowest width at which
    // every distinct value still reads differently, cut in the middle.
    let floors: Vec<usize> = (0..n)
        .map(|i| distinct_floor(rows.iter().filter_map(|r| r.get(i)).map(String::as_str)))
        .collect();
    if let Some(limit) = width {
        let mins: Vec<usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.chars()
                    .count()
                    .max(3)
                    .max(floors.get(i).copied().unwrap_or(0))
            })
            .collect();
        loop {
            let total: usize = widths.iter().sum::<usize>() + 2 * n.saturating_sub(1);
            if total <= limit {
                break;
            }
            let widest = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > mins.get(*i).copied().unwrap_or(3))
                .max_by_key(|(_, w)| **w)
                .map(|(i, _)| i);
            match widest {
                Some(i) => {
                    if let Some(w) = widths.get_mut(i) {
                        *w -= 1;
                    }
                }
                None => break,
            }
        }
    }
    // Per column: cut at the end when that keeps values apart (names,
    // URIs read best from the start), else in the middle (ids, addresses).
    let middle: Vec<bool> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            !distinct_when(
                rows.iter().filter_map(|r| r.get(i)).map(String::as_str),
                |v| cut(v, *w),
            )
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &[String], data: bool| {
        let mut l = String::new();
        for (i, w) in widths.iter().enumerate() {
            let v = cells.get(i).map(String::as_str).unwrap_or("");
            let c = if data && middle.get(i).copied().unwrap_or(false) {
                cut_middle(v, *w)
            } else {
                cut(v, *w)
            };
            if i + 1 == n {
                l.push_str(&c);
            } else {
                let pad = w.saturating_sub(c.chars().count());
                l.push_str(&c);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        false,
    );
    for r in &rows {
        line(r, true);
    }
    out
}

/// Cut `s` to `max` characters keeping its start and its end, with `…` in
/// between: `s0000000042` in 7 is `s00…042`.
pub fn cut_middle(s: &str, max: usize) -> String {
    let len = s.chars().count();
    if len <= max {
        return s.to_string();
    }
    if max < 3 {
        return cut(s, max);
    }
    let tail = (max - 1) / 2;
    let head = max - 1 - tail;
    let mut t: String = s.chars().take(head).collect();
    t.push('…');
    t.extend(s.chars().skip(len - tail));
    t
}

/// Whether `render` keeps the distinct values of `values` distinct.
fn distinct_when<'a>(
    values: impl Iterator<Item = &'a str>,
    render: impl Fn(&str) -> String,
) -> bool {
    let mut seen = std::collections::HashMap::new();
    for v in values {
        if let Some(prev) = seen.insert(render(v), v)
            && prev != v
        {
            return false;
        }
    }
    true
}

/// The narrowest width at which [`cut_middle`] keeps the distinct `values`
/// apart (0 when there is nothing to keep apart).
fn distinct_floor<'a>(values: impl Iterator<Item = &'a str> + Clone) -> usize {
    let longest = values.clone().map(|v| v.chars().count()).max().unwrap_or(0);
    (0..=longest)
        .find(|w| distinct_when(values.clone(), |v| cut_middle(v, *w)))
        .unwrap_or(longest)
}

/// One CSV cell: `Text` came from a peer or a config (neutralized
/// against spreadsheet formulas), `Num` is a number or time swctl printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvCell {
    /// Free text (a caller id, a URI, a cause).
    Text(String),
    /// A number, boolean or time, printed by swctl.
    Num(String),
}

/// One CSV field per RFC 4180: quoted (quotes doubled) when it holds a
/// comma, a quote, CR or LF. A text cell that a spreadsheet would take
/// for a formula (starting with `=`, `+`, `-`, `@`, TAB or CR: peers
/// choose their caller ids) gets a leading `'` first (OWASP "CSV
/// injection").
pub fn csv_field(cell: &CsvCell) -> String {
    let s = match cell {
        CsvCell::Text(t) if t.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{t}"),
        CsvCell::Text(t) | CsvCell::Num(t) => t.clone(),
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A CSV document (RFC 4180: CRLF line ends, a header line).
pub fn csv(header: &[&str], rows: &[Vec<CsvCell>]) -> String {
    let mut out = header.join(",");
    out.push_str("\r\n");
    for row in rows {
        let fields: Vec<String> = row.iter().map(csv_field).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Serialize a value as JSON or YAML per `format` (table formats are the caller's).
pub fn structured<T: Serialize>(format: Output, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        Output::Yaml => serde_saphyr::to_string(value)?,
        _ => {
            let mut s = serde_json::to_string_pretty(value)?;
            s.push('\n');
            s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_ids_stay_distinct() {
        let rows = vec![
            vec![
                "s0000000000000041".to_string(),
                "127.0.0.1:40000".to_string(),
            ],
            vec![
                "s0000000000000042".to_string(),
                "127.0.0.1:40002".to_string(),
            ],
        ];
        let t = fit(&["ID", "ADDRESS"], &rows, Some(16));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert_ne!(lines[1], lines[2], "rows must not look identical:\n{t}");
        assert!(lines[1].contains("41") && lines[2].contains("42"), "{t}");
        assert_eq!(cut_middle("s0000000042", 7), "s00…042");
        assert_eq!(cut_middle("short", 7), "short");
    }

    #[test]
    fn csv_quotes_per_rfc4180_and_neutralizes_formulas() {
        use CsvCell::{Num, Text};
        let doc = csv(
            &["a", "b", "c"],
            &[vec![
                Text("=HYPERLINK(\"http://x\",\"y\")".into()),
                Text("plain, with comma".into()),
                Num("-3".into()),
            ]],
        );
        assert_eq!(
            doc,
            "a,b,c\r\n\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",\"plain, with comma\",-3\r\n"
        );
        for evil in ["+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"] {
            assert!(
                csv_field(&Text(evil.into()))
                    .trim_start_matches('"')
                    .starts_with('\''),
                "{evil:?}"
            );
        }
        assert_eq!(csv_field(&Text("line\nbreak".into())), "\"line\nbreak\"");
        assert_eq!(csv_field(&Text("1001".into())), "1001");
    }

    #[test]
    fn table_aligns_and_cuts() {
        let t = table(
            &["A", "LONG"],
            &[vec!["x".into(), "a-very-long-cell".into()]],
            8,
        );
        assert_eq!(t, "A  LONG\nx  a-very-…\n");
    }

    #[test]
    fn fit_shrinks_the_widest_column_and_never_exceeds_the_width() {
        let rows = vec![
            vec![
                "c7f2a".into(),
                "sip:alice-with-a-very-long-name@example.com".into(),
                "bridged".into(),
            ],
            vec!["9b31e".into(), "1003\nevil".into(), "ringing".into()],
        ];
        let t = fit(&["ID", "FROM", "STATE"], &rows, Some(30));
        for l in t.lines() {
            assert!(l.chars().count() <= 30, "{l:?}");
        }
        assert_eq!(
            t,
            "ID     FROM            STATE\nc7f2a  sip:alice-wit…  bridged\n9b31e  1003 evil       ringing\n"
        );
        let wide = fit(&["ID", "FROM", "STATE"], &rows, None);
        assert!(wide.contains("sip:alice-with-a-very-long-name@example.com"));
    }
}
