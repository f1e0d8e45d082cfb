//! `build PROGRAM_ID [--profile P] [--services-anchor FILE]`.

use std::io::IsTerminal;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Ctx;
use crate::args::BuildArgs;
use crate::client::Subject;
use crate::error::{CliError, Result, input};
use crate::format::{duration_ms, print_json};
use crate::views::{Build, parse};

pub fn build(ctx: &mut Ctx, args: &BuildArgs) -> Result<u8> {
    let id = args.program_id;
    let mut body = Map::new();
    if let Some(profile) = &args.profile {
        body.insert("profile".into(), profile.clone().into());
    }
    if let Some(path) = &args.services_anchor {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(input(format!(
                "{} is not a PEM certificate (the services' CA, e.g. services-ca.pem)",
                path.display()
            )));
        }
        body.insert("services_anchor_pem".into(), pem.into());
    }
    let json = ctx.json;
    let api = ctx.api()?;
    let spinner = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("compiling program {id}…"));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let result = api.post_slow(
        &format!("/v1/programs/{id}/builds"),
        &Value::Object(body),
        Subject::Program(id),
    );
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let build = result.map_err(|e| explain_failure(id, e))?;
    if json {
        print_json(&build);
        return Ok(0);
    }
    let b: Build = parse(&build, "POST builds")?;
    println!(
        "Built program {id}: build {}, profile {}{}.",
        b.id,
        b.profile,
        b.duration_ms
            .map(|ms| format!(", {}", duration_ms(ms)))
            .unwrap_or_default()
    );
    println!(
        "  Executable SHA-256: {}",
        b.executable_sha256.as_deref().unwrap_or("-")
    );
    println!("  Compiler: {}", b.compiler);
    if !b.log.trim().is_empty() {
        eprintln!("The compiler said:\n{}", b.log.trim_end());
    }
    Ok(0)
}

/// A compile error reads as the build and then the compiler's own words.
fn explain_failure(id: i64, err: CliError) -> CliError {
    let CliError::CompileFailed { message, build } = err else {
        return err;
    };
    let Ok(b) = parse::<Build>(&build, "build") else {
        return CliError::CompileFailed { message, build };
    };
    if b.log.trim().is_empty() {
        return CliError::CompileFailed { message, build };
    }
    let why = match (&b.error, b.exit_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "no exit code".into(),
    };
    let truncated = if b.log_truncated {
        "\n(the log was cut at the launcher's limit)"
    } else {
        ""
    };
    CliError::CompileFailed {
        message: format!(
            "program {id} did not compile (build {}, profile {}, {why}); the compiler said:\n{}{truncated}",
            b.id,
            b.profile,
            b.log.trim_end()
        ),
        build,
    }
}
