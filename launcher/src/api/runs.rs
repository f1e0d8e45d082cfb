//! Runs: start (answers at once), list, show, cancel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use programs_db::{DbError, NewRun, RunFilter};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Actor, Id, JsonBody, QueryParams};
use super::views::{RunRequest, RunSummary, RunView, RunsQuery};
use crate::compartment::Limits;
use crate::config::Config;
use crate::supervisor::Launch;

/// The largest valid run request: every argument at its length limit, each
/// character written as a JSON surrogate-pair escape (12 bytes).
pub(super) fn body_limit(config: &Config) -> usize {
    let runs = &config.runs;
    runs.max_args
        .saturating_mul(runs.max_arg_chars.saturating_mul(12).saturating_add(8))
        .saturating_add(4096)
        .max(super::JSON_BODY_LIMIT)
}

/// Validated run parameters.
#[derive(Debug)]
pub(super) struct RunParams {
    pub args: Vec<String>,
    pub time_limit_s: u32,
    pub limits: Limits,
}

pub(super) fn run_params(
    config: &Config,
    args: Vec<String>,
    time_limit_s: Option<u32>,
) -> Result<RunParams, ApiError> {
    let runs = &config.runs;
    if args.len() > runs.max_args {
        return Err(ApiError::bad_request(format!(
            "{} arguments given; at most {} allowed",
            args.len(),
            runs.max_args
        )));
    }
    for (i, arg) in args.iter().enumerate() {
        let chars = arg.chars().count();
        if chars > runs.max_arg_chars {
            return Err(ApiError::bad_request(format!(
                "argument {i} is {chars} characters long; at most {} allowed",
                runs.max_arg_chars
            )));
        }
        if arg.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "argument {i} contains a NUL byte"
            )));
        }
    }
    let time_limit_s = time_limit_s.unwrap_or(runs.default_time_limit_s);
    if time_limit_s == 0 || time_limit_s > runs.max_time_limit_s {
        return Err(ApiError::bad_request(format!(
            "time_limit_s is {time_limit_s}; expected 1 to {}",
            runs.max_time_limit_s
        )));
    }
    let set = |v: u64| (v != 0).then_some(v);
    let limits = Limits {
        address_space_bytes: set(runs.limits.address_space_bytes),
        // A backstop behind the wall-clock limit the supervisor enforces.
        cpu_seconds: Some(u64::from(time_limit_s) + 1),
        open_files: set(runs.limits.open_files),
        processes: set(runs.limits.processes),
        file_size_bytes: set(runs.limits.file_size_bytes),
        wall_seconds: time_limit_s.into(),
    };
    Ok(RunParams {
        args,
        time_limit_s,
        limits,
    })
}

/// Queues a run of a program's build and hands it to the supervisor.
pub(super) async fn start(
    app: &AppState,
    actor: String,
    program_id: i64,
    build_id: Option<i64>,
    params: RunParams,
) -> Result<programs_db::Run, ApiError> {
    app.supervisor.admit()?;
    let limits_json =
        serde_json::to_string(&params.limits).map_err(|e| ApiError::internal(e.to_string()))?;
    let (program, build, run) = app
        .records
        .call(move |db| {
            let program = db.program(program_id)?;
            let build = match build_id {
                Some(id) => db.build(id)?,
                None => db.latest_successful_build(program_id)?.ok_or_else(|| {
                    DbError::Conflict(format!(
                        "program {program_id} has no succeeded build; \
                         build it first with POST /v1/programs/{program_id}/builds"
                    ))
                })?,
            };
            let run = db.create_run(
                &actor,
                &NewRun {
                    program_id,
                    build_id: build.id,
                    args: params.args,
                    limits_json,
                    time_limit_s: params.time_limit_s,
                },
            )?;
            Ok((program, build, run))
        })
        .await?;
    let Some(executable_sha256) = build.executable_sha256 else {
        return Err(ApiError::internal(format!(
            "build {} succeeded without an executable",
            build.id
        )));
    };
    let argv0 = program
        .name
        .strip_suffix(".c")
        .unwrap_or(&program.name)
        .to_owned();
    app.supervisor.submit(Launch {
        run: run.clone(),
        argv0,
        executable_sha256,
    });
    tracing::info!(
        run = run.id,
        program = program_id,
        build = build.id,
        "run queued"
    );
    Ok(run)
}

