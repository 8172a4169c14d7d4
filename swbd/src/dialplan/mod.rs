//! The dialplan engine: YAML routes, validation, matching, execution and
//! live reload.
//!
//! A plan is loaded as a whole ([`Dialplan::parse`] / [`Dialplan::load`]):
//! YAML syntax and unknown keys first (serde stops at the first), then
//! every semantic error collected, each as `FILE:LINE:COLUMN: message`.
//! Only a plan without errors exists as a [`Dialplan`]; the
//! [`DialplanStore`] swaps plans atomically and keeps the old one when a
//! reload is refused. [`execute`] walks a call through the matched route
//! against [`CallControl`], which the B2BUA implements.
//!
//! # Layout
//! - [`file`]: the YAML as written (serde types, spans for validation).
//! - [`fast_path`]: a one-pass reader for the YAML subset dialplans are
//!   written in; serde-saphyr reads everything else.
//! - [`pattern`]: globs, anchored regexes, CIDR blocks.
//! - [`template`]: `${name}` substitution in action parameters.
//! - [`error`]: semantic errors, located into `FILE:LINE:COLUMN`.
//! - [`plan`]: [`Dialplan`], the loaded and validated plan; [`check_file`].
//! - [`index`]: exact / prefix buckets that find the first matching route.
//! - [`executor`]: [`execute`], [`CallControl`], [`DialOutcome`], [`CallOutcome`].
//! - [`store`]: [`DialplanStore`], the plan in force and live reload.
//! - [`proto`]: admin views (`GetDialplan`, `TestRoute`).
//! - [`transfer`]: [`TransferPolicy`] (`transfer:`) and `context:` routes.

pub mod error;
pub mod executor;
pub mod fast_path;
pub mod file;
pub mod index;
pub mod pattern;
pub mod plan;
pub mod proto;
pub mod store;
pub mod template;
pub mod transfer;

pub use error::Error;
pub use executor::{
    CallControl, CallOutcome, ControlError, DialOptions, DialOutcome, Execution, execute,
    execute_in,
};
pub use file::Redirect;
pub use plan::{
    Action, CallInfo, DEFAULT_SOURCE, DEFAULT_YAML, Dialplan, DialplanContext, NoMatch, Read,
    ReadRequest, Route, Summary, Target, Version, check_file,
};
pub use store::{DialplanStore, MAX_REQUESTED_BYTES, ReloadSource};
pub use template::Variables;
pub use transfer::TransferPolicy;
