//! Call quality: MOS, one-way, silent. The computation lives in
//! [`switchboard_proto::quality`] so `swctl top` flags live calls exactly
//! as the CDR does; this module re-exports it for the record builder.

pub use switchboard_proto::quality::*;
