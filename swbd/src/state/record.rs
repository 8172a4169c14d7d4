//! What the store holds for the registrar: [`StoredBinding`], one contact
//! of one address of record, with wall-clock times (the tokio clock of the
//! instance that wrote it means nothing to another process).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One registered contact as stored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBinding {
    /// Address of record (`sip:1001@example.com`).
    pub aor: String,
    /// Its user part (the lookup key).
    pub user: String,
    /// Contact URI as registered.
    pub contact: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Where the REGISTER came from (requests for the binding go here).
    pub remote: SocketAddr,
    /// The swbd socket it reached.
    pub local: SocketAddr,
    /// q-value.
    pub q: f32,
    /// Expiry, Unix milliseconds (the Redis key expires then too).
    pub expires_at_ms: u64,
    /// First registration, Unix milliseconds.
    pub registered_at_ms: u64,
    /// Call-ID of the registering UA.
    pub call_id: String,
    /// CSeq of the last REGISTER that touched it.
    pub cseq: u32,
    /// User-Agent of the last REGISTER.
    pub user_agent: String,
    /// Contact parameters other than `expires` and `q`.
    #[serde(default)]
    pub params: Vec<(String, Option<String>)>,
    /// The swbd instance that holds the flow (the TCP connection; for UDP
    /// any instance can reach `remote`).
    pub instance: String,
}
