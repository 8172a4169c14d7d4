//! [`SavedCall`]: what the state store keeps of a bridged call so that a
//! restarted swbd (or a surviving one) can end it properly: both legs'
//! dialogs (RFC 3261 §12.1: Call-ID, tags, CSeqs, remote target, route
//! set, the flow), the media node and sessions, the route and the times.
//!
//! Bounded: every string at most [`MAX_FIELD`] bytes, at most
//! [`MAX_ROUTES`] routes per dialog, the JSON at most [`MAX_RECORD`]; a
//! call that does not fit is not saved (it still works, it just does not
//! survive a restart) and a stored record that does not fit is refused
//! when read. Every value was parsed from a peer's message by the SIP
//! layer before it got here, and is re-checked (URI and name-addr parse)
//! when read back.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dialog::{Dialog, DialogId};
use crate::sip::{NameAddr, Uri};
use crate::transport::{Target, Transport};

/// Longest string field kept.
pub const MAX_FIELD: usize = 2048;
/// Most routes kept per dialog.
pub const MAX_ROUTES: usize = 16;
/// Longest record (JSON bytes).
pub const MAX_RECORD: usize = 32 * 1024;
/// Record format; a record of another version is not restored.
pub const VERSION: u32 = 1;

/// Why a call cannot be saved or a record cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedCallError {
    /// A field is longer than the bounds allow.
    #[error("{0} is too long to save")]
    TooLong(&'static str),
    /// The stored JSON is not a record of this version.
    #[error("unreadable call record: {0}")]
    Unreadable(String),
    /// A stored field does not parse back.
    #[error("call record field {0} is invalid")]
    Invalid(&'static str),
}

/// One leg's dialog as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
    /// Our URI (From of our requests), as a name-addr without tag.
    pub local_uri: String,
    /// The peer's URI (To of our requests), as a name-addr without tag.
    pub remote_uri: String,
    /// Our last CSeq.
    pub local_seq: u32,
    /// The peer's last CSeq.
    pub remote_seq: Option<u32>,
    /// The peer's Contact (Request-URI of our requests).
    pub remote_target: String,
    /// Route set, in the order our requests use it.
    pub route_set: Vec<String>,
    /// Our Contact URI.
    pub local_contact: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The peer's address on the flow.
    pub remote: SocketAddr,
    /// Our socket on the flow (UDP).
    pub local: Option<SocketAddr>,
}

/// A bridged call as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCall {
    /// [`VERSION`].
    pub version: u32,
    /// swbd call id.
    pub id: String,
    /// The instance that runs the call (`state.instance_id`).
    pub instance: String,
    /// Caller (who authenticated).
    pub caller: String,
    /// Request-URI user.
    pub destination: String,
    /// Route matched.
    pub route_id: String,
    /// Dialplan version.
    pub dialplan_version: String,
    /// Media node name.
    pub node: String,
    /// A-leg's media session.
    pub a_session: String,
    /// B-leg's media session.
    pub b_session: String,
    /// Codec in use (for the CDR).
    pub codec: String,
    /// The dial target that answered.
    pub b_target: String,
    /// INVITE arrival, Unix milliseconds.
    pub created_at_ms: u64,
    /// Answer, Unix milliseconds.
    pub answered_at_ms: u64,
    /// The caller's dialog.
    pub a: SavedDialog,
    /// The callee's dialog.
    pub b: SavedDialog,
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `ms` Unix milliseconds name.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn bounded(v: &str, what: &'static str) -> Result<String, SavedCallError> {
    if v.len() > MAX_FIELD {
        return Err(SavedCallError::TooLong(what));
    }
    Ok(v.to_string())
}

impl SavedDialog {
    /// The stored form of `d`.
    pub fn of(d: &Dialog) -> Result<Self, SavedCallError> {
        if d.route_set.len() > MAX_ROUTES {
            return Err(SavedCallError::TooLong("route set"));
        }
        Ok(Self {
            call_id: bounded(&d.id.call_id, "Call-ID")?,
            local_tag: bounded(&d.id.local_tag, "local tag")?,
            remote_tag: bounded(&d.id.remote_tag, "remote tag")?,
            local_uri: bounded(&d.local_uri.to_string(), "local URI")?,
            remote_uri: bounded(&d.remote_uri.to_string(), "remote URI")?,
            local_seq: d.local_seq,
            remote_seq: d.remote_seq,
            remote_target: bounded(&d.remote_target.to_string(), "remote target")?,
            route_set: d
                .route_set
                .iter()
                .map(|r| bounded(r, "route"))
                .collect::<Result<_, _>>()?,
            local_contact: bounded(&d.local_contact, "local contact")?,
            transport: d.target.transport.to_string(),
            remote: d.target.remote,
            local: d.target.local,
        })
    }

