//! The attestable launcher: stores uploaded C programs, builds them with a
//! toolchain profile, runs them supervised behind a compartment seam, and
//! serves it all over HTTPS. See `docs/ARCHITECTURE.md` for the map.

pub mod api;
pub mod broker;
pub mod channel;
pub mod compartment;
pub mod config;
pub mod events;
pub mod paths;
pub mod pki;
pub mod platform;
pub mod records;
pub mod serve;
pub mod supervisor;
pub mod tls;
pub mod toolchain;
