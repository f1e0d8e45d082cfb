//! The compartment channel end to end: C programs run by a real launcher in
//! the Linux compartment, speaking fd 3 with the SDK or by hand.

mod certificate;
mod frames;
mod pki;
