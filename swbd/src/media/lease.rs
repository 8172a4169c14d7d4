//! Session leases, swbd's side: this process names itself the owner of the
//! sessions it creates, and keeps their leases alive.
//!
//! - Every per-call command (the Control stream, and unary creates on nodes
//!   without it) carries the owner headers: swbd's `node_id` and an
//!   instance id drawn at random when the process starts.
//! - Each time swbd opens a node's Control stream (start, reconnect) it first
//!   sends `ReconcileOwner`: the node destroys at once the sessions of
//!   previous instances of this `node_id` (a crashed or restarted swbd never
//!   ends them) and renews this instance's.
//! - Every `media.lease_renew_secs` one `RenewLeases` per node renews all of
//!   this instance's sessions there for `media.lease_secs`. If swbd dies,
//!   the node destroys them once the lease lapses.
//!
//! - With a shared state store the instance id is stable
//!   ([`LeaseOwner::with_instance`]): a restarted swbd is the same owner,
//!   and its first `ReconcileOwner` per node lists the sessions of the calls
//!   it restored; the node keeps those and destroys its others (issue #18,
//!   docs/features/restart.md).
//!
//! Bulk renewal, not a list of session ids: the node already knows which
//! sessions are ours, so the command stays one small frame however many calls
//! are up, and swbd needs no second bookkeeping of session ids beside its
//! calls. What it cannot catch is a session a live swbd forgot (a bug); that
//! is what RTP timeouts and call teardown are for.

use std::time::Duration;

use switchboard_proto::media::v1 as pb;
use switchboard_proto::support::shutdown::Shutdown;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::node::{Node, NodeHealth};

/// Metadata header naming the owner's node id (swrtp `lease::OWNER_NODE_HEADER`).
pub const OWNER_NODE_HEADER: &str = "switchboard-owner-node";
/// Metadata header naming the owner's instance (swrtp `lease::OWNER_INSTANCE_HEADER`).
pub const OWNER_INSTANCE_HEADER: &str = "switchboard-owner-instance";

/// Longest owner node id a node accepts (swrtp `lease::MAX_ID_LEN`).
const MAX_OWNER_LEN: usize = 256;

/// `node_id` as it travels in a header: printable ASCII kept, every other
/// byte (and `%`) percent-encoded, so any `node_id` works and two different
/// ones never collide.
fn header_safe(node_id: &str) -> String {
    let mut out = String::with_capacity(node_id.len());
    for b in node_id.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// This swbd process as the owner of its media sessions.
#[derive(Debug, Clone)]
pub struct LeaseOwner {
    /// swbd's `node_id`.
    pub node_id: String,
    /// Random per process start.
    pub instance_id: String,
    /// Lease length asked for.
    pub lease_secs: u32,
    /// Renewal period.
    pub renew_every: Duration,
    node_header: AsciiMetadataValue,
    instance_header: AsciiMetadataValue,
}

impl LeaseOwner {
    /// An owner for `node_id` with a fresh instance id (`node_id` is
    /// percent-encoded beyond printable ASCII); an error when it is too long
    /// for the media nodes.
    pub fn new(node_id: &str, lease_secs: u32, renew_secs: u32) -> Result<Self, String> {
        let instance_id = format!("{:016x}", rand::random::<u64>());
        Self::build(node_id, instance_id, lease_secs, renew_secs)
    }

    /// An owner whose instance id outlives the process (`instance`,
    /// percent-encoded like `node_id`): swbd with a shared state store,
    /// whose calls survive a restart (issue #18). Its first ReconcileOwner
    /// on each node keeps the sessions of the restored calls
    /// ([`super::MediaPool::keep_after_restart`]) instead of dropping them.
    pub fn with_instance(
        node_id: &str,
        instance: &str,
        lease_secs: u32,
        renew_secs: u32,
    ) -> Result<Self, String> {
        let instance_id = header_safe(instance);
        if instance_id.is_empty() || instance_id.len() > MAX_OWNER_LEN {
            return Err(format!(
                "state.instance_id: must be 1 to {MAX_OWNER_LEN} characters (percent-encoded beyond printable ASCII) to name this swbd's media sessions"
            ));
        }
        Self::build(node_id, instance_id, lease_secs, renew_secs)
    }

    fn build(
        node_id: &str,
        instance_id: String,
        lease_secs: u32,
        renew_secs: u32,
    ) -> Result<Self, String> {
        let node_id = header_safe(node_id);
        if node_id.is_empty() || node_id.len() > MAX_OWNER_LEN {
            return Err(format!(
                "node_id: must be 1 to {MAX_OWNER_LEN} characters (percent-encoded beyond printable ASCII) to name this swbd's media sessions"
            ));
        }
        let node_header = AsciiMetadataValue::try_from(node_id.as_str())
            .map_err(|_| "internal: encoded node_id is not ASCII".to_string())?;
        let instance_header = AsciiMetadataValue::try_from(instance_id.as_str())
            .map_err(|_| "internal: instance id is not ASCII".to_string())?;
        Ok(Self {
            node_id,
            instance_id,
            lease_secs,
            renew_every: Duration::from_secs(u64::from(renew_secs.max(1))),
            node_header,
            instance_header,
        })
    }

    /// Add the owner headers to a request.
    pub fn stamp(&self, md: &mut MetadataMap) {
        md.insert(OWNER_NODE_HEADER, self.node_header.clone());
        md.insert(OWNER_INSTANCE_HEADER, self.instance_header.clone());
    }

    /// The owner as the lease commands name it.
    pub fn to_proto(&self) -> pb::SessionOwner {
        pb::SessionOwner {
            node_id: self.node_id.clone(),
            instance_id: self.instance_id.clone(),
        }
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node_id, self.instance_id)
    }
}

/// Renew this swbd's leases on one node every `renew_every`, starting as
/// soon as the health checks see the node up (opening the Control stream
/// reconciles: a restarted swbd clears its previous instance's sessions
/// without waiting for a call); while it is not up, look again every
/// `health_every`.
pub(crate) async fn renew_loop(
    node: &Node,
    renew_every: Duration,
    health_every: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        let wait = if node.info().health == NodeHealth::Up {
            if let Err(st) = node.control.renew_leases().await {
                tracing::debug!(node = %node.name, code = ?st.code(), error = %st.message(), "lease renewal failed; retrying next period");
            }
            renew_every
        } else {
            health_every.min(renew_every)
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_node_id_travels_in_a_header_without_collisions() {
        let a = LeaseOwner::new("pbx Zürich", 30, 10).expect("owner");
        let b = LeaseOwner::new("pbx Zürich%", 30, 10).expect("owner");
        assert_eq!(a.node_id, "pbx%20Z%C3%BCrich");
        assert_ne!(a.node_id, b.node_id);
        assert_ne!(
            a.instance_id,
            LeaseOwner::new("pbx", 30, 10).expect("owner").instance_id
        );
        let mut md = MetadataMap::new();
        a.stamp(&mut md);
        assert_eq!(
            md.get(OWNER_NODE_HEADER).map(|v| v.as_bytes()),
            Some(a.node_id.as_bytes())
        );
        assert!(LeaseOwner::new("", 30, 10).is_err());
        let kept = LeaseOwner::with_instance("pbx", "swbd a", 30, 10).expect("owner");
        assert_eq!(
            kept.instance_id, "swbd%20a",
            "a stable instance id, header-safe"
        );
        assert!(LeaseOwner::with_instance("pbx", "", 30, 10).is_err());
        assert!(LeaseOwner::new(&"x".repeat(300), 30, 10).is_err());
    }
}
