//! The media-node pool: swbd's gRPC clients to its swrtp nodes.
//!
//! # Layout
//! - [`MediaPool`]: round-robin over healthy, undrained nodes; both legs of
//!   a call use the node picked for the call (a [`NodeLease`]).
//! - Per-call commands go over one `Control` stream per node
//!   ([`MediaClient`], unary RPCs for nodes without it).
//! - Health checks run continuously per node; transitions are published on
//!   the event bus, and session events (RTP timeouts, node loss) reach the
//!   B2BUA through [`MediaPool::subscribe_media_events`], and so do the
//!   DTMF digits the nodes push on their Control streams ([`MediaDtmf`]).
//! - Every call to a node carries its media token ([`MediaTokens`]).
//! - Sessions belong to this swbd process and live on a lease it renews
//!   ([`LeaseOwner`], see [`lease`]).

mod control;
pub mod lease;
mod node;
mod pool;
mod token;

pub use control::{COMMAND_TIMEOUT, MediaClient, node_unreachable};
pub use lease::LeaseOwner;
pub use node::{MediaNodeInfo, MigrationProgress, NodeHealth};
pub use pool::{MediaDtmf, MediaEvent, MediaPool, NodeLease, PoolError};
pub use token::MediaTokens;
