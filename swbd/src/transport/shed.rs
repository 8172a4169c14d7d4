//! Early shedding: a new INVITE that overload control refuses is answered
//! `503` from its raw head, in the UDP receive loop, before the parse, the
//! worker hand-off and the transaction layer; the ACK to that `503` is
//! recognised there too and dropped.
//!
//! # Why
//!
//! At twice the capacity every other new INVITE is refused. Through the
//! normal path a refusal cost a copy into the worker queue, a full parse,
//! a transaction-table lookup, the front door and a [`crate::sip::Response`]
//! built and printed; the caller's ACK to it then cost another parse and
//! lookups before it was found to belong to nothing. That is a good share
//! of a completed call's cost, spent on calls that do not happen.
//!
//! # The rule
//!
//! RFC 3261 lets a server answer a request statelessly (§8.2.7 with
//! §16.11's stateless behaviour): the response copies the request's `Via`
//! headers (in order), `From`, `To` (with a tag added), `Call-ID` and
//! `CSeq` (§8.2.6.2). A stateless server keeps no transaction, so the ACK
//! of a non-2xx final response it sent is absorbed (§17.2.1's ACK goes to
//! a transaction that does not exist). Here:
//!
//! - Only a head that scans as well-formed is answered here: the start line
//!   `INVITE <uri> SIP/2.0`; every header line of printable ASCII (no folding,
//!   no control bytes, no bytes above 0x7E); exactly one `From`, `To`,
//!   `Call-ID` and `CSeq` (`<digits> INVITE`), at least one `Via`; a `To`
//!   without any `tag` (anything that could be in a dialog goes the normal
//!   way); a top `Via` of `SIP/2.0/UDP`, one value, with a bare `rport` and
//!   no `received` or `maddr` (RFC 3581: the answer goes to the packet's
//!   source, which is where the socket is). Anything else goes the normal
//!   way, whose parser answers it properly: no peer byte is put on the
//!   wire here unless it passed these checks, and only inside the header
//!   values it came in.
//! - The admission decision is overload control's own
//!   ([`crate::overload::Overload::decide_early`]); an admitted INVITE
//!   carries it to the front door ([`crate::overload::ticket`]), so it is
//!   decided and counted once.
//! - `acl.allow` is asked first: a source outside it gets nothing, as on
//!   the normal path.
//! - A retransmission of an INVITE admitted here goes the normal way,
//!   undecided, to its transaction ([`super::recent`]): the normal path
//!   looks a retransmission up before screening it, and so must this.
//! - The `503`'s To tag is one per process ([`EarlyShed::tag`]); an ACK
//!   whose `To` carries it is the ACK of an early `503`, and is dropped
//!   and counted. Forging one only drops the forger's own ACK.
//!
//! Off (everything goes the normal way) while `sip.rate_limit` is on (its
//! per-source buckets must see every out-of-dialog request, and its `drop`
//! action must stay silent), while `capture.hep` copies every message to a
//! collector (it would not see what is shed here), and when
//! `sip.overload.enabled` or `sip.overload.early_shed` is false. The
//! capture store is no reason to stay off: it keeps the messages of calls,
//! and a refused INVITE never becomes one (its pending flow was never
//! claimed, only evicted), so the INVITEs, `503`s and ACKs shed here are
//! counted, not captured.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::sip::Direction;
use crate::overload::Overload;
use crate::overload::ticket::Ticket;
use crate::sip::Method;

use super::recent::RecentInvites;
use super::{SipCounters, Source};

/// Asks `acl.allow` (the front door's check) about a source.
pub type Admits = Arc<dyn Fn(&Source) -> bool + Send + Sync>;

/// What the receive loop does with a datagram.
#[derive(Debug)]
pub(crate) enum Early {
    /// The normal path, undecided.
    Pass,
    /// The normal path, with this INVITE's admission decided.
    Decided(Ticket),
    /// Answered or dropped here.
    Done,
}

