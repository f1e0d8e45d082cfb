//! The compartment channel: the launcher's end of a run's fd 3
//! (`docs/PROTOCOL.md`, "The compartment channel").
//!
//! | module | what |
//! |---|---|
//! | [`frame`] | the frame codec: bytes ⇄ [`frame::Frame`], never panicking |
//! | [`session`] | one run's channel: the protocol's rules, concurrency and backpressure |
//! | [`hello`] | `HELLO`: the evidence of the run and its certificate |
//! | [`run`] | [`run::RunChannel`]: what a run's requests do (certificate, broker, call records) |

pub mod frame;
pub mod hello;
pub mod run;
pub mod session;

use serde::Deserialize;

/// `[channel]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// Largest frame payload either way, in bytes (the SDK's `ATT_MAX_FRAME`
    /// must be at least as large for answers this big to reach it).
    pub max_frame_bytes: u32,
    /// Requests of one run served at once; beyond that the launcher stops
    /// reading the run's channel until one is answered.
    pub max_in_flight: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: frame::DEFAULT_MAX_FRAME,
            max_in_flight: 32,
        }
    }
}

/// Smallest frame limit accepted: room for a CSR and a certificate chain.
pub const MIN_MAX_FRAME: u32 = 64 * 1024;
/// Largest frame limit accepted.
pub const MAX_MAX_FRAME: u32 = 1024 * 1024 * 1024;

impl ChannelConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&self.max_frame_bytes) {
            return Err(format!(
                "channel.max_frame_bytes is {}; expected {MIN_MAX_FRAME} to {MAX_MAX_FRAME}",
                self.max_frame_bytes
            ));
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            return Err(format!(
                "channel.max_in_flight is {}; expected 1 to 1024",
                self.max_in_flight
            ));
        }
        Ok(())
    }
}