/// Run a program; answers at once with the queued run.
#[utoipa::path(
    operation_id = "run_program",
    post, path = "/v1/programs/{id}/runs", tag = "runs",
    params(("id" = i64, Path, description = "Program id")),
    request_body(content = Option<RunRequest>, content_type = "application/json", description = "Optional; an empty body runs the newest build with the defaults"),
    responses(
        (status = 202, description = "Queued", body = RunSummary),
        (status = 400, description = "Bad arguments or time limit, or a build of another program", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such program or build", body = ErrorBody),
        (status = 409, description = "No succeeded build to run", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 503, description = "Shutting down, or too many runs", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Id(id): Id,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<(StatusCode, Json<RunSummary>), ApiError> {
    let params = run_params(
        &app.config,
        request.args.unwrap_or_default(),
        request.time_limit_s,
    )?;
    let run = start(&app, actor, id, request.build_id, params).await?;
    Ok((StatusCode::ACCEPTED, Json((&run).into())))
}

/// List runs, oldest first, optionally of one program.
#[utoipa::path(
    operation_id = "list_runs",
    get, path = "/v1/runs", tag = "runs",
    params(RunsQuery),
    responses(
        (status = 200, description = "OK", body = Vec<RunSummary>),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such program", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<RunsQuery>,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    let runs = app
        .records
        .call(move |db| {
            if let Some(program) = query.program {
                db.program(program)?;
            }
            db.runs(RunFilter {
                program_id: query.program,
                live_only: false,
            })
        })
        .await?;
    Ok(Json(runs.iter().map(RunSummary::from).collect()))
}

/// One run, with its output.
#[utoipa::path(
    operation_id = "get_run",
    get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "OK", body = RunView),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(State(app): State<AppState>, Id(id): Id) -> Result<Json<RunView>, ApiError> {
    let run = app.records.call(move |db| db.run(id)).await?;
    Ok(Json((&run).into()))
}

/// Cancel a queued or running run; answers once its end is recorded.
#[utoipa::path(
    operation_id = "cancel_run",
    post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run as it ended (normally `cancelled`)", body = RunView),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "The run already ended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Id(id): Id,
) -> Result<Json<RunView>, ApiError> {
    let run = app.supervisor.cancel(id, &actor).await?;
    Ok(Json((&run).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_parameters_are_checked() {
        let config = Config::parse(
            "[runs]\nmax_args = 2\nmax_arg_chars = 4\ndefault_time_limit_s = 5\nmax_time_limit_s = 10\n",
            "t",
        )
        .unwrap();
        let ok = run_params(&config, vec!["a".into()], Some(5)).unwrap();
        assert_eq!(ok.limits.wall_seconds, 5);
        assert_eq!(ok.limits.cpu_seconds, Some(6));
        assert_eq!(ok.limits.open_files, Some(64));
        let too_many = run_params(&config, vec!["a".into(); 3], None).unwrap_err();
        assert!(
            too_many.message.contains("at most 2"),
            "{}",
            too_many.message
        );
        let too_long = run_params(&config, vec!["abcde".into()], None).unwrap_err();
        assert!(too_long.message.contains("argument 0 is 5 characters"));
        let nul = run_params(&config, vec!["a\0".into()], None).unwrap_err();
        assert!(nul.message.contains("NUL"));
        let zero = run_params(&config, vec![], Some(0)).unwrap_err();
        assert!(zero.message.contains("expected 1 to 10"));
        assert!(run_params(&config, vec![], Some(11)).is_err());
    }
}