/// The early shedding of one endpoint's UDP sockets.
pub struct EarlyShed {
    overload: Overload,
    admits: Admits,
    counters: Arc<SipCounters>,
    /// The To tag of every early `503` (`shed` and 16 random characters).
    tag: String,
    retry_after: String,
    server: String,
    /// What was admitted here lately: a retransmission of it must reach
    /// its transaction, not a refusal.
    recent: RecentInvites,
}

impl std::fmt::Debug for EarlyShed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyShed")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl EarlyShed {
    /// Shed for `overload`, asking `admits` about each source; the `503`s
    /// carry `Server: user_agent`.
    pub fn new(
        overload: Overload,
        admits: Admits,
        counters: Arc<SipCounters>,
        user_agent: &str,
    ) -> Self {
        Self {
            retry_after: overload.retry_after_secs().to_string(),
            overload,
            admits,
            counters,
            tag: format!("shed{}", crate::sip::random_token(16)),
            server: user_agent.to_string(),
            recent: RecentInvites::default(),
        }
    }

    /// The To tag of the early `503`s.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Look at a datagram before it is copied and parsed: shed it, absorb
    /// it, or let it through (with its admission decided). `send` puts a
    /// `503` on the socket it came in on, to `remote`.
    pub(crate) fn screen(
        &self,
        data: &[u8],
        source: &Source,
        send: impl FnOnce(&[u8], SocketAddr),
    ) -> Early {
        if data.starts_with(b"ACK ") {
            return self.ack(data);
        }
        if !data.starts_with(b"INVITE ") {
            return Early::Pass;
        }
        let Some(head) = Head::scan(data) else {
            return Early::Pass;
        };
        let key = self.recent.key(
            head.call_id,
            head.cseq,
            head.vias.first().copied().unwrap_or_default(),
        );
        if self.recent.contains(key) {
            return Early::Pass; // a retransmission: to its transaction
        }
        if !(self.admits)(source) {
            SipCounters::inc(&self.counters.acl_dropped);
            return Early::Done;
        }
        let ticket = self.overload.decide_early();
        if ticket.decided().is_ok() {
            self.recent.insert(key, std::time::Instant::now());
            return Early::Decided(ticket);
        }
        let answer = head.refusal(source.remote, &self.tag, &self.retry_after, &self.server);
        let counters = &self.counters;
        counters
            .messages
            .request(Direction::Received, &Method::Invite);
        SipCounters::inc(&counters.early_shed);
        SipCounters::inc(&counters.stateless_replies);
        send(&answer, source.remote);
        Early::Done
    }

    /// The ACK of an early `503` is dropped; any other passes.
    fn ack(&self, data: &[u8]) -> Early {
        let carries_tag = headers(data)
            .find(|(name, _)| is(name, b"to", b"t"))
            .is_some_and(|(_, value)| has_tag(value, self.tag.as_bytes()));
        if !carries_tag {
            return Early::Pass;
        }
        self.counters
            .messages
            .request(Direction::Received, &Method::Ack);
        SipCounters::inc(&self.counters.shed_acks_absorbed);
        Early::Done
    }
}

/// The header lines of a head, as (name, value), trimmed; stops at the
/// empty line. Lines that are not `name: value` come out with an empty
/// name (the ACK check ignores them; [`Head::scan`] refuses them).
fn headers(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines(data)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|line| match memchr::memchr(b':', line) {
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                (
                    name.trim_ascii_end(),
                    value.get(1..).unwrap_or_default().trim_ascii(),
                )
            }
            None => (&[][..], line),
        })
}

/// The lines of `data` without their line ends (CRLF or LF).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// `name` is `long` or its compact form `short`, in any case.
fn is(name: &[u8], long: &[u8], short: &[u8]) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
}

