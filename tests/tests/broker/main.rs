//! The broker end to end: C programs built with the SDK, run by a real
//! launcher in the Linux compartment, reading from and writing to real HTTPS
//! services on loopback through the launcher, which relays ciphertext only.

mod attested;
mod case_study;
mod common;
mod misbehaving;
mod services_api;
