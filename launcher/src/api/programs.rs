//! `/v1/programs`: upload, list, show, source, delete.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Actor, Id, QueryParams};
use super::upload::{self, UploadError};
use super::views::{self, ProgramView, ProgramsQuery, UploadForm};

pub(super) fn upload_error(err: UploadError) -> ApiError {
    let status = err.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
        s if s.is_server_error() => "internal",
        _ => "invalid_upload",
    };
    ApiError::new(status, code, err.to_string())
}

/// Upload a C source.
#[utoipa::path(
    operation_id = "upload_program",
    post, path = "/v1/programs", tag = "programs",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = ProgramView),
        (status = 400, description = "Missing file field, bad name, empty, not UTF-8, NUL byte, malformed multipart", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 415, description = "Not multipart/form-data", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(app): State<AppState>,
    Actor(actor): Actor,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<ProgramView>), ApiError> {
    let multipart = multipart.map_err(|r| upload_error(upload::rejection(r)))?;
    let upload = upload::receive(multipart, app.records.files(), app.config.uploads.max_bytes)
        .await
        .map_err(upload_error)?;
    let program = app
        .records
        .call(move |db| db.create_program(&actor, &upload.name, upload.blob))
        .await?;
    tracing::info!(program = program.id, name = %program.name, size = program.size, "program stored");
    Ok((StatusCode::CREATED, Json((&program).into())))
}

/// List programs, oldest first, a page at a time (`after`, `limit`).
#[utoipa::path(
    operation_id = "list_programs",
    get, path = "/v1/programs", tag = "programs",
    params(ProgramsQuery),
    responses(
        (status = 200, description = "OK", body = Vec<ProgramView>),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<ProgramsQuery>,
) -> Result<Json<Vec<ProgramView>>, ApiError> {
    let page = views::page(query.after, query.limit)?;
    let programs = app.records.call(move |db| db.programs_page(page)).await?;
    Ok(Json(programs.iter().map(ProgramView::from).collect()))
}

/// One program.
#[utoipa::path(
    operation_id = "get_program",
    get, path = "/v1/programs/{id}", tag = "programs",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "OK", body = ProgramView),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(State(app): State<AppState>, Id(id): Id) -> Result<Json<ProgramView>, ApiError> {
    let program = app.records.call(move |db| db.program(id)).await?;
    Ok(Json((&program).into()))
}

/// The uploaded source, as stored.
#[utoipa::path(
    operation_id = "get_program_source",
    get, path = "/v1/programs/{id}/source", tag = "programs",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "The C source", content_type = "text/x-c; charset=utf-8", body = String),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn source(State(app): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let (program, bytes) = app.records.call(move |db| db.program_source(id)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-c; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", program.name),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Delete a program with its builds and runs (refused while a run is live).
#[utoipa::path(
    operation_id = "delete_program",
    delete, path = "/v1/programs/{id}", tag = "programs",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "The program has a queued or running run", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let deleted = app
        .records
        .call(move |db| db.delete_program(&actor, id))
        .await?;
    tracing::info!(
        program = id,
        builds = deleted.builds,
        runs = deleted.runs,
        "program deleted"
    );
    Ok(StatusCode::NO_CONTENT)
}
