//! Hardening: bad input, faults, load and crash recovery, against real
//! processes. Figures are printed (`cargo test -p attestable-tests --test
//! hardening -- --nocapture`) and recorded in `docs/SECURITY.md`; the longer
//! variants run with `HARDENING_CYCLES`, `HARDENING_LOAD_SECS` (see each
//! module).

mod api;
mod crash;
mod faults;
mod load;
