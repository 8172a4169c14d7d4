//! The complete SIP ladder of a call from swbd's capture (`GetCallCapture`):
//! every message as it was on the wire, so 100 Trying, the ACK of a 2xx,
//! retransmissions and the 200 of each BYE are there, which the call
//! record's own ladder (`GetCall`) leaves out.
//!
//! The capture holds peer bytes: summaries keep no control characters,
//! and the raw text keeps only CR, LF and TAB of them.

use switchboard_proto::admin::v1 as pb;

/// Header value of `name` (or its compact form) in a message head.
fn header<'a>(text: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    let head = text.split("\r\n\r\n").next().unwrap_or(text);
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact)).then(|| v.trim())
    })
}

fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `INVITE sip:1002@pbx (SDP)`, `100 Trying (INVITE)`, `200 OK (BYE)`,
/// `200 OK (INVITE, SDP)`.
pub fn summary(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let sdp = header(text, "Content-Type", "c")
        .is_some_and(|t| t.to_ascii_lowercase().contains("application/sdp"));
    let line = if let Some(status) = first.strip_prefix("SIP/2.0 ") {
        let method = header(text, "CSeq", "CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("?");
        format!(
            "{} ({method}{})",
            status.trim(),
            if sdp { ", SDP" } else { "" }
        )
    } else {
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("?");
        let uri = parts.next().unwrap_or_default();
        format!("{method} {uri}{}", if sdp { " (SDP)" } else { "" })
    };
    crate::output::cut(&printable(&line), 120)
}

/// The capture as ladder rows. `sip_call_ids` of the capture name the
/// A-leg first; every other Call-ID is a B-leg.
pub fn from_capture(cap: &pb::CallCapture) -> Vec<pb::SipMessageRecord> {
    let a = cap.sip_call_ids.first();
    cap.messages
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.raw);
            let leg = match header(&text, "Call-ID", "i") {
                Some(id) if a.is_some_and(|a| a == id) => pb::LegRole::A,
                Some(_) => pb::LegRole::B,
                None => pb::LegRole::Unspecified,
            };
            let raw: String = text
                .chars()
                .map(|c| {
                    if c.is_control() && !matches!(c, '\r' | '\n' | '\t') {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            pb::SipMessageRecord {
                at: m.at,
                leg: leg as i32,
                inbound: m.inbound,
                summary: summary(&text),
                raw,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(raw: &str, inbound: bool) -> pb::CapturedMessage {
        pb::CapturedMessage {
            raw: raw.as_bytes().to_vec(),
            inbound,
            ..Default::default()
        }
    }

    #[test]
    fn every_message_with_its_leg_and_method() {
        let cap = pb::CallCapture {
            call_id: "c1".into(),
            sip_call_ids: vec!["a@x".into(), "b@y".into()],
            messages: vec![
                msg(
                    "INVITE sip:1002@pbx SIP/2.0\r\nCall-ID: a@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n",
                    true,
                ),
                msg(
                    "SIP/2.0 100 Trying\r\ncall-id: a@x\r\nCSeq: 1 INVITE\r\n\r\n",
                    false,
                ),
                msg("BYE sip:b SIP/2.0\r\ni: b@y\r\nCSeq: 2 BYE\r\n\r\n", false),
                msg(
                    "SIP/2.0 200 OK\r\nCall-ID: b@y\r\nCSeq: 2 BYE\r\n\r\n",
                    true,
                ),
                msg(
                    "SIP/2.0 200 OK\x1b[2J\r\nCall-ID: a@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\n",
                    false,
                ),
            ],
            messages_not_kept: 0,
        };
        let rows = from_capture(&cap);
        let got: Vec<(i32, &str)> = rows.iter().map(|r| (r.leg, r.summary.as_str())).collect();
        let (a, b) = (pb::LegRole::A as i32, pb::LegRole::B as i32);
        assert_eq!(
            got,
            [
                (a, "INVITE sip:1002@pbx (SDP)"),
                (a, "100 Trying (INVITE)"),
                (b, "BYE sip:b"),
                (b, "200 OK (BYE)"),
                (a, "200 OK [2J (INVITE, SDP)"),
            ]
        );
        assert!(
            !rows[4].raw.contains('\u{1b}'),
            "no escape reaches a terminal"
        );
        assert!(rows[0].inbound && !rows[1].inbound);
    }
}
