//! The dialplan engine: YAML routes, validation, matching, execution and
//! live reload.
//!
//! # Layout
//! - [`file`]: the YAML as written (serde types, spans for validation).
//! - [`pattern`]: globs, anchored regexes, CIDR blocks.
//! - [`template`]: `${name}` substitution in action parameters.
//! - [`error`]: semantic errors, located into `FILE:LINE:COLUMN`.

pub mod error;
pub mod file;
pub mod pattern;
pub mod template;

pub use error::Error;
