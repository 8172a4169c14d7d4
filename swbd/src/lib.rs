//! swbd
