//! Where captured messages are kept, and for how long.
//!
//! Two tiers, so a flood of INVITEs that never become calls (unanswered
//! challenges, scanners) cannot push real calls out:
//!
//! - **pending**: messages of SIP Call-IDs that started with an INVITE but
//!   that no call has claimed yet (a caller being challenged, a B-leg
//!   INVITE in the instant before its call announces the leg). At most
//!   [`PENDING_FLOWS`] Call-IDs, [`PENDING_MESSAGES`] messages each and
//!   [`PENDING_BYTES`] in all; the least recently active goes first.
//! - **calls**: once a call names a Call-ID as one of its legs
//!   ([`Store::claim`]), that Call-ID's pending messages move to the call,
//!   and every later message of it goes there. At most `max_calls` calls and
//!   `max_bytes` in all (the call quiet the longest goes first), and
//!   `max_messages_per_call` per call: the first [`HEAD`] and the latest
//!   ones, the middle dropped and counted.
//!
//! A message of a Call-ID neither tier knows, and whose CSeq is not an
//! INVITE (REGISTER, OPTIONS, a stray BYE), is not kept. Every kept message
//! is copied at its exact size (at most [`MAX_MESSAGE`] bytes), so nothing
//! holds on to a socket's receive buffer.

use std::collections::{HashMap, VecDeque};
use std::hash::RandomState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use lru::LruCache;

use super::config::CaptureConfig;
use crate::config::Transport;

/// Messages at the start of a call always kept (the INVITE, its
/// challenge, provisionals, the answer, the ACK).
pub const HEAD: usize = 16;
/// Bytes of one message kept; the rest is cut (and its length recorded).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Call-IDs waiting for a call to claim them.
pub const PENDING_FLOWS: usize = 1024;
/// Messages kept per pending Call-ID.
pub const PENDING_MESSAGES: usize = 32;
/// Room for messages a new pending Call-ID starts with.
const FLOW_START: usize = 8;
/// Bytes kept over all pending Call-IDs.
pub const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// One captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// When it was read or sent.
    pub at: SystemTime,
    /// Transport.
    pub transport: Transport,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// Received by swbd (true) or sent.
    pub inbound: bool,
    /// The bytes, cut at [`MAX_MESSAGE`].
    pub raw: Box<[u8]>,
    /// Length on the wire when `raw` was cut, else 0.
    pub original_len: u32,
}

impl Message {
    /// A copy of `data` (cut at [`MAX_MESSAGE`]) with its addresses.
    pub fn new(
        at: SystemTime,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        inbound: bool,
        data: &[u8],
    ) -> Self {
        let cut = data.len().min(MAX_MESSAGE);
        Self {
            at,
            transport,
            source,
            destination,
            inbound,
            raw: data.get(..cut).unwrap_or_default().into(),
            original_len: if cut < data.len() {
                u32::try_from(data.len()).unwrap_or(u32::MAX)
            } else {
                0
            },
        }
    }

    fn size(&self) -> usize {
        self.raw.len()
    }
}

/// Messages of one pending Call-ID.
#[derive(Debug, Default)]
struct Flow {
    messages: Vec<Message>,
    bytes: usize,
    not_kept: u64,
}

/// One call's capture.
#[derive(Debug, Default)]
struct CallEntry {
    sip_call_ids: Vec<Box<str>>,
    messages: VecDeque<Message>,
    bytes: usize,
    not_kept: u64,
}

/// A call's capture as handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCapture {
    /// swbd's call id.
    pub call_id: String,
    /// SIP Call-IDs of its legs, in the order they were claimed.
    pub sip_call_ids: Vec<String>,
    /// Messages in time order.
    pub messages: Vec<Message>,
    /// Messages not kept.
    pub not_kept: u64,
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No call matches.
    #[error("no capture of call {0:?}")]
    NotFound(String),
    /// A prefix that matches several calls.
    #[error("call id prefix {0:?} matches several captured calls")]
    Ambiguous(String),
}

/// Running totals of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Calls kept now.
    pub calls: usize,
    /// Bytes kept now (calls tier).
    pub bytes: usize,
    /// Messages not kept since start.
    pub not_kept: u64,
    /// Calls evicted since start.
    pub evicted: u64,
}