/// `value` (a To header's) has the parameter `tag=<tag>`.
fn has_tag(value: &[u8], tag: &[u8]) -> bool {
    let mut rest = value;
    while let Some(at) = memchr::memmem::find(rest, tag) {
        let before = rest.get(..at).unwrap_or_default();
        let after = rest.get(at + tag.len()..).unwrap_or_default();
        let named = before
            .get(before.len().saturating_sub(5)..)
            .is_some_and(|p| p.eq_ignore_ascii_case(b";tag="));
        let ends = matches!(after.first(), None | Some(b';' | b' ' | b'\t'));
        if named && ends {
            return true;
        }
        rest = after;
    }
    false
}

/// A header line's bytes may be copied into a response: printable ASCII
/// and tabs only.
fn printable(line: &[u8]) -> bool {
    line.iter()
        .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
}

/// The parts of a well-formed new INVITE's head a `503` copies.
#[derive(Debug, PartialEq, Eq)]
struct Head<'a> {
    /// Every Via value in order; the first is the top one.
    vias: Vec<&'a [u8]>,
    from: &'a [u8],
    to: &'a [u8],
    call_id: &'a [u8],
    cseq: &'a [u8],
}

impl<'a> Head<'a> {
    /// The head of a new INVITE this module may answer, or `None` (the
    /// normal path's).
    fn scan(data: &'a [u8]) -> Option<Self> {
        // The head must end in an empty line (a datagram cut short does not).
        memchr::memmem::find(data, b"\n\r\n").or_else(|| memchr::memmem::find(data, b"\n\n"))?;
        let mut lines = lines(data);
        let start = lines.next()?;
        let uri = start.strip_prefix(b"INVITE ")?.strip_suffix(b" SIP/2.0")?;
        if uri.is_empty() || !uri.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
        let mut vias = Vec::new();
        let mut ended = false;
        for line in lines {
            if line.is_empty() {
                ended = true;
                break;
            }
            if matches!(line.first(), Some(b' ' | b'\t')) || !printable(line) {
                return None;
            }
            let colon = memchr::memchr(b':', line)?;
            let (name, value) = line.split_at(colon);
            let name = name.trim_ascii_end();
            let value = value.get(1..)?.trim_ascii();
            let slot = if is(name, b"via", b"v") {
                vias.push(value);
                continue;
            } else if is(name, b"from", b"f") {
                &mut from
            } else if is(name, b"to", b"t") {
                &mut to
            } else if is(name, b"call-id", b"i") {
                &mut call_id
            } else if name.eq_ignore_ascii_case(b"cseq") {
                &mut cseq
            } else {
                continue;
            };
            if slot.is_some() || value.is_empty() {
                return None;
            }
            *slot = Some(value);
        }
        let head = Self {
            vias,
            from: from?,
            to: to?,
            call_id: call_id?,
            cseq: cseq_number(cseq?)?,
        };
        let well_formed = ended
            && head.vias.first().is_some_and(|v| top_via_ok(v))
            && head.vias.iter().all(|v| !v.is_empty())
            && !head.to.windows(3).any(|w| w.eq_ignore_ascii_case(b"tag"))
            && head.call_id.iter().all(|&b| (0x21..=0x7e).contains(&b));
        well_formed.then_some(head)
    }

    /// The `503` for this INVITE, from `remote`.
    fn refusal(&self, remote: SocketAddr, tag: &str, retry_after: &str, server: &str) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(256 + self.vias.iter().map(|v| v.len() + 7).sum::<usize>());
        out.extend_from_slice(b"SIP/2.0 503 Service Unavailable (overloaded)\r\n");
        for (i, via) in self.vias.iter().enumerate() {
            out.extend_from_slice(b"Via: ");
            if i == 0 {
                stamp_top_via(via, remote, &mut out);
            } else {
                out.extend_from_slice(via);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"From: ");
        out.extend_from_slice(self.from);
        out.extend_from_slice(b"\r\nTo: ");
        out.extend_from_slice(self.to);
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(b"\r\nCall-ID: ");
        out.extend_from_slice(self.call_id);
        out.extend_from_slice(b"\r\nCSeq: ");
        out.extend_from_slice(self.cseq);
        out.extend_from_slice(b" INVITE\r\nRetry-After: ");
        out.extend_from_slice(retry_after.as_bytes());
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        out
    }
}

