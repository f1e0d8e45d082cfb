//! The benchmark: where the time goes, each figure beside its baseline from
//! the same run. One command, from the workspace root:
//!
//! ```text
//! cargo run --release -p attestable-tests --bin bench [-- --quick] [-- --out DIR]
//! ```
//!
//! It builds the launcher and the services in release mode, measures
//! (1) compartment start, (2) certificate issue and the envelope operations
//! in Rust and in the C SDK, (3) brokered reads and writes against the same
//! requests sent straight to the service, sequentially and over 1 to 100
//! concurrent runs, (4) the case study end to end, (5) the launcher's
//! memory, (6) how cost grows, and writes `DIR/results.md` and the plots
//! (`DIR` defaults to `docs/perf`). Nothing here asserts a time: the design's
//! targets are reported as met or missed.

mod broker;
mod crypto;
mod plots;
mod services;
mod spawn;
mod stats;
mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use attestable_tests::workspace_root;

use broker::{Bench, Load, Memory, Op};
use stats::Table;

/// How many repetitions of each measurement.
struct Plan {
    spawns: usize,
    crypto: usize,
    sequential: usize,
    levels: &'static [usize],
    reads_total: usize,
    writes_total: usize,
    case_builds: usize,
    case_runs: usize,
    sizes: &'static [usize],
}

const FULL: Plan = Plan {
    spawns: 300,
    crypto: 2000,
    sequential: 500,
    levels: &[1, 10, 50, 100],
    reads_total: 2000,
    writes_total: 1000,
    case_builds: 3,
    case_runs: 20,
    sizes: &[0, 1 << 20, 4 << 20, 16 << 20, 64 << 20],
};

const QUICK: Plan = Plan {
    spawns: 50,
    crypto: 200,
    sequential: 100,
    levels: &[1, 10, 100],
    reads_total: 500,
    writes_total: 300,
    case_builds: 1,
    case_runs: 5,
    sizes: &[0, 16 << 20],
};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(String::new(), |kib| {
            format!(", {:.1} GiB", kib / (1 << 20) as f64)
        });
    format!(
        "{cpu}, {cores} cores{memory}, Linux {}, load average at start {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Builds `integration-process/bench/bench_envelope.c` with `cc -O2`, as the
/// launcher builds programs.
fn build_c_bench(dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = workspace_root().join("integration-process");
    let out = dir.join("bench_envelope");
    let status = Command::new("cc")
        .args([
            "-std=c11",
            "-O2",
            "-DOPENSSL_API_COMPAT=30000",
            "-DOPENSSL_NO_DEPRECATED",
            "-I",
        ])
        .arg(&sdk)
        .arg("-o")
        .arg(&out)
        .arg(sdk.join("bench/bench_envelope.c"))
        .arg("-lcrypto")
        .status()
        .context("running cc")?;
    if !status.success() {
        bail!("compiling bench_envelope.c failed");
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut out = workspace_root().join("docs/perf");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            // For profiling one part: spawn, crypto, reads, writes or case.
            "--only" => only = Some(args.next().context("--only needs a part")?),
            other => {
                bail!("unknown argument {other:?}; expected --quick, --out DIR or --only PART")
            }
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for figures worth reading");
    }
    let plan = if quick { &QUICK } else { &FULL };
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    let machine = machine();
    println!("machine: {machine}");
    let mut table = Table::default();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);

    let mut sizes = Vec::new();
    if part("spawn") {
        println!("\n1. compartment start, 6b. start against size");
        sizes = spawn::compartment_start(&mut table, plan.spawns, plan.sizes)?;
    }
    let mut floor = None;
    if part("crypto") {
        println!("\n2. certificate issue and envelopes");
        let tmp = tempfile::tempdir()?;
        let c_bench = build_c_bench(tmp.path())?;
        floor = Some(crypto::certificate_and_envelopes(
            &mut table,
            plan.crypto,
            &c_bench,
        )?);
    }
    if only.is_some() && !part("reads") && !part("writes") && !part("case") {
        return Ok(());
    }

    println!("\n3. brokered calls (building and starting the launcher and the services, release)");
    let bench = Bench::start().await?;
    let mut memory = Memory {
        idle: bench.launcher.pid().and_then(broker::rss),
        ..Default::default()
    };
    let mut reads = Vec::new();
    if part("reads") {
        reads = bench
            .calls(
                &mut table,
                Op::Read,
                &Load {
                    sequential: plan.sequential,
                    levels: plan.levels,
                    total: plan.reads_total,
                },
                Some(&mut memory),
                floor,
            )
            .await?;
    }
    let mut writes = Vec::new();
    if part("writes") {
        writes = bench
            .calls(
                &mut table,
                Op::Write,
                &Load {
                    sequential: plan.sequential,
                    levels: plan.levels,
                    total: plan.writes_total,
                },
                None,
                floor,
            )
            .await?;
    }
    if part("case") {
        println!("\n4. the case study");
        bench
            .case_study(&mut table, plan.case_builds, plan.case_runs)
            .await?;
    }
    memory.after = bench.launcher.pid().and_then(broker::rss);
    println!("\n5. memory");
    memory.report(&mut table);
    if only.is_some() {
        return Ok(());
    }

    plots::concurrency(&out, &reads, &writes)?;
    plots::start_vs_size(&out, &sizes)?;
    let elapsed = started.elapsed();
    let markdown = format!(
        "<!-- Written by `cargo run --release -p attestable-tests --bin bench`{}; do not edit. -->\n\
         Machine: {machine}. Whole benchmark: {:.0} s.\n{}{}",
        if quick { " -- --quick" } else { "" },
        elapsed.as_secs_f64(),
        targets::markdown(&table),
        table.markdown()
    );
    std::fs::write(out.join("results.md"), &markdown)?;
    println!("\n{markdown}");
    println!(
        "wrote {} and the plots in {} ({:.0} s)",
        out.join("results.md").display(),
        out.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
