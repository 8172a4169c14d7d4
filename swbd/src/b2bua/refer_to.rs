//! What a REFER asks for, read as hostile input: its `Refer-To` (RFC 3515
//! §2.1) and the `Replaces` an attended transfer embeds in it (RFC 3891
//! §6.1), plus the `message/sipfrag` bodies of the NOTIFYs that report
//! progress (RFC 3515 §2.4.5).
//!
//! Nothing of the Refer-To reaches another wire as it came: the user is
//! decoded (a `%0D%0A` stays escaped, see [`crate::sip::uri::SipUri::user_decoded`])
//! and routed through the dialplan, which escapes it again for the URIs it
//! builds; headers embedded in the URI (`?Subject=...&Via=...`) other than
//! `Replaces` are dropped (their names, escaped, go to the log); the
//! Replaces value must be a well-formed dialog id.

use crate::dialog::DialogId;
use crate::sip::message::HeaderAccess;
use crate::sip::{Name, NameAddr, Request, Uri};

/// Longest user accepted as a transfer target (a phone number or an
/// extension; a megabyte of digits is an attack, not a number).
const MAX_USER: usize = 128;
/// Longest Call-ID accepted in a Replaces.
const MAX_CALL_ID: usize = 256;
/// Longest tag accepted in a Replaces.
const MAX_TAG: usize = 128;
/// Embedded headers looked at in one Refer-To.
const MAX_HEADERS: usize = 8;

/// A refused REFER: the status and reason it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// SIP status.
    pub code: u16,
    /// Reason phrase (ours, never the peer's text).
    pub reason: &'static str,
}

const fn refuse(code: u16, reason: &'static str) -> Refusal {
    Refusal { code, reason }
}

/// The dialog an attended transfer replaces (RFC 3891 §6.1), from the
/// point of view of swbd, which owns that dialog's other end: `to-tag` is
/// swbd's tag, `from-tag` the transferor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// Call-ID of the dialog.
    pub call_id: String,
    /// The tag of the side receiving the Replaces (swbd's).
    pub to_tag: String,
    /// The tag of the other side.
    pub from_tag: String,
    /// `early-only`: replace only a dialog that is not yet confirmed.
    pub early_only: bool,
}

impl Replaces {
    /// The dialog id as swbd's dialog router knows it.
    pub fn dialog_id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.to_tag.clone(),
            remote_tag: self.from_tag.clone(),
        }
    }
}

/// A REFER's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The user to transfer to (`%HH` decoded, never a control character).
    pub user: String,
    /// The host of a `sip:` target, lowercased (empty for `tel:`).
    pub host: String,
    /// Attended transfer: the dialog whose other party is the target.
    pub replaces: Option<Replaces>,
    /// Names of the embedded headers that were dropped, escaped for logs.
    pub dropped: Vec<String>,
}

/// Read the `Refer-To` of `request` (exactly one, RFC 3515 §2.4.1).
pub fn refer_to(request: &Request) -> Result<ReferTo, Refusal> {
    let mut values = request.raw_values(&Name::REFER_TO);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(refuse(400, "Bad Request (exactly one Refer-To expected)"));
    };
    let target = NameAddr::parse(value, "Refer-To")
        .map_err(|_| refuse(400, "Bad Request (malformed Refer-To)"))?;
    let (user, host, headers) = match &target.uri {
        Uri::Sip(sip) => (
            target.uri.user(),
            sip.host_text().into_owned(),
            sip.headers().unwrap_or_default(),
        ),
        Uri::Tel(_) => (target.uri.user(), String::new(), ""),
        Uri::Other(_) => {
            return Err(refuse(
                416,
                "Unsupported URI Scheme (Refer-To must be sip:, sips: or tel:)",
            ));
        }
    };
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or(refuse(400, "Bad Request (Refer-To names no user)"))?;
    if user.len() > MAX_USER {
        return Err(refuse(400, "Bad Request (Refer-To user too long)"));
    }
    let mut replaces = None;
    let mut dropped = Vec::new();
    for (i, header) in headers.split('&').filter(|h| !h.is_empty()).enumerate() {
        if i >= MAX_HEADERS {
            return Err(refuse(400, "Bad Request (too many headers in Refer-To)"));
        }
        let (name, value) = header.split_once('=').unwrap_or((header, ""));
        if decode(name).eq_ignore_ascii_case("replaces") {
            if replaces.is_some() {
                return Err(refuse(400, "Bad Request (more than one Replaces)"));
            }
            let parsed = parse_replaces(&decode(value))
                .ok_or(refuse(400, "Bad Request (malformed Replaces in Refer-To)"))?;
            replaces = Some(parsed);
        } else {
            dropped.push(escape_for_log(name));
        }
    }
    Ok(ReferTo {
        user,
        host,
        replaces,
        dropped,
    })
}