/// Both tiers. Not synchronized: [`super::Capture`] keeps it under a
/// mutex.
#[derive(Debug)]
pub struct Store {
    max_calls: usize,
    max_bytes: usize,
    per_call: usize,
    pending: LruCache<Box<str>, Flow, RandomState>,
    pending_bytes: usize,
    calls: LruCache<Arc<str>, CallEntry, RandomState>,
    /// SIP Call-ID -> the call that claimed it.
    index: HashMap<Box<str>, Arc<str>, RandomState>,
    bytes: usize,
    not_kept: u64,
    evicted: u64,
}

impl Store {
    /// Empty, with the bounds of `config`.
    pub fn new(config: &CaptureConfig) -> Self {
        Self {
            max_calls: config.max_calls.max(1),
            max_bytes: config.max_bytes,
            per_call: config.max_messages_per_call.max(HEAD + 1),
            pending: LruCache::unbounded_with_hasher(RandomState::new()),
            pending_bytes: 0,
            calls: LruCache::unbounded_with_hasher(RandomState::new()),
            index: HashMap::default(),
            bytes: 0,
            not_kept: 0,
            evicted: 0,
        }
    }

    /// Keep `message` of SIP Call-ID `sip_call_id` if a call owns it, or it
    /// may start one (`invite`: its CSeq method is INVITE), and return the
    /// owning call's id when there is one.
    pub fn record(
        &mut self,
        sip_call_id: &str,
        invite: bool,
        message: impl FnOnce() -> Message,
    ) -> Option<Arc<str>> {
        if let Some(call_id) = self.index.get(sip_call_id).cloned() {
            let per_call = self.per_call;
            if let Some(entry) = self.calls.get_mut(&call_id) {
                let m = message();
                self.bytes += m.size();
                self.bytes -= push_bounded(entry, m, per_call, &mut self.not_kept);
            }
            self.evict_calls(Some(&call_id));
            return Some(call_id);
        }
        if let Some(flow) = self.pending.get_mut(sip_call_id) {
            if flow.messages.len() >= PENDING_MESSAGES {
                flow.not_kept += 1;
                return None;
            }
            let m = message();
            flow.bytes += m.size();
            self.pending_bytes += m.size();
            flow.messages.push(m);
        } else if invite {
            let m = message();
            self.pending_bytes += m.size();
            self.pending.put(
                sip_call_id.into(),
                Flow {
                    bytes: m.size(),
                    messages: {
                        // A call's first messages (INVITE, 100, 18x, 200,
                        // ACK...) without regrowing.
                        let mut v = Vec::with_capacity(FLOW_START);
                        v.push(m);
                        v
                    },
                    not_kept: 0,
                },
            );
        } else {
            return None;
        }
        while self.pending.len() > PENDING_FLOWS || self.pending_bytes > PENDING_BYTES {
            match self.pending.pop_lru() {
                Some((_, f)) => self.pending_bytes -= f.bytes,
                None => break,
            }
        }
        None
    }

