//! fediprobe: synthetic user-journey probes for Mastodon.
//!
//! See `ARCHITECTURE.md` for the map of the modules and the invariants they keep.

pub mod sandbox;
pub mod secret;
pub mod spec;
