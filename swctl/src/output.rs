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
}
