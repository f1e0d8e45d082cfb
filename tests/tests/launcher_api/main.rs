//! The launcher daemon, end to end: real processes on loopback, HTTPS
//! trusting only `<data>/pki/root.pem`.

mod access;
mod builds;
mod camb;
mod concurrency;
mod lifecycle;
mod restart;
mod startup;
mod supervision;
mod uploads;
