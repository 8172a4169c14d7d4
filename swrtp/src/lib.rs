//! swrtp
