//! swbd, Switchboard's SIP signaling daemon.
//!
//! # Layout
//! - [`config`]: YAML config, defaults, validation.
//! - [`cdr`]: call detail records (file, PostgreSQL) and the call history.
//! - [`dialplan`]: routes, validation, execution and live reload.
//! - [`events`]: the internal event bus (admin `Watch`, logs), recent
//!   events, security events.
//! - [`capture`]: SIP messages of recent calls (pcap export), HEP v3.
//! - [`media`]: the media-node pool (gRPC clients to swrtp).
//! - [`admin`]: the `SignalingAdmin` gRPC service.
//! - [`metrics`]: the Prometheus `/metrics` endpoint.
//! - [`server`]: [`run`], which wires everything together until shutdown.
//! - [`overload`]: admission of new calls by measured load.
//! - [`state`]: the state store (memory or Redis): registrations, drain
//!   flags, records shared by several swbd or kept across restarts.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_watch;
pub mod b2bua;
pub mod capture;
pub mod cdr;
pub mod config;
pub mod dialog;
pub mod dialplan;
pub mod events;
pub mod media;
pub mod metrics;
pub mod server;
pub mod state;

// SIP core (see each module's docs): message layer, transports,
// transactions, digest auth, registrar, method handlers, the endpoint.
pub mod auth;
pub mod endpoint;
pub mod method;
pub mod overload;
pub mod registrar;
pub mod sip;
pub mod transaction;
pub mod transport;

pub use server::run;
