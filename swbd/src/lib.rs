//! swbd, Switchboard's SIP signaling daemon.
//!
//! # Layout
//! - [`config`]: YAML config, defaults, validation.
//! - [`events`]: the internal event bus (admin `Watch`, logs).
//! - [`admin`]: the `SignalingAdmin` gRPC service.
//! - [`server`]: [`run`], which wires everything together until shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod events;
pub mod server;

pub use server::run;
pub mod sip;
pub mod transport;
pub mod transaction;
pub mod auth;
pub mod registrar;
