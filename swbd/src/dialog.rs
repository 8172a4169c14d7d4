//! Dialogs (RFC 3261 §12): the state two user agents share between an
//! INVITE's 2xx and the BYE, and how requests inside them are built and
//! checked.
//!
//! - [`DialogId`]: Call-ID + local tag + remote tag.
//! - [`Dialog`]: one side's dialog state, created as UAS (§12.1.1) or UAC
//!   (§12.1.2); builds in-dialog requests (§12.2.1) and checks incoming ones
//!   (§12.2.2).
//!
//! NAT: in-dialog requests go to the *flow* the dialog was set up over (the
//! address the INVITE or its answer really came from), not to the Contact's
//! host, so phones behind NAT get their BYE. The Contact stays the
//! Request-URI, as RFC 3261 requires.

use crate::sip::Name;

use crate::sip::message::HeaderAccess;
use crate::sip::{Method, NameAddr, Request, Response, Uri};
use crate::transport::Target;

/// Identifies a dialog from our side (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The id an incoming in-dialog request names: its To tag is ours.
    pub fn of_incoming(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.call_id().ok()?.to_string(),
            local_tag: request.header_to().ok()?.tag()?.to_string(),
            remote_tag: request.header_from().ok()?.tag()?.to_string(),
        })
    }
}

/// Why a dialog could not be formed or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// A header the dialog needs is missing or malformed.
    #[error("{0}")]
    Malformed(String),
    /// RFC 3261 §12.2.2: CSeq lower than the last one seen.
    #[error("CSeq out of order")]
    CSeqOutOfOrder,
}

impl DialogError {
    /// SIP status for the peer.
    pub fn status_code(&self) -> u16 {
        match self {
            DialogError::Malformed(_) => 400,
            DialogError::CSeqOutOfOrder => 500,
        }
    }
}

/// Dialog state (RFC 3261 §12.1).
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Id.
    pub id: DialogId,
    /// Our URI (From of our requests), without tag.
    pub local_uri: NameAddr,
    /// Peer's URI (To of our requests), without tag.
    pub remote_uri: NameAddr,
    /// Our CSeq counter.
    pub local_seq: u32,
    /// Last CSeq seen from the peer.
    pub remote_seq: Option<u32>,
    /// Peer's Contact: the Request-URI of our requests.
    pub remote_target: Uri,
    /// Route set (Record-Route), in the order our requests use it.
    pub route_set: Vec<String>,
    /// Our Contact URI.
    pub local_contact: String,
    /// The flow in-dialog requests go over.
    pub target: Target,
}

fn malformed(e: impl std::fmt::Display) -> DialogError {
    DialogError::Malformed(e.to_string())
}

fn without_tag(mut na: NameAddr) -> NameAddr {
    na.params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
    na
}

fn first_contact<M: HeaderAccess>(m: &M) -> Result<Uri, DialogError> {
    match m.contacts().map_err(malformed)? {
        crate::sip::ContactList::Contacts(list) => list
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or_else(|| DialogError::Malformed("missing Contact header".into())),
        _ => Err(DialogError::Malformed("missing Contact header".into())),
    }
}

