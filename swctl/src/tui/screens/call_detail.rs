//! One call: both legs with RTP stats per direction (live, or final once
//! the call's record arrived) and how each leg ended, and the SIP ladder:
//! swbd's capture of the call when it has one (every message: 100 Trying,
//! the ACK of a 2xx, the 200 of each BYE), else GetCall's ladder. Enter
//! shows the full message. A call swbd no longer keeps is shown from its
//! detail record.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use switchboard_proto::admin::v1 as pb;

use super::Selection;
use crate::tui::history;
use crate::tui::store::{CallKey, Store, short_id};
use crate::tui::widgets::{Theme, cut};
use crate::views;

/// State of the detail view of one call.
#[derive(Debug)]
pub struct CallDetailScreen {
    /// Which call.
    pub key: CallKey,
    /// The call as GetCall returned it (with its ladder); `None` until it answers.
    pub fetched: Option<pb::Call>,
    /// Cursor in the ladder.
    pub sel: Selection,
    /// Showing the full message of the selected ladder row.
    pub raw: bool,
    /// Scroll of the full message.
    pub raw_scroll: u16,
    /// The ladder from swbd's capture, when it had one.
    pub captured: Option<Vec<pb::SipMessageRecord>>,
    /// Messages the capture did not keep (the middle of a long call).
    pub not_captured: u64,
}

impl CallDetailScreen {
    /// Open on `key`.
    pub fn new(key: CallKey) -> Self {
        Self {
            key,
            fetched: None,
            sel: Selection::default(),
            raw: false,
            raw_scroll: 0,
            captured: None,
            not_captured: 0,
        }
    }

    /// Take swbd's capture of the call as the ladder (when it kept any message).
    pub fn set_capture(&mut self, capture: &pb::CallCapture) {
        let rows = crate::views::ladder::from_capture(capture);
        if !rows.is_empty() {
            self.captured = Some(rows);
            self.not_captured = capture.messages_not_kept;
        }
    }

    /// The ladder shown: the capture's, else GetCall's.
    pub fn ladder(&self) -> &[pb::SipMessageRecord] {
        match (&self.captured, &self.fetched) {
            (Some(c), _) => c,
            (None, Some(f)) => &f.ladder,
            (None, None) => &[],
        }
    }

    /// Ladder length.
    pub fn ladder_len(&self) -> usize {
        self.ladder().len()
    }

    /// Draw.
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        // Live fields from the store; the ladder from GetCall.
        let live = store.calls.get(&self.key);
        let record = store.history.get(&self.key);
        let from_record = record.map(call_of_record);
        let Some(call) = live.or(self.fetched.as_ref()).or(from_record.as_ref()) else {
            f.render_widget(
                Paragraph::new(format!(
                    " call {} is gone (Esc back)",
                    short_id(&self.key.1)
                ))
                .style(theme.dim()),
                area,
            );
            return;
        };
        let w = area.width as usize;
        let state = views::call_state(call.state);
        let mut lines = vec![Line::from(vec![
            Span::styled(format!(" Call {}", short_id(&call.call_id)), theme.header()),
            Span::raw(format!("  {} -> {}  ", call.caller, call.destination)),
            Span::styled(state, theme.call_state(state)),
            Span::raw(format!(
                " {}  route {}  dialplan {}{}",
                views::mmss(store.call_secs(call)),
                call.route_id,
                if call.dialplan_version.is_empty() {
                    "-"
                } else {
                    &call.dialplan_version
                },
                if call.end_status != 0 || !call.end_cause.is_empty() {
                    format!("  ended: {} {}", call.end_status, call.end_cause)
                } else {
                    String::new()
                }
            )),
        ])];
        for leg in &call.legs {
            let role = views::leg_role(leg.role).to_uppercase();
            let cdr_leg = record.and_then(|r| {
                r.legs
                    .iter()
                    .find(|l| l.sip_call_id == leg.sip_call_id && !l.sip_call_id.is_empty())
            });
            let final_stats = cdr_leg.and_then(|l| l.rtp.as_ref()).map(|r| {
                let d = |d: Option<&pb::CdrDirection>| {
                    let d = d.cloned().unwrap_or_default();
                    switchboard_proto::media::v1::DirectionStats {
                        packets: d.packets,
                        bytes: d.bytes,
                        packets_lost: d.lost,
                        jitter_ms: d.jitter_ms,
                        last_packet_at: None,
                    }
                };
                switchboard_proto::media::v1::SessionStats {
                    rx: Some(d(r.rx.as_ref())),
                    tx: Some(d(r.tx.as_ref())),
                    remote_address: String::new(),
                    dropped: 0,
                }
            });
            let stats = final_stats
                .as_ref()
                .or_else(|| store.session_stats(&leg.media_session_id));
            let rtp = match stats {
                Some(st) => {
                    let rx = st.rx.unwrap_or_default();
                    let tx = st.tx.unwrap_or_default();
                    format!(
                        "in {} loss {:.1}% jitter {:.1} ms  out {}{}",
                        rx.packets,
                        views::loss_percent(&rx),
                        rx.jitter_ms,
                        tx.packets,
                        if st.remote_address.is_empty() || w < 120 {
                            String::new()
                        } else {
                            format!("  rtp from {}", st.remote_address)
                        }
                    )
                }
                None => "no RTP stats".into(),
            };
            let rtp = match cdr_leg {
                Some(l) => format!("{rtp}  ended: {}", history::leg_end(l)),
                None => rtp,
            };
            let codec = if leg.codec.is_empty() {
                "-"
            } else {
                &leg.codec
            };
            let text = if w >= 120 {
                format!(
                    " {role}  {} {}  {}  {codec}  {rtp}",
                    leg.remote_uri,
                    leg.remote_address,
                    views::leg_state(leg.state),
                )
            } else {
                format!(" {role}  {}  {codec}  {rtp}", cut(&leg.remote_uri, 28))
            };
            lines.push(Line::raw(cut(&text, w)));
        }
        if let Some(r) = record
            && !r.failed_targets.is_empty()
        {
            let targets: Vec<String> = r
                .failed_targets
                .iter()
                .map(|t| format!("{} {}", t.target, history::status_text(t.code)))
                .collect();
            lines.push(Line::styled(
                cut(&format!(" not reached: {}", targets.join(", ")), w),
                theme.warn(),
            ));
        }
        let head_h = lines.len() as u16;
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(head_h),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        f.render_widget(Paragraph::new(lines), head);
        let footer = if self.raw {
            " Esc back to ladder   ↑/↓ scroll"
        } else {
            " Esc back   Enter full message   h hang up   r refresh"
        };
        f.render_widget(Paragraph::new(footer).style(theme.dim()), foot);

