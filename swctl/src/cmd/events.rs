//! `swctl events [-f] [--since D] [--kind K]`: the events swbd kept
//! (`events.recent`: calls, registrations, security, dialplan, nodes),
//! oldest first, from every swbd; with `-f`, then new ones as they happen.
//!
//! Without `-f` the events of all backends are merged by time; `-o json`
//! prints one array. With `-f` each event is printed as it arrives (from
//! several swbd, interleaved as they arrive): a table row, one JSON object
//! per line (`-o json`), or one YAML document per event (`-o yaml`).

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::{EventKind, Output};
use crate::output;
use crate::views::events::EventView;

/// `90s`, `10m`, `2h`, `1d`, `1h30m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {c:?} (use s, m, h, d: 90s, 10m, 1h30m)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?}: too long"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("{s:?}: a unit must follow {number} (s, m, h, d)"));
    }
    Ok(Duration::from_secs(total))
}

fn wanted(v: &EventView, kinds: &[EventKind]) -> bool {
    kinds.is_empty() || kinds.iter().any(|k| k.as_str() == v.kind)
}

/// Run `swctl events`.
pub async fn run(
    t: &Targets,
    format: Output,
    follow: bool,
    since: Option<Duration>,
    kinds: &[EventKind],
) -> Result<(), Error> {
    let req = pb::ListEventsRequest {
        since: since.map(switchboard_proto::duration),
        follow,
    };
    let streams = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .list_events(req)
            .await
            .map(|r| r.into_inner())
    })
    .await?;
    let several = streams.len() > 1;
    if !follow {
        let mut views = Vec::new();
        for (b, mut s) in streams {
            while let Some(ev) = s
                .message()
                .await
                .map_err(|st| Error::from_status("swbd", st))?
            {
                if let Some(v) = EventView::new(&b.label, &ev).filter(|v| wanted(v, kinds)) {
                    views.push(v);
                }
            }
        }
        views.sort_by(|a, b| a.at.cmp(&b.at));
        print!("{}", render(&views, format, several, table_width())?);
        return Ok(());
    }
    let mut merged = futures::stream::select_all(streams.into_iter().map(|(b, s)| {
        let label = b.label.clone();
        s.map(move |r| (label.clone(), r)).boxed()
    }));
    let width = table_width();
    let mut stdout = std::io::stdout().lock();
    if matches!(format, Output::Table | Output::Wide)
        && writeln!(stdout, "{}", follow_header(several)).is_err()
    {
        return Ok(());
    }
    let _ = stdout.flush();
    drop(stdout);
    while let Some((label, item)) = merged.next().await {
        let ev = item.map_err(|st| Error::from_status("swbd", st))?;
        let Some(v) = EventView::new(&label, &ev).filter(|v| wanted(v, kinds)) else {
            continue;
        };
        let text = follow_line(&v, format, several, width)?;
        let mut stdout = std::io::stdout().lock();
        // The reader went away (`| head`): done, quietly.
        if stdout.write_all(text.as_bytes()).is_err() || stdout.flush().is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A whole listing (no `-f`).
pub fn render(
    views: &[EventView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Table | Output::Wide => {
            let mut header = vec!["TIME", "KIND", "EVENT", "SUBJECT", "DETAIL"];
            if several || format == Output::Wide {
                header.insert(1, "BACKEND");
            }
            let rows = views
                .iter()
                .map(|v| {
                    let mut r = vec![
                        if format == Output::Wide {
                            v.at.clone().unwrap_or_else(|| "-".into())
                        } else {
                            v.clock.clone()
                        },
                        v.kind.to_string(),
                        v.event.clone(),
                        v.subject.clone(),
                        v.detail.clone(),
                    ];
                    if several || format == Output::Wide {
                        r.insert(1, v.backend.clone());
                    }
                    r
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, (format == Output::Table).then_some(width))
        }
        _ => output::structured(format, &views)?,
    })
}

/// Column widths of `-f` tables (rows are printed before the next is known).
const FOLLOW_WIDTHS: [usize; 4] = [8, 12, 16, 22];

fn follow_header(several: bool) -> String {
    let mut cells = vec!["TIME", "KIND", "EVENT", "SUBJECT"];
    if several {
        cells.insert(1, "BACKEND");
    }
    let mut line = fixed(
        &cells.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        several,
    );
    line.push_str("DETAIL");
    line
}

fn fixed(cells: &[String], several: bool) -> String {
    let mut widths = FOLLOW_WIDTHS.to_vec();
    if several {
        widths.insert(1, 10);
    }
    let mut line = String::new();
    for (c, w) in cells.iter().zip(widths) {
        let c: String = c
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect();
        let c = output::cut_middle(&c, w);
        line.push_str(&c);
        line.push_str(&" ".repeat(w.saturating_sub(c.chars().count()) + 2));
    }
    line
}

/// One event of `-f`: a row, a JSON line, or a YAML document.
pub fn follow_line(
    v: &EventView,
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Json => {
            let mut s = serde_json::to_string(v)?;
            s.push('\n');
            s
        }
        Output::Yaml => format!("---\n{}", serde_saphyr::to_string(v)?),
        // csv is refused before any command but history runs (cmd/mod.rs).
        Output::Table | Output::Wide | Output::Csv => {
            let mut cells = vec![
                v.clock.clone(),
                v.kind.to_string(),
                v.event.clone(),
                v.subject.clone(),
            ];
            if several {
                cells.insert(1, v.backend.clone());
            }
            let mut line = fixed(&cells, several);
            let detail: String = v
                .detail
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            if format == Output::Table {
                let room = width.saturating_sub(line.chars().count()).max(8);
                line.push_str(&output::cut(&detail, room));
            } else {
                line.push_str(&detail);
            }
            let mut line = line.trim_end().to_string();
            line.push('\n');
            line
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
