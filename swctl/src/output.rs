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
    if let Some(limit) = width {
        let mins: Vec<usize> = header.iter().map(|h| h.chars().count().max(3)).collect();
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
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, w) in widths.iter().enumerate() {
            let c = cut(cells.get(i).map(String::as_str).unwrap_or(""), *w);
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
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in &rows {
        line(r);
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
