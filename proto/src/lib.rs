//! Switchboard's gRPC contracts and the small runtime pieces every daemon shares.
//!
//! # Layout
//! - [`media::v1`]: `MediaService`, the media control contract (swbd -> swrtp).
//! - [`admin::v1`]: `SignalingAdmin` (swctl -> swbd) and `MediaAdmin` (swctl -> swrtp).
//! - [`quality`]: MOS estimate and one-way/silent flags from RTP statistics
//!   (swbd's CDRs and `swctl top` judge calls the same way).
//! - [`support`]: config loading with `FILE:LINE:COLUMN` errors, logging setup,
//!   the shutdown signal, and gRPC server plumbing (health + reflection on every server).
//!
//! The `.proto` files under `proto/` are the source of truth; this crate compiles
//! them at build time with protox, so no system `protoc` is needed.

/// Media control contract.
pub mod media {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("switchboard.media.v1");
    }
}

/// Admin contracts.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("switchboard.admin.v1");
    }
}

pub mod quality;
pub mod support;

/// Encoded `FileDescriptorSet` of every Switchboard service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_descriptor.bin"));

/// Convert a `SystemTime` into a protobuf `Timestamp`.
pub fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// Convert a `std::time::Duration` into a protobuf `Duration` (saturating).
pub fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}
