//! Session leases: who owns a session, and how long it lives without word
//! from its owner.
//!
//! A client (swbd) names itself with two gRPC metadata headers,
//! [`OWNER_NODE_HEADER`] and [`OWNER_INSTANCE_HEADER`], on the Control
//! stream or a unary create. Every session it creates then carries that
//! [`Owner`] and a lease (the owner's last announced length, else the
//! node's `session_lease_secs`). The owner renews all its sessions with one
//! `RenewLeases` command; [`reaper`] destroys a session whose lease lapsed.
//! `ReconcileOwner` drops at once the sessions of previous instances of the
//! same node id (the owner restarted, so nobody will ever end them).
//! Sessions created without the headers have no owner and no lease.

use std::fmt;
use std::time::Duration;

use switchboard_proto::media::v1 as pb;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::session::Node;

/// Metadata header carrying the owner's node id.
pub const OWNER_NODE_HEADER: &str = "switchboard-owner-node";
/// Metadata header carrying the owner's process instance id.
pub const OWNER_INSTANCE_HEADER: &str = "switchboard-owner-instance";

/// Longest node id or instance id accepted (they are logged and listed).
pub const MAX_ID_LEN: usize = 256;

/// Longest lease a client may ask for: one day.
pub const MAX_LEASE_SECS: u32 = 86_400;

/// How often the reaper looks for lapsed leases.
pub const REAP_EVERY: Duration = Duration::from_millis(500);

/// The owner of a session: a client's node id plus its process instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The client's configured node id (swbd `node_id`).
    pub node_id: String,
    /// Random per client process start.
    pub instance_id: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node_id, self.instance_id)
    }
}

fn check_id(v: &str, what: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    if v.len() > MAX_ID_LEN || v.chars().any(|c| c.is_control()) {
        return Err(Status::invalid_argument(format!(
            "{what} must be at most {MAX_ID_LEN} printable characters"
        )));
    }
    Ok(())
}

impl Owner {
    /// The owner a request names in its metadata: `None` without the
    /// headers (an older client: no lease), an error when only one is
    /// given or one is unusable.
    pub fn from_metadata(md: &MetadataMap) -> Result<Option<Owner>, Status> {
        let get = |name: &str| -> Result<Option<String>, Status> {
            match md.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.to_string()))
                    .map_err(|_| Status::invalid_argument(format!("{name} is not ASCII"))),
            }
        };
        match (get(OWNER_NODE_HEADER)?, get(OWNER_INSTANCE_HEADER)?) {
            (None, None) => Ok(None),
            (Some(node_id), Some(instance_id)) => {
                check_id(&node_id, OWNER_NODE_HEADER)?;
                check_id(&instance_id, OWNER_INSTANCE_HEADER)?;
                Ok(Some(Owner {
                    node_id,
                    instance_id,
                }))
            }
            _ => Err(Status::invalid_argument(format!(
                "{OWNER_NODE_HEADER} and {OWNER_INSTANCE_HEADER} go together"
            ))),
        }
    }

    /// The owner named in a lease command.
    pub fn from_proto(o: Option<&pb::SessionOwner>) -> Result<Owner, Status> {
        let o = o.ok_or_else(|| Status::invalid_argument("owner is required"))?;
        check_id(&o.node_id, "owner.node_id")?;
        check_id(&o.instance_id, "owner.instance_id")?;
        Ok(Owner {
            node_id: o.node_id.clone(),
            instance_id: o.instance_id.clone(),
        })
    }
}

/// The lease length a command asks for (`None`: the node's default).
pub fn lease_length(secs: u32) -> Result<Option<Duration>, Status> {
    match secs {
        0 => Ok(None),
        s if s <= MAX_LEASE_SECS => Ok(Some(Duration::from_secs(u64::from(s)))),
        s => Err(Status::invalid_argument(format!(
            "lease_secs {s} is more than {MAX_LEASE_SECS} (one day)"
        ))),
    }
}

/// Destroy sessions whose lease lapsed, every [`REAP_EVERY`], until the
/// node shuts down.
pub async fn reaper(node: Node) {
    let closed = node.closed();
    tokio::pin!(closed);
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut closed => return,
            _ = tick.tick() => {
                node.reap_expired_leases().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_headers_go_together() {
        let mut md = MetadataMap::new();
        assert_eq!(Owner::from_metadata(&md).ok(), Some(None));
        md.insert(OWNER_NODE_HEADER, "swbd-1".parse().expect("ascii"));
        assert!(Owner::from_metadata(&md).is_err());
        md.insert(OWNER_INSTANCE_HEADER, "abc".parse().expect("ascii"));
        let o = Owner::from_metadata(&md).expect("valid").expect("owner");
        assert_eq!(o.to_string(), "swbd-1/abc");
        md.insert(OWNER_INSTANCE_HEADER, "".parse().expect("ascii"));
        assert!(Owner::from_metadata(&md).is_err());
    }

    #[test]
    fn lease_lengths_are_bounded() {
        assert_eq!(lease_length(0).ok(), Some(None));
        assert_eq!(lease_length(3).ok(), Some(Some(Duration::from_secs(3))));
        assert!(lease_length(MAX_LEASE_SECS + 1).is_err());
    }
}