    /// `sip_call_id` is a leg of call `call_id`: its pending messages join
    /// the call, and its later ones go there.
    pub fn claim(&mut self, call_id: &str, sip_call_id: &str) {
        if self.index.contains_key(sip_call_id) {
            return;
        }
        let key: Arc<str> = match self.calls.get_key_value(call_id) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(call_id);
                self.calls.put(k.clone(), CallEntry::default());
                k
            }
        };
        let flow = self.pending.pop(sip_call_id);
        let per_call = self.per_call;
        let Some(entry) = self.calls.get_mut(&key) else {
            return;
        };
        entry.sip_call_ids.push(sip_call_id.into());
        if let Some(flow) = flow {
            self.pending_bytes -= flow.bytes;
            entry.not_kept += flow.not_kept;
            self.not_kept += flow.not_kept;
            let mut messages = flow.messages;
            if entry.messages.is_empty() && messages.len() <= per_call {
                // The call's first leg (the common case): the flow's
                // messages become the call's as they are, no copy.
                messages.sort_by_key(|m| m.at);
                entry.messages = VecDeque::from(messages);
                entry.bytes = flow.bytes;
                self.bytes += flow.bytes;
            } else {
                // Merge by time: the other legs' messages may interleave.
                let mut all: Vec<Message> = entry.messages.drain(..).collect();
                all.append(&mut messages);
                all.sort_by_key(|m| m.at);
                self.bytes -= entry.bytes;
                entry.bytes = 0;
                for m in all {
                    push_bounded(entry, m, per_call, &mut self.not_kept);
                }
                self.bytes += entry.bytes;
            }
        }
        self.index.insert(sip_call_id.into(), key.clone());
        self.evict_calls(Some(&key));
    }

    /// Give up the calls quiet the longest until within bounds (never
    /// `keep`, the call just written to; it is bounded per call anyway).
    fn evict_calls(&mut self, keep: Option<&Arc<str>>) {
        while self.calls.len() > self.max_calls || self.bytes > self.max_bytes {
            let Some((oldest, _)) = self.calls.peek_lru() else {
                break;
            };
            if keep.is_some_and(|k| k == oldest) {
                break;
            }
            let Some((_, entry)) = self.calls.pop_lru() else {
                break;
            };
            self.bytes -= entry.bytes;
            self.evicted += 1;
            for id in &entry.sip_call_ids {
                self.index.remove(id);
            }
        }
    }

    /// The capture of a call: by SIP Call-ID of a leg, by swbd call id, or
    /// by a unique prefix of one.
    pub fn get(&self, id: &str) -> Result<CallCapture, LookupError> {
        let key = match self.index.get(id) {
            Some(k) => k.clone(),
            None => match self.calls.contains(id) {
                true => Arc::from(id),
                false => {
                    let mut found = self
                        .calls
                        .iter()
                        .map(|(k, _)| k)
                        .filter(|k| !id.is_empty() && k.starts_with(id));
                    match (found.next(), found.next()) {
                        (Some(k), None) => k.clone(),
                        (Some(_), Some(_)) => return Err(LookupError::Ambiguous(id.into())),
                        (None, _) => return Err(LookupError::NotFound(id.into())),
                    }
                }
            },
        };
        let entry = self
            .calls
            .peek(&key)
            .ok_or_else(|| LookupError::NotFound(id.into()))?;
        let mut messages: Vec<Message> = entry.messages.iter().cloned().collect();
        messages.sort_by_key(|m| m.at);
        Ok(CallCapture {
            call_id: key.to_string(),
            sip_call_ids: entry.sip_call_ids.iter().map(|s| s.to_string()).collect(),
            messages,
            not_kept: entry.not_kept,
        })
    }

    /// Totals for status.
    pub fn totals(&self) -> StoreTotals {
        StoreTotals {
            calls: self.calls.len(),
            bytes: self.bytes,
            not_kept: self.not_kept,
            evicted: self.evicted,
        }
    }
}

