//! `runs list [--program ID]|show ID|cancel ID`.

use super::Ctx;
use crate::client::Subject;
use crate::error::Result;
use crate::format::{duration_ms, print_json, shell_words};
use crate::views::{Run, RunSummary, parse};

pub fn list(ctx: &mut Ctx, program: Option<i64>) -> Result<u8> {
    let json = ctx.json;
    let (path, subject) = match program {
        Some(id) => (format!("/v1/runs?program={id}"), Subject::Program(id)),
        None => ("/v1/runs".to_owned(), Subject::None),
    };
    let runs = ctx.api()?.get_all(&path, subject)?;
    if json {
        print_json(&runs);
        return Ok(0);
    }
    let runs: Vec<RunSummary> = parse(&runs, "GET /v1/runs")?;
    if runs.is_empty() {
        println!("No runs yet; start one with `attestable run PROGRAM_ID`.");
        return Ok(0);
    }
    println!(
        "{:>5}  {:>7}  {:>5}  {:<20}  {:<24}  ARGS",
        "RUN", "PROGRAM", "BUILD", "CREATED", "RESULT"
    );
    for r in &runs {
        println!(
            "{:>5}  {:>7}  {:>5}  {:<20}  {:<24}  {}",
            r.id,
            r.program_id,
            r.build_id,
            r.created_at,
            short_end(r),
            shell_words(&r.args)
        );
    }
    Ok(0)
}

/// The result column: the status, with the code or signal when there is one.
fn short_end(r: &RunSummary) -> String {
    match (r.status.as_str(), r.exit_code, r.signal) {
        (status, Some(code), _) => format!("{status} {code}"),
        (status, None, Some(signal)) => format!("{status} (signal {signal})"),
        (status, None, None) => status.to_owned(),
    }
}

pub fn show(ctx: &mut Ctx, id: i64) -> Result<u8> {
    let json = ctx.json;
    let run = ctx
        .api()?
        .get(&format!("/v1/runs/{id}"), Subject::Run(id))?;
    if json {
        print_json(&run);
        return Ok(0);
    }
    print_run(&parse(&run, "GET run")?);
    Ok(0)
}

pub fn print_run(run: &Run) {
    let r = &run.summary;
    println!(
        "Run {} of program {} (build {}): {}",
        r.id,
        r.program_id,
        r.build_id,
        r.describe_end()
    );
    if !r.args.is_empty() {
        println!("  Arguments: {}", shell_words(&r.args));
    }
    println!("  Time limit: {} s", r.time_limit_s);
    if let Some(sha) = &r.executable_sha256 {
        println!("  Executable SHA-256: {sha} (measured at start)");
    }
    println!("  Created: {}", r.created_at);
    if let Some(started) = &r.started_at {
        println!("  Started: {started}");
    }
    if let Some(ended) = &r.ended_at {
        println!(
            "  Ended: {ended}{}",
            r.duration_ms
                .map(|ms| format!(" ({})", duration_ms(ms)))
                .unwrap_or_default()
        );
    }
    if run.has_certificate {
        println!("  Certificate: yes; see `attestable cert show {}`", r.id);
    } else {
        println!("  Certificate: none");
    }
    for (name, text, truncated) in [
        ("stdout", &run.stdout, run.stdout_truncated),
        ("stderr", &run.stderr, run.stderr_truncated),
    ] {
        if text.is_empty() {
            continue;
        }
        println!("--- {name} ---");
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
        if truncated {
            println!("--- ({name} was cut at the launcher's output limit) ---");
        }
    }
    if r.is_live() {
        println!(
            "(the run is {}; its output is recorded when it ends)",
            r.status
        );
    }
}

pub fn cancel(ctx: &mut Ctx, id: i64) -> Result<u8> {
    let json = ctx.json;
    let run = ctx.api()?.post(
        &format!("/v1/runs/{id}/cancel"),
        &serde_json::Value::Null,
        Subject::Run(id),
    )?;
    if json {
        print_json(&run);
        return Ok(0);
    }
    let r: Run = parse(&run, "POST cancel")?;
    println!("Run {id} {}.", r.summary.describe_end());
    Ok(0)
}
