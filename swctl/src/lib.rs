//! swctl
