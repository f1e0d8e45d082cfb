//! `run PROGRAM_ID [--build ID] [--arg ARG]… [--time-limit S] [--detach]`.

use std::io::IsTerminal;

use serde_json::{Map, Value};

use super::Ctx;
use crate::args::RunArgs;
use crate::client::Subject;
use crate::error::Result;
use crate::follow::{self, Quiet, Sink, Terminal};
use crate::format::print_json;
use crate::views::{Outcome, Run, RunSummary, parse};

pub fn run(ctx: &mut Ctx, args: RunArgs) -> Result<u8> {
    let RunArgs {
        program_id,
        build,
        mut args,
        time_limit,
        detach,
        rest,
    } = args;
    args.extend(rest);
    let mut body = Map::new();
    if let Some(build) = build {
        body.insert("build_id".into(), build.into());
    }
    if !args.is_empty() {
        body.insert("args".into(), args.into());
    }
    if let Some(limit) = time_limit {
        body.insert("time_limit_s".into(), limit.into());
    }
    let json = ctx.json;
    let api = ctx.api()?;
    let queued = api.post(
        &format!("/v1/programs/{program_id}/runs"),
        &Value::Object(body),
        Subject::Program(program_id),
    )?;
    let summary: RunSummary = parse(&queued, "POST runs")?;
    if detach {
        if json {
            print_json(&queued);
        } else {
            println!(
                "Run {0} of program {program_id} (build {1}) is {2}; see `attestable runs show {0}`.",
                summary.id, summary.build_id, summary.status
            );
        }
        return Ok(0);
    }
    let mut terminal = Terminal::default();
    let sink: &mut dyn Sink = if json { &mut Quiet } else { &mut terminal };
    let ended = follow::follow(api, summary.id, sink)?;
    let run: Run = parse(&ended, "GET run")?;
    if json {
        print_json(&ended);
    } else {
        report_end(&run.summary);
    }
    Ok(run.summary.exit_status())
}

/// A line on stderr when the run did not simply exit (always), or when a
/// person is watching (also then).
pub fn report_end(run: &RunSummary) {
    let plain_exit = matches!(run.outcome(), Outcome::Exited(_));
    if !plain_exit || std::io::stderr().is_terminal() {
        eprintln!("attestable: run {} {}", run.id, run.describe_end());
    }
}
