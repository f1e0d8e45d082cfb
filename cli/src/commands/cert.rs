//! `cert show RUN | --file PEM [--pem]` and `cert verify --policy FILE CERT`.

use std::io::Read;
use std::path::Path;

use attestable_data::pki::unix_now;
use attestable_data::policy::{Access, Op, Policy, validate_resource};
use attestable_data::verify::MAX_CHAIN_PEM_BYTES;

use super::Ctx;
use crate::args::OpArg;
use crate::certinfo;
use crate::client::Subject;
use crate::error::{CliError, Result, input};
use crate::format::print_json;

pub fn show(ctx: &mut Ctx, run: Option<i64>, file: Option<&Path>, pem_only: bool) -> Result<u8> {
    let json = ctx.json;
    let pem = match (run, file) {
        (_, Some(file)) => read_pem(file).map_err(CliError::Input)?,
        (Some(id), None) => ctx
            .api()?
            .get_text(&format!("/v1/runs/{id}/certificate"), Subject::Run(id))?,
        (None, None) => return Err(input("give a run id or --file PEM")),
    };
    if pem_only {
        print!("{pem}");
        if !pem.ends_with('\n') {
            println!();
        }
        return Ok(0);
    }
    let info = certinfo::decode(&pem).map_err(|e| {
        let from = match (run, file) {
            (_, Some(f)) => f.display().to_string(),
            (Some(id), None) => format!("the certificate of run {id}"),
            (None, None) => String::new(),
        };
        input(format!("{from} is not a certificate chain: {e}"))
    })?;
    if json {
        print_json(&certinfo::to_json(&info, &pem));
    } else {
        print!("{}", certinfo::render(&info, unix_now()));
    }
    Ok(0)
}

/// Exit 0 allowed, 1 denied, 2 when no decision could be made.
pub fn verify(
    ctx: &mut Ctx,
    policy_file: &Path,
    cert: &Path,
    resource: Option<&str>,
    op: Option<OpArg>,
    service: &str,
) -> Result<u8> {
    let policy = Policy::load(policy_file)
        .map_err(|e| CliError::Undecided(format!("cannot use the policy: {e}")))?;
    let pem = read_pem(cert).map_err(CliError::Undecided)?;
    let access = match (resource, op) {
        (Some(resource), Some(op)) => {
            validate_resource(resource)
                .map_err(|e| CliError::Undecided(format!("--resource: {e}")))?;
            Some(Access {
                service,
                op: match op {
                    OpArg::Read => Op::Read,
                    OpArg::Write => Op::Write,
                },
                resource,
            })
        }
        _ => None,
    };
    let check = policy.check_certificate(&pem, unix_now(), access);
    let decision = &check.decision;
    if ctx.json {
        let value = serde_json::to_value(decision).map_err(|e| CliError::BadAnswer {
            request: "the decision".into(),
            detail: e.to_string(),
        })?;
        print_json(&value);
    } else {
        println!("{decision}");
    }
    Ok(if decision.allowed() { 0 } else { 1 })
}

/// A PEM file (`-`: standard input), at most the size a verifier accepts.
fn read_pem(path: &Path) -> Result<String, String> {
    let limit = MAX_CHAIN_PEM_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_CHAIN_PEM_BYTES {
        return Err(format!(
            "{} is larger than {MAX_CHAIN_PEM_BYTES} bytes; expected a PEM certificate chain",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "{} is not text; expected a PEM certificate chain",
            path.display()
        )
    })
}