/// A CSeq of `<number> INVITE` (RFC 3261 §8.1.1.5: the number below
/// 2**31): its number.
fn cseq_number(value: &[u8]) -> Option<&[u8]> {
    let mut words = value
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|w| !w.is_empty());
    let number = words.next()?;
    let method = words.next()?;
    if words.next().is_some() || method != b"INVITE" {
        return None;
    }
    let n: u32 = std::str::from_utf8(number).ok()?.parse().ok()?;
    (n < 1 << 31 && number.iter().all(u8::is_ascii_digit)).then_some(number)
}

/// A top Via this module may answer: `SIP/2.0/UDP <sent-by>` and
/// parameters, one value (no comma), a bare `rport`, no `received` and no
/// `maddr`.
fn top_via_ok(via: &[u8]) -> bool {
    if memchr::memchr(b',', via).is_some() {
        return false;
    }
    let mut parts = via.split(|&b| b == b';');
    let Some(sent) = parts.next() else {
        return false;
    };
    let Some(sent_by) = sent
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/2.0/UDP "))
        .and_then(|_| sent.get(12..))
        .map(<[u8]>::trim_ascii)
    else {
        return false;
    };
    if sent_by.is_empty() || sent_by.iter().any(|b| b.is_ascii_whitespace()) {
        return false;
    }
    let mut rport = 0;
    for param in parts {
        let param = param.trim_ascii();
        let name = param
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if name.is_empty()
            || name.eq_ignore_ascii_case(b"received")
            || name.eq_ignore_ascii_case(b"maddr")
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"rport") {
            if param.len() != name.len() {
                return false; // rport with a value: not ours to fill
            }
            rport += 1;
        }
    }
    rport == 1
}

