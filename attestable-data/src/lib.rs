//! Evidence, attestable certificates, trust policies with readable proofs,
//! and CMS envelopes: the shared vocabulary of the launcher, the services and
//! the CLI. This crate depends on no other crate of the workspace.

pub mod pki;

#[cfg(feature = "server")]
pub mod https;
