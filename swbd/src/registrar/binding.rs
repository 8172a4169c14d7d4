//! A registrar binding: one contact of one address of record.

use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::events::BindingInfo;
use crate::sip::Uri;
use crate::transport::{Source, Target, Transport};

/// One registered contact.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Address of record as registered (`sip:1001@example.com`).
    pub aor: String,
    /// The user part of the AOR (the lookup key).
    pub user: String,
    /// Contact URI as registered.
    pub contact: Uri,
    /// Where the REGISTER really came from (NAT-aware, RFC 3581): requests
    /// for this binding go here, not to the Contact host.
    pub source: Source,
    /// q-value (0.0-1.0), 1.0 when absent.
    pub q: f32,
    /// When it expires (tokio clock).
    pub expires_at: Instant,
    /// The same, on the wall clock (for admin).
    pub expires_at_wall: SystemTime,
    /// When it was first registered.
    pub registered_at: SystemTime,
    /// When a REGISTER last added or refreshed it (tokio clock): the
    /// `replace_oldest` overflow policy removes the least recently
    /// refreshed binding first.
    pub refreshed_at: Instant,
    /// Call-ID of the registering UA.
    pub call_id: String,
    /// CSeq of the last REGISTER that touched it.
    pub cseq: u32,
    /// User-Agent of the last REGISTER.
    pub user_agent: String,
    /// Contact parameters other than `expires` and `q` (`+sip.instance`, ...).
    pub params: Vec<(String, Option<String>)>,
    /// The swbd instance holding the flow, when it is another one (a
    /// binding read from the shared state store); `None`: this one.
    pub instance: Option<String>,
}

impl Binding {
    /// Transport the UA registered over.
    pub fn transport(&self) -> Transport {
        self.source.transport
    }

    /// Real source address.
    pub fn source_addr(&self) -> SocketAddr {
        self.source.remote
    }

    /// Where to send requests for this binding (the real source, over the
    /// same transport and local socket; for TCP the open connection).
    pub fn target(&self) -> Target {
        let mut target = Target::reply_to(&self.source, self.source.remote);
        if self.instance.is_some() {
            // Registered through another swbd (shared state): its local
            // address is that instance's socket. Calls from here go out of,
            // and name in their Contact, this instance's own; kept, the
            // phone sent its in-dialog requests (a BYE) to the other
            // instance, which answered 481.
            target.local = None;
        }
        target
    }

    /// Seconds left (0 when due).
    pub fn remaining_secs(&self) -> u64 {
        self.expires_at
            .saturating_duration_since(Instant::now())
            .as_secs()
    }

    /// The admin/event view.
    pub fn info(&self) -> BindingInfo {
        BindingInfo {
            aor: self.aor.clone(),
            contact: self.contact.to_string(),
            transport: self.source.transport,
            source: self.source.remote,
            q: self.q,
            expires_at: self.expires_at_wall,
            registered_at: self.registered_at,
            user_agent: self.user_agent.clone(),
            call_id: self.call_id.clone(),
        }
    }
}