    /// The dialog back, its CSeq moved on by `cseq_margin` (requests we
    /// sent after the last save must not be outnumbered, RFC 3261
    /// §12.2.1.1: the CSeq only has to grow). The peer's CSeq is not
    /// checked until its next request (it may have sent some meanwhile).
    pub fn to_dialog(&self, cseq_margin: u32) -> Result<Dialog, SavedCallError> {
        let field = |v: &str, what: &'static str| -> Result<(), SavedCallError> {
            if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
                return Err(SavedCallError::Invalid(what));
            }
            Ok(())
        };
        field(&self.call_id, "a.call_id")?;
        field(&self.local_tag, "local_tag")?;
        field(&self.remote_tag, "remote_tag")?;
        field(&self.local_contact, "local_contact")?;
        if self.call_id.is_empty() || self.local_tag.is_empty() || self.remote_tag.is_empty() {
            return Err(SavedCallError::Invalid("dialog id"));
        }
        if self.route_set.len() > MAX_ROUTES {
            return Err(SavedCallError::Invalid("route_set"));
        }
        for r in &self.route_set {
            field(r, "route_set")?;
            NameAddr::parse(r, "Route").map_err(|_| SavedCallError::Invalid("route_set"))?;
        }
        let local_uri = NameAddr::parse(&self.local_uri, "From")
            .map_err(|_| SavedCallError::Invalid("local_uri"))?;
        let remote_uri = NameAddr::parse(&self.remote_uri, "To")
            .map_err(|_| SavedCallError::Invalid("remote_uri"))?;
        let remote_target =
            Uri::parse(&self.remote_target).ok_or(SavedCallError::Invalid("remote_target"))?;
        let transport = match self.transport.as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return Err(SavedCallError::Invalid("transport")),
        };
        Ok(Dialog {
            id: DialogId {
                call_id: self.call_id.clone(),
                local_tag: self.local_tag.clone(),
                remote_tag: self.remote_tag.clone(),
            },
            local_uri,
            remote_uri,
            local_seq: self.local_seq.wrapping_add(cseq_margin),
            remote_seq: None,
            remote_target,
            route_set: self.route_set.clone(),
            local_contact: self.local_contact.clone(),
            target: Target {
                transport,
                remote: self.remote,
                local: self.local,
            },
        })
    }
}

impl SavedCall {
    /// JSON for the store; an error when the record is over its bounds.
    pub fn to_json(&self) -> Result<String, SavedCallError> {
        let json =
            serde_json::to_string(self).map_err(|e| SavedCallError::Unreadable(e.to_string()))?;
        if json.len() > MAX_RECORD {
            return Err(SavedCallError::TooLong("call record"));
        }
        Ok(json)
    }

