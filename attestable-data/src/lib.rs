//! Evidence, attestable certificates, trust policies with readable proofs,
//! and CMS envelopes: the shared vocabulary of the launcher, the services and
//! the CLI. This crate depends on no other crate of the workspace.
//!
//! | module | what |
//! |---|---|
//! | [`canonical`] | canonical JSON (sorted keys, no whitespace, integers only) |
//! | [`encoding`] | hex digests, `0x…` numbers, RFC 3339 times |
//! | [`evidence`] | the evidence model carried in run certificates |
//! | [`probe`] | platform facts (CPU, memory, OS) |
//! | [`memmap`] | memory maps from Linux and FreeBSD, bounded |
//! | [`pki`] | keys, key files, certificate authorities |
//! | [`certificate`] | the attestation intermediate and run certificates |
//! | [`verify`] | offline verification of run certificate chains |
//! | [`policy`] | TOML trust policies and the decisions they make |
//! | [`proof`] | trust decisions with Certifier-style proofs |
//! | [`envelope`] | CMS AuthEnvelopedData and SignedData |
//! | [`token`] | bearer tokens in 0600 files, compared in constant time |
//! | [`attested`] | attested requests: program side and [`attested::ServiceVerifier`] |

#![warn(missing_docs)]

pub mod attested;
pub mod canonical;
pub mod certificate;
pub mod encoding;
pub mod envelope;
pub mod evidence;
pub mod memmap;
pub mod pki;
pub mod policy;
pub mod probe;
pub mod proof;
pub mod token;
pub mod verify;

#[cfg(feature = "server")]
pub mod https;
