//! The `cheri-c18n` backend's process code (FreeBSD / CheriBSD only). The
//! decisions (layers, c18n checks, command lines) live in [`crate::cheri`],
//! tested on every host; this module only forks, sets up the child and
//! executes the measured descriptor.
//!
//! Not compiled or run on this project's CI (Linux). It is type-checked with
//! `cargo check --target x86_64-unknown-freebsd`; it has not run on a
//! Morello board.

mod probe;
pub(crate) mod process;
mod spawn;
mod sysctl;

pub(crate) use probe::probe;
pub(crate) use spawn::spawn;