    /// A record read from the store.
    pub fn from_json(json: &str) -> Result<Self, SavedCallError> {
        if json.len() > MAX_RECORD {
            return Err(SavedCallError::TooLong("call record"));
        }
        let call: SavedCall =
            serde_json::from_str(json).map_err(|e| SavedCallError::Unreadable(e.to_string()))?;
        if call.version != VERSION {
            return Err(SavedCallError::Unreadable(format!(
                "version {} (this swbd reads {VERSION})",
                call.version
            )));
        }
        for (v, what) in [
            (&call.id, "id"),
            (&call.node, "node"),
            (&call.a_session, "a_session"),
            (&call.b_session, "b_session"),
        ] {
            if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_control()) {
                return Err(SavedCallError::Invalid(what));
            }
        }
        Ok(call)
    }

    /// Whether the dialogs changed in a way a restore needs (CSeqs we
    /// sent, targets, routes): worth saving again.
    pub fn dialogs_differ(&self, other: &SavedCall) -> bool {
        self.a != other.a || self.b != other.b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sip::SipMessage;
    use crate::sip::message::HeaderAccess;

    const INVITE: &str = "INVITE sip:1002@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKabc
Max-Forwards: 70
From: \"Alice \\\"A\\\"\" <sip:1001@127.0.0.1>;tag=aaa
To: <sip:1002@127.0.0.1>
Call-ID: call-1@host
CSeq: 7 INVITE
Contact: <sip:1001@10.0.0.5:5071;transport=udp>
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Content-Length: 0

";

    pub(crate) fn dialog() -> Dialog {
        let SipMessage::Request(invite) =
            SipMessage::parse(INVITE.replace('\n', "\r\n").as_bytes(), true).expect("parses")
        else {
            panic!("a request")
        };
        let target = Target {
            transport: Transport::Udp,
            remote: "127.0.0.1:5071".parse().expect("addr"),
            local: Some("127.0.0.1:5060".parse().expect("addr")),
        };
        Dialog::as_uas(&invite, "bbb", "sip:swbd@127.0.0.1:5060".into(), target).expect("dialog")
    }

    pub(crate) fn call(a: SavedDialog, b: SavedDialog) -> SavedCall {
        SavedCall {
            version: VERSION,
            id: "abc".into(),
            instance: "swbd-1".into(),
            caller: "1001".into(),
            destination: "1002".into(),
            route_id: "users".into(),
            dialplan_version: "v".into(),
            node: "rtp-a".into(),
            a_session: "s1".into(),
            b_session: "s2".into(),
            codec: "PCMU".into(),
            b_target: "user/1002".into(),
            created_at_ms: 1,
            answered_at_ms: 2,
            a,
            b,
        }
    }

    #[test]
    fn a_dialog_survives_the_store_and_builds_the_same_bye() {
        let mut live = dialog();
        let saved = SavedDialog::of(&live).expect("fits");
        let json = call(saved.clone(), saved).to_json().expect("serializes");
        let back = SavedCall::from_json(&json).expect("reads back");
        let mut restored = back.a.to_dialog(0).expect("a dialog");
        let want = live.request(crate::sip::Method::Bye, None);
        let got = restored.request(crate::sip::Method::Bye, None);
        assert_eq!(
            got.to_bytes(),
            want.to_bytes(),
            "the same BYE, byte for byte"
        );
        assert_eq!(restored.target, live.target);
        let mut ahead = back.a.to_dialog(16).expect("a dialog");
        let bye = ahead.request(crate::sip::Method::Bye, None);
        assert_eq!(
            bye.cseq().expect("cseq").number,
            want.cseq().expect("cseq").number + 16,
            "the margin covers requests sent after the last save"
        );
    }

    #[test]
    fn oversize_and_malformed_records_are_refused() {
        let mut d = dialog();
        d.route_set = vec!["<sip:p;lr>".into(); MAX_ROUTES + 1];
        assert_eq!(
            SavedDialog::of(&d),
            Err(SavedCallError::TooLong("route set"))
        );
        let mut d = dialog();
        d.local_contact = "x".repeat(MAX_FIELD + 1);
        assert!(SavedDialog::of(&d).is_err());

        let saved = SavedDialog::of(&dialog()).expect("fits");
        let mut bad = saved.clone();
        bad.remote_target = "not a uri".into();
        assert_eq!(
            bad.to_dialog(0).err(),
            Some(SavedCallError::Invalid("remote_target"))
        );
        let mut bad = saved.clone();
        bad.route_set = vec!["<sip:p;lr>\r\nX-Injected: 1".into()];
        assert!(bad.to_dialog(0).is_err(), "no CRLF back on the wire");
        let mut bad = saved.clone();
        bad.transport = "sctp".into();
        assert!(bad.to_dialog(0).is_err());

        assert!(SavedCall::from_json("{").is_err());
        assert!(SavedCall::from_json(&" ".repeat(MAX_RECORD + 1)).is_err());
        let mut other = call(saved.clone(), saved.clone());
        other.version = VERSION + 1;
        let json = serde_json::to_string(&other).expect("json");
        assert!(SavedCall::from_json(&json).is_err());
        let mut other = call(saved.clone(), saved);
        other.node = "a\nb".into();
        let json = serde_json::to_string(&other).expect("json");
        assert_eq!(
            SavedCall::from_json(&json),
            Err(SavedCallError::Invalid("node"))
        );
    }
}
