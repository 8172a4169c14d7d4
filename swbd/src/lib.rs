//! swbd, Switchboard's SIP signaling daemon.
//!
//! # Layout
//! - [`config`]: YAML config, defaults, validation.
//! - [`dialplan`]: routes, validation, execution and live reload.
//! - [`events`]: the internal event bus (admin `Watch`, logs).
//! - [`admin`]: the `SignalingAdmin` gRPC service.
//! - [`server`]: [`run`], which wires everything together until shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod dialplan;
pub mod events;
pub mod server;

pub use server::run;
