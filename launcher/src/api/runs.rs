//! Runs: start (answers at once), list, show, cancel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use programs_db::{DbError, NewRun, RunFilter};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Actor, Id, JsonBody, QueryParams};
use super::views::{RunLimitsRequest, RunRequest, RunSummary, RunView, RunsQuery};
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
    run_params_with_limits(config, args, time_limit_s, None)
}

/// [`run_params`] with the request's own limits, each of which may only
/// lower the configured one.
pub(super) fn run_params_with_limits(
    config: &Config,
    args: Vec<String>,
    time_limit_s: Option<u32>,
    requested: Option<RunLimitsRequest>,
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
    let asked = requested.unwrap_or_default();
    let limits = Limits {
        address_space_bytes: tighter(
            "address_space_bytes",
            set(runs.limits.address_space_bytes),
            asked.address_space_bytes,
        )?,
        // A backstop behind the wall-clock limit the supervisor enforces.
        cpu_seconds: tighter(
            "cpu_seconds",
            Some(u64::from(time_limit_s) + 1),
            asked.cpu_seconds,
        )?,
        open_files: tighter("open_files", set(runs.limits.open_files), asked.open_files)?,
        processes: tighter("processes", set(runs.limits.processes), asked.processes)?,
        file_size_bytes: tighter(
            "file_size_bytes",
            set(runs.limits.file_size_bytes),
            asked.file_size_bytes,
        )?,
        wall_seconds: time_limit_s.into(),
    };
    // The sandbox's own bounds (e.g. at least 4 open files).
    crate::compartment::sandboxed::sandbox_limits(&limits)
        .validate()
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    Ok(RunParams {
        args,
        time_limit_s,
        limits,
    })
}

/// The limit a run gets: the configured one (`None` = unlimited), or the
/// request's if it is not looser.
fn tighter(
    field: &str,
    configured: Option<u64>,
    asked: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    match (configured, asked) {
        (_, Some(0)) => Err(ApiError::bad_request(format!(
            "limits.{field} is 0; expected at least 1"
        ))),
        (Some(max), Some(v)) if v > max => Err(ApiError::bad_request(format!(
            "limits.{field} is {v}; at most {max} allowed (a run may only lower its limits)"
        ))),
        (_, Some(v)) => Ok(Some(v)),
        (configured, None) => Ok(configured),
    }
}

/// Queues a run of a program's build and hands it to the supervisor.
pub(super) async fn start(
    app: &AppState,
    actor: String,
    program_id: i64,
    build_id: Option<i64>,
    params: RunParams,
) -> Result<programs_db::Run, ApiError> {
    let admission = app.supervisor.admit()?;
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
    app.supervisor.submit(
        admission,
        Launch {
            run: run.clone(),
            argv0,
            executable_sha256,
        },
    );
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
        (status = 503, description = "Shutting down or too many runs (`unavailable`), or the compartment lacks a layer (`compartment_unavailable`: the message names it and what to do)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Id(id): Id,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<(StatusCode, Json<RunSummary>), ApiError> {
    let params = run_params_with_limits(
        &app.config,
        request.args.unwrap_or_default(),
        request.time_limit_s,
        request.limits,
    )?;
    let run = start(&app, actor, id, request.build_id, params).await?;
    Ok((StatusCode::ACCEPTED, Json((&run).into())))
}

/// List runs, oldest first, optionally of one program, a page at a time
/// (`after`, `limit`).
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
    let page = super::views::page(query.after, query.limit)?;
    let runs = app
        .records
        .call(move |db| {
            if let Some(program) = query.program {
                db.program(program)?;
            }
            db.runs(RunFilter {
                program_id: query.program,
                live_only: false,
                page: Some(page),
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

    #[test]
    fn a_run_may_only_lower_its_limits() {
        let config = Config::parse(
            "[runs]\ndefault_time_limit_s = 5\n[runs.limits]\nopen_files = 64\nprocesses = 0\n",
            "t",
        )
        .unwrap();
        let asked = |l: RunLimitsRequest| run_params_with_limits(&config, vec![], None, Some(l));
        let ok = asked(RunLimitsRequest {
            cpu_seconds: Some(1),
            open_files: Some(16),
            processes: Some(100),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.limits.cpu_seconds, Some(1));
        assert_eq!(ok.limits.open_files, Some(16));
        // Unlimited in the configuration: any value is tighter.
        assert_eq!(ok.limits.processes, Some(100));
        assert_eq!(ok.limits.address_space_bytes, Some(1 << 30));
        let err = asked(RunLimitsRequest {
            cpu_seconds: Some(7),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.message,
            "limits.cpu_seconds is 7; at most 6 allowed (a run may only lower its limits)"
        );
        let err = asked(RunLimitsRequest {
            open_files: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.message.contains("limits.open_files is 0"),
            "{}",
            err.message
        );
        let err = asked(RunLimitsRequest {
            open_files: Some(2),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.message.contains("open_files = 2"), "{}", err.message);
        assert!(
            serde_json::from_str::<RunRequest>(r#"{"limits":{"wall_seconds":3}}"#).is_err(),
            "unknown limit fields are refused"
        );
    }
}
