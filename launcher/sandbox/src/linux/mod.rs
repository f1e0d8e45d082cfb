//! The `linux-sandbox` backend.

mod child;
mod dac;
mod landlock_rules;
mod plan;
mod probe;
pub(crate) mod process;
mod seccomp_filter;
mod spawn;
mod spawner;
mod stage;

pub(crate) use probe::probe;
pub(crate) use spawn::spawn;

/// The Landlock ABI of the running kernel, or why there is none.
pub fn landlock_abi() -> Result<i32, String> {
    landlock_rules::kernel_abi().map_err(|e| landlock_rules::explain_unavailable(&e))
}