/// Append `m` to `entry`, dropping the oldest message after the first
/// [`HEAD`] when it holds `per_call`; returns the bytes freed (the entry's
/// own byte count is kept up to date).
fn push_bounded(entry: &mut CallEntry, m: Message, per_call: usize, not_kept: &mut u64) -> usize {
    let mut freed = 0;
    entry.bytes += m.size();
    entry.messages.push_back(m);
    while entry.messages.len() > per_call {
        match entry.messages.remove(HEAD) {
            Some(old) => {
                freed += old.size();
                entry.bytes -= old.size();
                entry.not_kept += 1;
                *not_kept += 1;
            }
            None => break,
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(n: u64, size: usize) -> Message {
        Message::new(
            SystemTime::UNIX_EPOCH + Duration::from_millis(n),
            Transport::Udp,
            "127.0.0.1:5071".parse().expect("addr"),
            "127.0.0.1:5060".parse().expect("addr"),
            true,
            &vec![b'x'; size],
        )
    }

    fn store(max_calls: usize, max_bytes: usize, per_call: usize) -> Store {
        Store::new(&CaptureConfig {
            max_calls,
            max_bytes,
            max_messages_per_call: per_call,
            ..Default::default()
        })
    }

    #[test]
    fn only_invites_start_a_flow_and_a_claim_moves_it_to_the_call() {
        let mut s = store(10, 1 << 20, 100);
        assert_eq!(s.record("reg-1", false, || msg(0, 10)), None);
        assert_eq!(s.record("a", true, || msg(1, 10)), None);
        assert_eq!(s.record("a", false, || msg(3, 10)), None, "pending");
        assert_eq!(s.record("b", true, || msg(2, 10)), None);
        s.claim("call-1", "a");
        s.claim("call-1", "b");
        let got = s.record("b", false, || msg(4, 10));
        assert_eq!(got.as_deref(), Some("call-1"));
        let c = s.get("call-1").expect("captured");
        let times: Vec<u128> = c
            .messages
            .iter()
            .map(|m| {
                m.at.duration_since(SystemTime::UNIX_EPOCH)
                    .expect("t")
                    .as_millis()
            })
            .collect();
        assert_eq!(times, [1, 2, 3, 4], "merged in time order");
        assert_eq!(c.sip_call_ids, ["a", "b"]);
        assert_eq!(s.get("b").expect("by SIP Call-ID").call_id, "call-1");
        assert_eq!(s.get("call-").expect("by prefix").call_id, "call-1");
        assert!(matches!(s.get("reg-1"), Err(LookupError::NotFound(_))));
        assert_eq!(s.totals().bytes, 40);
    }

    #[test]
    fn a_long_call_keeps_its_head_and_its_latest_messages() {
        let mut s = store(10, 1 << 20, HEAD + 4);
        s.record("a", true, || msg(0, 1));
        s.claim("c", "a");
        for i in 1..100 {
            s.record("a", false, || msg(i, 1));
        }
        let c = s.get("c").expect("captured");
        assert_eq!(c.messages.len(), HEAD + 4);
        assert_eq!(c.not_kept, 100 - (HEAD as u64 + 4));
        let last = c.messages.last().expect("last");
        assert_eq!(last.at, SystemTime::UNIX_EPOCH + Duration::from_millis(99));
        assert_eq!(
            c.messages[HEAD - 1].at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(15)
        );
        assert_eq!(s.totals().bytes, HEAD + 4);
    }

    #[test]
    fn calls_beyond_the_bounds_go_quietest_first() {
        let mut s = store(3, 1 << 20, 100);
        for i in 0..5u64 {
            let cid = format!("sip-{i}");
            s.record(&cid, true, || msg(i, 100));
            s.claim(&format!("call-{i}"), &cid);
        }
        assert_eq!(s.totals().calls, 3);
        assert_eq!(s.totals().evicted, 2);
        assert!(s.get("call-0").is_err() && s.get("sip-1").is_err());
        assert!(s.get("call-4").is_ok());
        // The evicted call's SIP Call-ID is forgotten: its messages are no
        // longer kept.
        assert_eq!(s.record("sip-0", false, || msg(9, 1)), None);

        let mut s = store(100, 250, 100);
        for i in 0..5u64 {
            let cid = format!("sip-{i}");
            s.record(&cid, true, || msg(i, 100));
            s.claim(&format!("call-{i}"), &cid);
        }
        assert_eq!(s.totals().calls, 2, "250 bytes hold two 100-byte calls");
        assert!(s.totals().bytes <= 250);
    }

    #[test]
    fn an_invite_flood_churns_pending_but_not_calls() {
        let mut s = store(10, 1 << 20, 100);
        s.record("real", true, || msg(0, 100));
        s.claim("call-real", "real");
        for i in 0..(PENDING_FLOWS as u64 * 3) {
            s.record(&format!("junk-{i}"), true, || msg(i, 500));
        }
        assert!(s.pending.len() <= PENDING_FLOWS);
        assert!(s.pending_bytes <= PENDING_BYTES);
        assert!(s.get("call-real").is_ok());
        for _ in 0..PENDING_MESSAGES * 2 {
            s.record("junk-3071", false, || msg(1, 1));
        }
        assert!(
            s.pending
                .peek("junk-3071")
                .is_none_or(|f| f.messages.len() <= PENDING_MESSAGES)
        );
    }

    #[test]
    fn ambiguous_prefixes_and_big_messages() {
        let mut s = store(10, 1 << 20, 100);
        s.record("x", true, || msg(0, MAX_MESSAGE + 10));
        s.claim("ab1", "x");
        s.record("y", true, || msg(0, 1));
        s.claim("ab2", "y");
        assert!(matches!(s.get("ab"), Err(LookupError::Ambiguous(_))));
        let c = s.get("ab1").expect("exact");
        assert_eq!(c.messages[0].raw.len(), MAX_MESSAGE);
        assert_eq!(c.messages[0].original_len as usize, MAX_MESSAGE + 10);
    }
}
