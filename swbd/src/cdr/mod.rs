//! Call detail records: one per call attempt, failures included, written
//! off the call path to a JSON-lines file and optionally PostgreSQL, and
//! read back for the admin history (`swctl calls history`).
//!
//! # Layout
//! - [`config`]: `cdr:` and `calls:` config sections.
//! - [`facts`]: what the call task notes for its CDR as the call goes.
//! - [`record`]: the record ([`Cdr`]), built from the call's record when it ends.
//! - [`cause`], [`quality`]: end reason and who hung up; MOS, one-way, silent.
//! - [`writer`]: the bounded queue and the task that writes.
//! - [`file`], [`postgres`]: the two stores.
//! - [`history`]: filters, and reading the stores back newest first.
//!
//! # Never blocking, never silently losing
//!
//! A call that ends hands its record to a bounded queue (`cdr.queue_size`)
//! with `try_send`: the call task never waits for a disk or a database. A
//! record that finds the queue full is counted (`failed`) and logged at
//! ERROR with the whole record as JSON, so an operator can still recover
//! it from the log. The writer task takes records in batches:
//!
//! - file: appended as one JSON object per line, then flushed to the
//!   kernel (`write(2)` returned; `fdatasync` too with `cdr.file.fsync`),
//!   and only then counted `written_file`. A `kill -9` of swbd cannot undo
//!   a write the kernel accepted; a power loss can, unless `fsync` is on.
//! - PostgreSQL: one INSERT per batch (idempotent on `(node_id, call_id)`),
//!   counted `written_postgres` once the statement's implicit transaction
//!   committed. A failing batch is retried with backoff (`max_attempts`),
//!   then spilled to the file (`spilled_to_file`); while the database stays
//!   down, batches go straight to the file and one probe per backoff
//!   period tries the database again.
//! - A batch no store could take is counted `failed` and logged like a
//!   full queue.
//!
//! "Acknowledged" is exactly those counters: every record counted written
//! is in the file (or the table), whatever happens to swbd afterwards
//! (`swbd/tests/cdr_kill.rs`).

pub mod cause;
pub mod config;
pub mod facts;
pub mod file;
pub mod history;
pub mod postgres;
pub mod quality;
pub mod record;
pub mod writer;

pub use facts::CallFacts;
pub use record::Cdr;
pub use writer::{CdrSink, CdrWriter, start};