/// The top Via with `rport` filled in and `received` added (RFC 3581 §4;
/// [`top_via_ok`] held).
fn stamp_top_via(via: &[u8], remote: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let mut parts = via.split(|&b| b == b';');
    if let Some(sent) = parts.next() {
        out.extend_from_slice(sent.trim_ascii_end());
    }
    for param in parts {
        let param = param.trim_ascii();
        out.push(b';');
        if param.eq_ignore_ascii_case(b"rport") {
            let _ = write!(out, "rport={}", remote.port());
        } else {
            out.extend_from_slice(param);
        }
    }
    let _ = write!(out, ";received={}", remote.ip());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{SipMessage, message::HeaderAccess};

    const INVITE: &str = "INVITE sip:b@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport\r\n\
        Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef\r\n\
        Max-Forwards: 70\r\n\
        From: \"Alice\" <sip:a@example.com>;tag=f1\r\n\
        To: <sip:b@example.com>\r\n\
        Call-ID: abc123@10.0.0.1\r\n\
        CSeq: 7 INVITE\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn remote() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 9], 5999))
    }

    #[test]
    fn a_well_formed_invite_is_answered_with_a_response_the_parser_reads_back() {
        let head = Head::scan(INVITE.as_bytes()).expect("well-formed");
        let answer = head.refusal(remote(), "shedT", "2", "Switchboard/test");
        let text = String::from_utf8(answer.clone()).expect("ascii");
        assert!(text.starts_with("SIP/2.0 503 "), "{text}");
        let parsed = match SipMessage::parse(&answer, true).expect("parses") {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => panic!("a response"),
        };
        assert_eq!(parsed.code, 503);
        let vias: Vec<String> = parsed
            .raw_values(&crate::sip::Name::VIA)
            .map(str::to_string)
            .collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport=5999;received=192.0.2.9",
                "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef",
            ]
        );
        assert!(text.contains("\r\nFrom: \"Alice\" <sip:a@example.com>;tag=f1\r\n"));
        assert!(text.contains("\r\nTo: <sip:b@example.com>;tag=shedT\r\n"));
        assert!(text.contains("\r\nCall-ID: abc123@10.0.0.1\r\n"));
        assert!(text.contains("\r\nCSeq: 7 INVITE\r\n"));
        assert!(text.contains("\r\nRetry-After: 2\r\n"));
        assert!(text.ends_with("\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn compact_names_and_lf_line_ends_scan() {
        let text = INVITE
            .replace("\r\n", "\n")
            .replace("Via:", "v:")
            .replace("From:", "f:")
            .replace("To:", "t:")
            .replace("Call-ID:", "i :");
        assert!(Head::scan(text.as_bytes()).is_some());
    }

    /// Everything odd goes the normal way.
    #[test]
    fn odd_heads_are_not_answered_here() {
        let odd = [
            INVITE.replace("To: <sip:b@example.com>", "To: <sip:b@example.com>;tag=x"),
            INVITE.replace(
                "To: <sip:b@example.com>",
                "To: \"Stage\" <sip:b@example.com>",
            ),
            INVITE.replace(";rport\r\n", "\r\n"),
            INVITE.replace(";rport\r\n", ";rport=5070\r\n"),
            INVITE.replace(";rport\r\n", ";rport;received=10.9.9.9\r\n"),
            INVITE.replace(";rport\r\n", ";rport;maddr=10.9.9.9\r\n"),
            INVITE.replace("SIP/2.0/UDP 10.0.0.1", "SIP/2.0/TCP 10.0.0.1"),
            INVITE.replace(";rport\r\n", ";rport, SIP/2.0/UDP x;branch=z9hG4bK1\r\n"),
            INVITE.replace("CSeq: 7 INVITE", "CSeq: 7 BYE"),
            INVITE.replace("CSeq: 7 INVITE", "CSeq: 2147483648 INVITE"),
            INVITE.replace("CSeq: 7 INVITE", "CSeq: +7 INVITE"),
            INVITE.replace("Call-ID: abc123@10.0.0.1\r\n", ""),
            INVITE.replace("Call-ID: abc123@10.0.0.1", "Call-ID: abc 123"),
            INVITE.replace("Call-ID: abc123@10.0.0.1", "Call-ID:"),
            INVITE.replace(
                "To: <sip:b@example.com>\r\n",
                "To: <sip:b@example.com>\r\nt: <sip:c@x>\r\n",
            ),
            INVITE.replace("Alice", "Al\u{e9}ce"),
            INVITE.replace("Alice", "Al\x07ce"),
            INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n  folded\r\n"),
            INVITE.replace("Max-Forwards: 70", "Max-Forwards 70"),
            INVITE.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia"),
            INVITE.replace("\r\n\r\nv=0\n", "\r\n"),
            INVITE.replace(
                "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef\r\n",
                "Via: \r\n",
            ),
        ];
        for (i, text) in odd.iter().enumerate() {
            assert_eq!(Head::scan(text.as_bytes()), None, "case {i}: {text:?}");
        }
    }

    #[test]
    fn the_ack_of_an_early_503_is_recognised_by_its_tag_alone() {
        let tag = b"shedXYZ";
        assert!(has_tag(b"<sip:b@x>;tag=shedXYZ", tag));
        assert!(has_tag(b"<sip:b@x>;TAG=shedXYZ;x=1", tag));
        assert!(!has_tag(b"<sip:b@x>;tag=shedXYZW", tag));
        assert!(!has_tag(b"<sip:b@x>;tag=1shedXYZ", tag));
        assert!(!has_tag(b"<sip:shedXYZ@x>", tag));
        assert!(!has_tag(b"<sip:b@x>", tag));
    }
}