        if self.fetched.is_none() && self.captured.is_none() {
            f.render_widget(Paragraph::new(" loading ladder…").style(theme.dim()), body);
            return;
        }
        let ladder = self.ladder();
        if self.raw {
            let msg = ladder
                .get(self.sel.selected)
                .map(|m| m.raw.replace('\r', ""))
                .unwrap_or_default();
            f.render_widget(
                Paragraph::new(msg)
                    .wrap(Wrap { trim: false })
                    .scroll((self.raw_scroll, 0))
                    .block(Block::default().borders(Borders::TOP).title(" message ")),
                body,
            );
            return;
        }
        let n = ladder.len();
        let range = self.sel.window(n, body.height as usize);
        let ladder = match (&self.captured, &self.fetched) {
            (Some(c), _) => c.as_slice(),
            (None, Some(f)) => f.ladder.as_slice(),
            (None, None) => &[],
        };
        let rows: Vec<Row> = ladder[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let leg = views::leg_role(m.leg).to_uppercase();
                let flow = if m.inbound {
                    format!("{leg} -> sb")
                } else {
                    format!("sb -> {leg}")
                };
                let row = Row::new(vec![
                    format!(" {}", views::clock_ms(m.at.as_ref())),
                    flow,
                    cut(&m.summary, w.saturating_sub(26)),
                ]);
                if range.start + i == self.sel.selected {
                    row.style(theme.selected())
                } else {
                    row
                }
            })
            .collect();
        if rows.is_empty() {
            f.render_widget(
                Paragraph::new(" no SIP messages recorded").style(theme.dim()),
                body,
            );
            return;
        }
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(13),
                    Constraint::Length(8),
                    Constraint::Fill(1),
                ],
            )
            .column_spacing(1),
            body,
        );
    }
}

/// A call as its detail record tells it, for a call swbd no longer keeps.
fn call_of_record(r: &pb::CallDetailRecord) -> pb::Call {
    let role = |r: &str| {
        if r == "a" {
            pb::LegRole::A
        } else {
            pb::LegRole::B
        }
    };
    let duration = match (&r.start_time, &r.end_time) {
        (Some(s), Some(e)) => Some(prost_types::Duration {
            seconds: e.seconds.saturating_sub(s.seconds),
            nanos: 0,
        }),
        _ => None,
    };
    pb::Call {
        call_id: r.call_id.clone(),
        state: pb::CallState::Ended as i32,
        caller: r.caller.clone(),
        destination: r.destination.clone(),
        route_id: r.route_id.clone(),
        dialplan_version: r.dialplan_version.clone(),
        media_node: r.media_node.clone(),
        created_at: r.start_time,
        answered_at: r.answer_time,
        ended_at: r.end_time,
        duration,
        legs: r
            .legs
            .iter()
            .map(|l| pb::Leg {
                role: role(&l.role) as i32,
                sip_call_id: l.sip_call_id.clone(),
                remote_uri: l.remote_uri.clone(),
                remote_address: l.remote_address.clone(),
                state: pb::LegState::Terminated as i32,
                media_session_id: l.media_session_id.clone(),
                codec: l.codec.clone(),
                target: l.target.clone(),
            })
            .collect(),
        end_cause: r.end_cause.clone(),
        end_status: if r.status == "failed" { r.sip_code } else { 0 },
        ladder: Vec::new(),
    }
}
