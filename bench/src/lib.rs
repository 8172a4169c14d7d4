//! swbench: a SIP load generator (UAC and UAS on loopback) for Switchboard
//! and any other SIP server, used by `scripts/bench.sh`.
//!
//! # Layout
//!
//! - [`sip`]: parse and build the few SIP messages a UAC/UAS needs (no I/O).
//! - [`digest`]: RFC 2617 MD5 digest answers to 401/407 challenges.
//! - [`endpoint`]: a UDP socket with a large receive buffer, the Call-ID
//!   table, and the client transaction with Timer A/B/E/F retransmission.
//! - [`register`], [`calls`]: the two scenarios.
//! - [`rtp`]: PCMU streams with a timestamp in the payload; loss, jitter and
//!   one-way delay at the receivers.
//! - [`procstat`]: CPU and memory of the daemons under test from /proc.
//! - [`relay_stats`]: swrtp's own relay latency over gRPC (admin GetStatus).
//! - [`runner`]: limits, the rate pacer, the progress line.
//! - [`stats`]: percentiles and failure counts.

#![forbid(unsafe_code)]

pub mod calls;
pub mod digest;
pub mod endpoint;
pub mod procstat;
pub mod register;
pub mod relay_stats;
pub mod rtp;
pub mod runner;
pub mod sip;
pub mod stats;
