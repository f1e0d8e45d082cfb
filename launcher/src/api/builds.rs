//! Builds: compile a program (answering when done), list, show.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, BuildFailedBody, ErrorBody};
use super::extract::{Actor, Id, JsonBody};
use super::views::{BuildRequest, BuildView};
use crate::toolchain::{Anchor, BuildReport, Verdict};

/// Largest body of `POST /v1/programs/{id}/builds`: an anchor at its limit
/// (`MAX_ANCHOR_BYTES` of PEM) with every line end escaped in JSON, and the
/// profile.
pub const BUILD_BODY_LIMIT: usize = 2 * crate::toolchain::sdk::MAX_ANCHOR_BYTES + 4096;

/// Turns a finished build into the API's answer: the build, or an error
/// that carries it (422 with the compiler's diagnostics, 500 when the
/// toolchain itself failed).
pub(super) fn build_result(report: BuildReport) -> Result<BuildView, ApiError> {
    let build = &report.build;
    let view = BuildView::from(build);
    let (status, code, message) = match report.verdict {
        Verdict::Succeeded => return Ok(view),
        Verdict::CompileError | Verdict::TimedOut => {
            let head = match (&build.error, build.exit_code) {
                (Some(error), _) => error.clone(),
                (None, Some(code)) => format!("compilation failed (exit code {code})"),
                (None, None) => "compilation failed".to_owned(),
            };
            let message = if build.log.is_empty() {
                head
            } else {
                format!("{head}:\n{}", build.log)
            };
            (StatusCode::UNPROCESSABLE_ENTITY, "compile_failed", message)
        }
        Verdict::ToolchainUnavailable => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "toolchain_unavailable",
            build
                .error
                .clone()
                .unwrap_or_else(|| "the toolchain failed".into()),
        ),
        Verdict::Interrupted => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the launcher is shutting down; the build was interrupted".to_owned(),
        ),
    };
    let mut err = ApiError::new(status, code, message);
    err.build = Some(Box::new(view));
    Err(err)
}

/// Compile a program; answers when the compiler is done.
#[utoipa::path(
    operation_id = "build_program",
    post, path = "/v1/programs/{id}/builds", tag = "builds",
    params(("id" = i64, Path, description = "Program id")),
    request_body(content = Option<BuildRequest>, content_type = "application/json", description = "Optional; an empty body uses the default profile"),
    responses(
        (status = 201, description = "Built", body = BuildView),
        (status = 400, description = "Unknown profile, an anchor that is not PEM certificates, or a malformed body", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 422, description = "The compiler rejected the program; the message holds its diagnostics", body = BuildFailedBody),
        (status = 500, description = "The toolchain is missing or failed", body = BuildFailedBody),
        (status = 503, description = "The launcher is shutting down (`unavailable`), or the compartment lacks a layer (`compartment_unavailable`: the message names it and what to do)", body = BuildFailedBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Id(id): Id,
    JsonBody(request): JsonBody<BuildRequest>,
) -> Result<(StatusCode, Json<BuildView>), ApiError> {
    let anchor = request
        .services_anchor_pem
        .as_deref()
        .map(Anchor::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (program, source) = app.records.call(move |db| db.program_source(id)).await?;
    let plan =
        app.builder
            .plan_with_anchor(&program, source, request.profile.as_deref(), anchor)?;
    let report = app.builder.build(actor, program.id, plan).await?;
    Ok((StatusCode::CREATED, Json(build_result(report)?)))
}

/// A program's builds, oldest first.
#[utoipa::path(
    operation_id = "list_builds",
    get, path = "/v1/programs/{id}/builds", tag = "builds",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "OK", body = Vec<BuildView>),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Id(id): Id,
) -> Result<Json<Vec<BuildView>>, ApiError> {
    let builds = app
        .records
        .call(move |db| {
            db.program(id)?;
            db.builds_of(id)
        })
        .await?;
    Ok(Json(builds.iter().map(BuildView::from).collect()))
}

/// One build, with its log.
#[utoipa::path(
    operation_id = "get_build",
    get, path = "/v1/builds/{id}", tag = "builds",
    params(("id" = i64, Path, description = "Build id")),
    responses(
        (status = 200, description = "OK", body = BuildView),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(State(app): State<AppState>, Id(id): Id) -> Result<Json<BuildView>, ApiError> {
    let build = app.records.call(move |db| db.build(id)).await?;
    Ok(Json((&build).into()))
}
