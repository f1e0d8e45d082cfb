//! `programs list|upload|show|delete`.

use std::path::Path;

use serde_json::json;

use super::Ctx;
use crate::client::{Api, Subject};
use crate::error::{Result, input};
use crate::format::{bytes, print_json, short};
use crate::views::{Build, Program, Run, RunSummary, parse};

/// CAMB style: `{id}: {name} - …`, then indented executable, run and
/// certificate lines.
pub fn list(ctx: &mut Ctx) -> Result<u8> {
    let json = ctx.json;
    let api = ctx.api()?;
    let programs = api.get_all("/v1/programs", Subject::None)?;
    if json {
        print_json(&programs);
        return Ok(0);
    }
    let programs: Vec<Program> = parse(&programs, "GET /v1/programs")?;
    if programs.is_empty() {
        println!("No programs yet; upload one with `attestable programs upload FILE`.");
        return Ok(0);
    }
    for program in &programs {
        println!(
            "{}: {} - {}, uploaded {}, source sha256 {}",
            program.id,
            program.name,
            bytes(program.size),
            program.created_at,
            short(Some(&program.source_sha256))
        );
        for line in detail_lines(api, program.id)? {
            println!("    {line}");
        }
    }
    Ok(0)
}

/// The indented lines under a program in the list.
fn detail_lines(api: &Api, id: i64) -> Result<Vec<String>> {
    let builds: Vec<Build> = parse(
        &api.get(&format!("/v1/programs/{id}/builds"), Subject::Program(id))?,
        "GET builds",
    )?;
    let mut lines = Vec::new();
    let latest_ok = builds.iter().rev().find(|b| b.status == "succeeded");
    match latest_ok {
        Some(b) => lines.push(format!(
            "Executable: build {} ({}), sha256 {}",
            b.id,
            b.profile,
            short(b.executable_sha256.as_deref())
        )),
        None => lines.push(format!(
            "Executable: none; compile it with `attestable build {id}`"
        )),
    }
    if let Some(last) = builds.last().filter(|b| b.status != "succeeded") {
        lines.push(format!("Last build: {} {}", last.id, last.status));
    }
    let runs: Vec<RunSummary> = parse(
        &api.get_all(&format!("/v1/runs?program={id}"), Subject::Program(id))?,
        "GET runs",
    )?;
    if let Some(last) = runs.last() {
        lines.push(format!("Last run: {}, {}", last.id, last.describe_end()));
        let run: Run = parse(
            &api.get(&format!("/v1/runs/{}", last.id), Subject::Run(last.id))?,
            "GET run",
        )?;
        if run.has_certificate {
            lines.push(format!(
                "Certificate: run {0}; see `attestable cert show {0}`",
                last.id
            ));
        }
    }
    Ok(lines)
}

pub fn upload(ctx: &mut Ctx, file: &Path) -> Result<u8> {
    let bytes_read =
        std::fs::read(file).map_err(|e| input(format!("cannot read {}: {e}", file.display())))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| input(format!("{} has no UTF-8 file name", file.display())))?
        .to_owned();
    let json = ctx.json;
    let program = ctx.api()?.upload(&name, bytes_read)?;
    if json {
        print_json(&program);
        return Ok(0);
    }
    let p: Program = parse(&program, "POST /v1/programs")?;
    println!(
        "Uploaded {} as program {} ({}, sha256 {}).",
        p.name,
        p.id,
        bytes(p.size),
        short(Some(&p.source_sha256))
    );
    Ok(0)
}

/// `{"program", "builds", "runs"}` with `--json`.
pub fn show(ctx: &mut Ctx, id: i64) -> Result<u8> {
    let json = ctx.json;
    let api = ctx.api()?;
    let program = api.get(&format!("/v1/programs/{id}"), Subject::Program(id))?;
    let builds = api.get(&format!("/v1/programs/{id}/builds"), Subject::Program(id))?;
    let runs = api.get_all(&format!("/v1/runs?program={id}"), Subject::Program(id))?;
    if json {
        print_json(&json!({"program": program, "builds": builds, "runs": runs}));
        return Ok(0);
    }
    let p: Program = parse(&program, "GET program")?;
    let builds: Vec<Build> = parse(&builds, "GET builds")?;
    let runs: Vec<RunSummary> = parse(&runs, "GET runs")?;
    println!("Program {}: {}", p.id, p.name);
    println!("  Size: {}", bytes(p.size));
    println!("  Source SHA-256: {}", p.source_sha256);
    println!("  Uploaded: {}", p.created_at);
    if builds.is_empty() {
        println!("Builds: none; compile it with `attestable build {id}`");
    } else {
        println!("Builds:");
        for b in &builds {
            println!(
                "  {:>4}  {:<11} {:<20} {}  executable {}",
                b.id,
                b.status,
                b.profile,
                b.created_at,
                short(b.executable_sha256.as_deref())
            );
        }
    }
    if runs.is_empty() {
        println!("Runs: none; run it with `attestable run {id}`");
    } else {
        println!("Runs:");
        for r in &runs {
            println!(
                "  {:>4}  build {:<4} {}  {}",
                r.id,
                r.build_id,
                r.created_at,
                r.describe_end()
            );
        }
    }
    Ok(0)
}

/// `{"deleted": ID}` with `--json`.
pub fn delete(ctx: &mut Ctx, id: i64) -> Result<u8> {
    let json = ctx.json;
    ctx.api()?
        .delete(&format!("/v1/programs/{id}"), Subject::Program(id))?;
    if json {
        print_json(&json!({"deleted": id}));
    } else {
        println!("Deleted program {id} with its builds and runs.");
    }
    Ok(0)
}