fn record_routes<M: HeaderAccess>(m: &M) -> Vec<String> {
    m.raw_values(&Name::RECORD_ROUTE)
        .flat_map(crate::sip::header::split_list)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Dialog {
    /// UAS side, from an INVITE we answer with `local_tag` (RFC 3261 §12.1.1).
    pub fn as_uas(
        invite: &Request,
        local_tag: &str,
        local_contact: String,
        target: Target,
    ) -> Result<Dialog, DialogError> {
        let from = invite.header_from().map_err(malformed)?;
        let to = invite.header_to().map_err(malformed)?;
        let remote_tag = from
            .tag()
            .ok_or_else(|| DialogError::Malformed("From header without tag".into()))?
            .to_string();
        let cseq = invite.cseq().map_err(malformed)?;
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id().map_err(malformed)?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            local_seq: u32::from(rand::random::<u16>()) + 1,
            remote_seq: Some(cseq.number),
            remote_target: first_contact(invite)?,
            route_set: record_routes(invite),
            local_contact,
            target,
        })
    }

    /// UAC side, from the INVITE we sent and a 2xx (or 1xx with a To tag)
    /// response (RFC 3261 §12.1.2).
    pub fn as_uac(
        invite: &Request,
        response: &Response,
        local_contact: String,
        target: Target,
    ) -> Result<Dialog, DialogError> {
        let from = invite.header_from().map_err(malformed)?;
        let to = response.header_to().map_err(malformed)?;
        let local_tag = from
            .tag()
            .ok_or_else(|| DialogError::Malformed("our INVITE has no From tag".into()))?
            .to_string();
        let remote_tag = to
            .tag()
            .ok_or_else(|| DialogError::Malformed("response without To tag".into()))?
            .to_string();
        let mut route_set = record_routes(response);
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id().map_err(malformed)?.to_string(),
                local_tag,
                remote_tag,
            },
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            local_seq: invite.cseq().map_err(malformed)?.number,
            remote_seq: None,
            remote_target: first_contact(response)?,
            route_set,
            local_contact,
            target,
        })
    }

    /// A new request in the dialog (RFC 3261 §12.2.1.1). ACK reuses the
    /// INVITE's CSeq number (`ack_of`); everything else takes the next one.
    pub fn request(&mut self, method: Method, ack_of: Option<u32>) -> Request {
        let number = match ack_of {
            Some(n) => n,
            None => {
                self.local_seq = self.local_seq.wrapping_add(1);
                self.local_seq
            }
        };
        let mut r = Request::new(method.clone(), self.remote_target.clone());
        r.headers.insert(Name::MAX_FORWARDS, "70");
        for route in &self.route_set {
            r.headers.insert(Name::ROUTE, route.clone());
        }
        r.headers
            .insert(Name::FROM, tagged(&self.local_uri, &self.id.local_tag));
        r.headers
            .insert(Name::TO, tagged(&self.remote_uri, &self.id.remote_tag));
        r.headers.insert(Name::CALL_ID, self.id.call_id.clone());
        let mut cseq = String::with_capacity(11 + method.as_str().len());
        crate::sip::message::push_decimal(&mut cseq, number as usize);
        cseq.push(' ');
        cseq.push_str(method.as_str());
        r.headers.insert(Name::CSEQ, cseq);
        if !self.local_contact.is_empty() {
            let mut contact = String::with_capacity(self.local_contact.len() + 2);
            contact.push('<');
            contact.push_str(&self.local_contact);
            contact.push('>');
            r.headers.insert(Name::CONTACT, contact);
        }
        r
    }

    /// Check an incoming in-dialog request (RFC 3261 §12.2.2): CSeq must
    /// grow. (Target refresh is [`Dialog::refresh_target`], applied only
    /// when the refreshing request succeeds.)
    pub fn accept_incoming(&mut self, request: &Request) -> Result<(), DialogError> {
        let cseq = request.cseq().map_err(malformed)?;
        if request.method != Method::Ack {
            if let Some(last) = self.remote_seq
                && cseq.number <= last
            {
                return Err(DialogError::CSeqOutOfOrder);
            }
            self.remote_seq = Some(cseq.number);
        }
        Ok(())
    }

    /// Remote target refresh (RFC 3261 §12.2.2): a successful re-INVITE or
    /// UPDATE replaces the remote target with its Contact.
    pub fn refresh_target(&mut self, request: &Request) {
        if matches!(request.method, Method::Invite | Method::Update)
            && let Ok(uri) = first_contact(request)
        {
            self.remote_target = uri;
        }
    }
}

/// `name-addr;tag=TAG` printed without the formatting machinery (a From
/// or To of every in-dialog request).
fn tagged(addr: &NameAddr, tag: &str) -> String {
    let mut out = String::with_capacity(addr.printed_len_hint() + 5 + tag.len());
    addr.push_to(&mut out);
    out.push_str(";tag=");
    out.push_str(tag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;
    use crate::transport::Transport;

    fn target() -> Target {
        Target {
            transport: Transport::Udp,
            remote: "127.0.0.1:5071".parse().expect("addr"),
            local: None,
        }
    }

    fn parse_req(s: &str) -> Request {
        match SipMessage::parse(s.replace('\n', "\r\n").as_bytes(), true).expect("parses") {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => panic!("not a request"),
        }
    }

    const INVITE: &str = "INVITE sip:1002@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKabc
Max-Forwards: 70
From: \"Alice\" <sip:1001@127.0.0.1>;tag=aaa
To: <sip:1002@127.0.0.1>
Call-ID: call-1
CSeq: 7 INVITE
Contact: <sip:1001@10.0.0.5:5071>
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Content-Length: 0

";

    #[test]
    fn uas_dialog_builds_bye_per_rfc3261_12_2_1_1() {
        let invite = parse_req(INVITE);
        let mut d = Dialog::as_uas(&invite, "bbb", "sip:sb@127.0.0.1:5060".into(), target())
            .expect("dialog");
        assert_eq!(d.id.remote_tag, "aaa");
        assert_eq!(d.remote_seq, Some(7));
        let start = d.local_seq;
        let bye = d.request(Method::Bye, None);
        assert_eq!(bye.uri.to_string(), "sip:1001@10.0.0.5:5071");
        assert_eq!(bye.cseq().expect("cseq").number, start + 1);
        assert_eq!(bye.header_from().expect("from").tag(), Some("bbb"));
        assert_eq!(bye.header_to().expect("to").tag(), Some("aaa"));
        let routes: Vec<_> = bye.raw_values(&Name::ROUTE).collect();
        assert_eq!(
            routes,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
    }

    #[test]
    fn incoming_cseq_must_grow() {
        let invite = parse_req(INVITE);
        let mut d =
            Dialog::as_uas(&invite, "bbb", "sip:sb@127.0.0.1".into(), target()).expect("dialog");
        let bye = parse_req(
            &INVITE
                .replace("INVITE sip", "BYE sip")
                .replace("7 INVITE", "6 BYE"),
        );
        assert_eq!(d.accept_incoming(&bye), Err(DialogError::CSeqOutOfOrder));
        let bye = parse_req(
            &INVITE
                .replace("INVITE sip", "BYE sip")
                .replace("7 INVITE", "8 BYE"),
        );
        assert_eq!(d.accept_incoming(&bye), Ok(()));
    }

    #[test]
    fn dialog_needs_from_tag() {
        let invite = parse_req(&INVITE.replace(";tag=aaa", ""));
        assert!(Dialog::as_uas(&invite, "b", "sip:x@y".into(), target()).is_err());
    }
}