/// A `Replaces` value (RFC 3891 §6.1): `call-id *(SEMI replaces-param)`
/// with `to-tag`, `from-tag` (both required) and `early-only`. `None`
/// when malformed, oversized or holding anything but visible ASCII.
pub fn parse_replaces(value: &str) -> Option<Replaces> {
    let mut parts = value.split(';').map(str::trim);
    let call_id = parts.next().filter(|c| ok_token(c, MAX_CALL_ID))?;
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    for p in parts {
        let (name, v) = p.split_once('=').unwrap_or((p, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "to-tag" if to_tag.is_none() => to_tag = Some(v.trim()),
            "from-tag" if from_tag.is_none() => from_tag = Some(v.trim()),
            "early-only" => early_only = true,
            "to-tag" | "from-tag" => return None,
            // Other generic parameters are allowed and ignored.
            _ => {}
        }
    }
    let to_tag = to_tag.filter(|t| ok_token(t, MAX_TAG))?;
    let from_tag = from_tag.filter(|t| ok_token(t, MAX_TAG))?;
    Some(Replaces {
        call_id: call_id.to_string(),
        to_tag: to_tag.to_string(),
        from_tag: from_tag.to_string(),
        early_only,
    })
}

fn ok_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

/// `%HH` escapes decoded; invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| char::from(*h).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A peer's header name for a log line: printable ASCII kept, the rest
/// `%HH`, at most 32 bytes.
fn escape_for_log(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes().take(32) {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `message/sipfrag` body of a NOTIFY: a status line (RFC 3515 §2.4.5).
pub fn sipfrag(code: u16) -> String {
    format!("SIP/2.0 {code} {}\r\n", reason_text(code))
}

fn reason_text(code: u16) -> &'static str {
    crate::sip::message::default_reason(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;

    fn refer(refer_to: &[&str]) -> Request {
        let mut text = String::from(
            "REFER sip:swbd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
             From: <sip:1002@pbx>;tag=b\r\nTo: <sip:1001@pbx>;tag=a\r\nCall-ID: c1\r\nCSeq: 5 REFER\r\n",
        );
        for r in refer_to {
            text.push_str(&format!("Refer-To: {r}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match SipMessage::parse(text.as_bytes(), true) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn blind_targets() {
        let t = refer_to(&refer(&["<sip:1003@PBX.example.com>"])).expect("ok");
        assert_eq!(
            (t.user.as_str(), t.host.as_str()),
            ("1003", "pbx.example.com")
        );
        assert_eq!(t.replaces, None);
        let t = refer_to(&refer(&["sip:1003@127.0.0.1;user=phone"])).expect("addr-spec");
        assert_eq!(t.user, "1003");
        let t = refer_to(&refer(&["<tel:+15550100>"])).expect("tel");
        assert_eq!((t.user.as_str(), t.host.as_str()), ("+15550100", ""));
        let t = refer_to(&refer(&["\"Carol\" <sip:carol%20x@pbx>"])).expect("escaped");
        assert_eq!(t.user, "carol x");
    }

    #[test]
    fn attended_targets_carry_the_dialog() {
        let t = refer_to(&refer(&[
            "<sip:1003@pbx?Replaces=abc%40h1%3Bto-tag%3Dswbd1%3Bfrom-tag%3Dphone2>",
        ]))
        .expect("ok");
        let r = t.replaces.expect("replaces");
        assert_eq!(
            r.dialog_id(),
            DialogId {
                call_id: "abc@h1".into(),
                local_tag: "swbd1".into(),
                remote_tag: "phone2".into(),
            }
        );
        assert!(!r.early_only);
        let r = parse_replaces("x;from-tag=2;to-tag=1;early-only").expect("ok");
        assert!(r.early_only && r.to_tag == "1" && r.from_tag == "2");
    }

    #[test]
    fn hostile_refer_tos_are_refused_or_defused() {
        // Embedded headers other than Replaces are dropped, named escaped.
        let t = refer_to(&refer(&[
            "<sip:1003@pbx?Subject=hi&Via=SIP%2F2.0%2FUDP%20evil&X%0D%0AY=1>",
        ]))
        .expect("defused");
        assert_eq!(t.user, "1003");
        assert_eq!(t.dropped, ["Subject", "Via", "X%0D%0AY"]);
        // An escaped CRLF in the user stays escaped text.
        let t = refer_to(&refer(&["<sip:1003%0D%0AContact:%20evil@pbx>"])).expect("text");
        assert!(!t.user.contains(['\r', '\n']), "{:?}", t.user);
        let cases: &[(&[&str], u16)] = &[
            (&[], 400),
            (&["<sip:1003@pbx>", "<sip:1004@pbx>"], 400),
            (&["<sip:pbx.example.com>"], 400),
            (&["<mailto:a@b>"], 416),
            (&["not a uri"], 400),
            (&["<sip:1003@pbx?Replaces=x%3Bto-tag%3D1>"], 400),
            (
                &["<sip:1003@pbx?Replaces=x%0D%0AVia%3Bto-tag%3D1%3Bfrom-tag%3D2>"],
                400,
            ),
            (
                &["<sip:1003@pbx?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=b>"],
                400,
            ),
        ];
        for (values, code) in cases {
            let got = refer_to(&refer(values)).map(|_| ()).map_err(|r| r.code);
            assert_eq!(got, Err(*code), "{values:?}");
        }
        let long = format!("<sip:{}@pbx>", "1".repeat(MAX_USER + 1));
        assert!(refer_to(&refer(&[long.as_str()])).is_err());
        let many = format!("<sip:1003@pbx?{}>", ["a=1"; MAX_HEADERS + 1].join("&"));
        assert!(refer_to(&refer(&[many.as_str()])).is_err());
    }

    #[test]
    fn sipfrags_are_status_lines() {
        assert_eq!(sipfrag(100), "SIP/2.0 100 Trying\r\n");
        assert_eq!(sipfrag(200), "SIP/2.0 200 OK\r\n");
        assert_eq!(sipfrag(486), "SIP/2.0 486 Busy Here\r\n");
        assert_eq!(
            sipfrag(481),
            "SIP/2.0 481 Call/Transaction Does Not Exist\r\n"
        );
        assert_eq!(sipfrag(499), "SIP/2.0 499 Request Failure\r\n");
    }
}
