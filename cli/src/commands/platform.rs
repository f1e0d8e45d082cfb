//! `platform`: what the launcher runs on and how it confines programs.

use super::Ctx;
use crate::client::Subject;
use crate::error::Result;
use crate::format::{bytes, print_json};
use crate::views::{Platform, parse};

pub fn show(ctx: &mut Ctx) -> Result<u8> {
    let json = ctx.json;
    let api = ctx.api()?;
    let platform = api.get("/v1/platform", Subject::None)?;
    if json {
        print_json(&platform);
        return Ok(0);
    }
    let p: Platform = parse(&platform, "GET /v1/platform")?;
    println!(
        "Launcher {} at {}",
        p.launcher_version,
        api.connection().url
    );
    println!(
        "  Host: {} ({} {}, {})",
        p.hostname, p.os, p.os_release, p.arch
    );
    println!("  CPU: {} x {}", p.cpus, p.cpu_model);
    println!("  Memory: {}", bytes(p.physical_memory_bytes));
    let c = &p.compartment;
    println!(
        "Compartment: {}{}",
        c.backend,
        if c.insecure {
            " (INSECURE: programs are not isolated from the host)"
        } else {
            ""
        }
    );
    for layer in &c.layers {
        println!("  {:<14} {:<11} {}", layer.name, layer.status, layer.detail);
    }
    println!("Toolchains (default {}):", p.toolchains.default_profile);
    for profile in &p.toolchains.profiles {
        println!(
            "  {:<26} {} {}{}",
            profile.name,
            profile.compiler,
            profile.flags.join(" "),
            if profile.libs.is_empty() {
                String::new()
            } else {
                format!(" … {}", profile.libs.join(" "))
            }
        );
    }
    Ok(0)
}
