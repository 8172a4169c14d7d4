//! Transaction keys (RFC 3261 §17.1.3 for clients, §17.2.3 for servers).

use super::super::sip::message::HeaderAccess;
use crate::sip::{BRANCH_MAGIC_COOKIE, Method, Request, Response, ViaHeader};

/// Identifies a transaction. ACK is keyed as INVITE (it belongs to the
/// INVITE transaction); CANCEL has its own key.
///
/// The hash is computed once, with a per-process random key, and is all
/// the table hashes: a growing table rehashes a `u64` per entry instead of
/// the strings (that was 4% of swbd under REGISTER load).
#[derive(Debug, Clone)]
pub struct TransactionKey {
    hash: u64,
    /// Shared: the table, the sweeper queue and the transaction's state
    /// each hold the key.
    kind: std::sync::Arc<KeyKind>,
}

impl TransactionKey {
    /// Heap bytes this key owns (its shared part, counted once per key).
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<KeyKind>()
            + 16
            + match &*self.kind {
                KeyKind::Rfc3261 {
                    branch, sent_by, ..
                } => branch.len() + sent_by.len(),
                KeyKind::Rfc2543(k) => {
                    std::mem::size_of::<Rfc2543Key>()
                        + k.call_id.len()
                        + k.from_tag.len()
                        + k.via.len()
                }
            }
    }
}

impl PartialEq for TransactionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.kind == other.kind
    }
}

impl Eq for TransactionKey {}

impl std::hash::Hash for TransactionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl From<KeyKind> for TransactionKey {
    fn from(kind: KeyKind) -> Self {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let hash = SEED.get_or_init(Default::default).hash_one(&kind);
        Self {
            hash,
            kind: std::sync::Arc::new(kind),
        }
    }
}

/// What a [`TransactionKey`] is made of. Exact-size strings, and the rare
/// RFC 2543 form boxed: a finished call keeps three keys for up to 32 s
/// (issue #14), so every word here counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RFC 3261: branch with the magic cookie, sent-by (server side) and
    /// method.
    Rfc3261 {
        /// Via branch.
        branch: Box<str>,
        /// Via sent-by (`host:port`); empty for client keys.
        sent_by: Box<str>,
        /// Method (ACK as INVITE).
        method: Method,
    },
    /// RFC 2543 peers (no magic cookie): §17.2.3's fallback.
    Rfc2543(Box<Rfc2543Key>),
}

/// The RFC 2543 fallback key (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc2543Key {
    /// Call-ID.
    pub call_id: Box<str>,
    /// From tag.
    pub from_tag: Box<str>,
    /// CSeq number.
    pub cseq: u32,
    /// Top Via as received.
    pub via: Box<str>,
    /// Method (ACK as INVITE).
    pub method: Method,
}

fn key_method(m: &Method) -> Method {
    if *m == Method::Ack {
        Method::Invite
    } else {
        m.clone()
    }
}

impl TransactionKey {
    /// Server-side key of a received request.
    pub fn for_server(request: &Request, via: &ViaHeader) -> Option<Self> {
        let method = key_method(&request.method);
        match via.branch() {
            Some(b) if b.starts_with(BRANCH_MAGIC_COOKIE) => Some(
                KeyKind::Rfc3261 {
                    branch: b.into(),
                    sent_by: via.sent_by().into(),
                    method,
                }
                .into(),
            ),
            _ => Some(
                KeyKind::Rfc2543(Box::new(Rfc2543Key {
                    call_id: request.call_id().ok()?.into(),
                    from_tag: request.header_from().ok()?.tag().unwrap_or_default().into(),
                    cseq: request.cseq().ok()?.number,
                    via: via.raw.as_str().into(),
                    method,
                }))
                .into(),
            ),
        }
    }

    /// The same server key with another method (CANCEL -> its INVITE).
    pub fn with_method(&self, m: Method) -> Self {
        let mut k = KeyKind::clone(&self.kind);
        match &mut k {
            KeyKind::Rfc3261 { method, .. } => *method = m,
            KeyKind::Rfc2543(k) => k.method = m,
        }
        k.into()
    }

    /// Client-side key of a request we send (its top Via is ours).
    pub fn for_client(branch: &str, method: &Method) -> Self {
        KeyKind::Rfc3261 {
            branch: branch.into(),
            sent_by: Box::default(),
            method: key_method(method),
        }
        .into()
    }

    /// Client-side key of a received response.
    pub fn for_response(response: &Response) -> Option<Self> {
        let via = response.top_via().ok()?;
        let cseq = response.cseq().ok()?;
        Some(Self::for_client(via.branch()?, &cseq.method))
    }
}
