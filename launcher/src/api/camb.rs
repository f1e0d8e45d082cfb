//! The CAMB launcher's routes, in their original JSON shapes, for existing
//! scripts and the old CLI. Served only with `--camb-compat`, which the
//! daemon accepts only on a loopback address: these routes take no token.
//!
//! Errors are `{"error": "<CAMB message>"}` as before, plus a `detail` key
//! that says exactly which check failed.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use programs_db::{BuildStatus, DbError, RunStatus};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::Actor;
use super::runs::{run_params, start};
use super::upload::{self, UploadError};
use super::views::UploadForm;
use crate::records::RecordsError;
use crate::toolchain::Verdict;

pub fn routes(upload_limit: DefaultBodyLimit) -> Router<AppState> {
    Router::new()
        .route("/upload", post(upload).layer(upload_limit))
        .route("/files", get(files))
        .route("/files/{id}", delete(delete_file))
        .route("/compile/{id}", post(compile))
        .route("/execute/{id}", post(execute))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambError {
    pub error: String,
    /// Which check failed (added by this launcher).
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambUploaded {
    pub message: String,
    pub program_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambFile {
    pub id: i64,
    pub file_name: String,
    /// Where the launcher stores the source.
    pub file_path: String,
    /// Stored executables of the program's succeeded builds.
    pub executables: Vec<String>,
    /// Certificates are issued per run, not per file: always empty here.
    pub certificates: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambMessage {
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambCompiled {
    pub message: String,
    /// The compiler's output.
    pub output: String,
    pub error_output: String,
    pub executable_path: String,
    /// Always null: certificates are issued per run.
    pub certificate_path: Option<String>,
    pub build_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CambExecuted {
    pub message: String,
    pub output: String,
    pub error_output: String,
    pub executable_path: String,
    pub run_id: i64,
    pub exit_code: Option<i32>,
}

fn camb_error(status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    (
        status,
        Json(CambError {
            error: error.to_owned(),
            detail: Some(detail.into()),
        }),
    )
        .into_response()
}

/// Maps a `/v1`-style failure to the CAMB shape; `not_found` names the
/// CAMB message for a missing program.
fn from_api(err: ApiError, not_found: &str) -> Response {
    let error = match err.status {
        StatusCode::NOT_FOUND => not_found.to_owned(),
        StatusCode::CONFLICT => "Conflict".to_owned(),
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable".to_owned(),
        s if s.is_server_error() => "Internal error".to_owned(),
        _ => "Bad request".to_owned(),
    };
    camb_error(err.status, &error, err.message)
}

fn from_records(err: RecordsError) -> Response {
    from_api(err.into(), "File not found")
}

fn bad_id(raw: &str) -> Response {
    camb_error(
        StatusCode::NOT_FOUND,
        "File not found",
        format!("{raw:?} is not a program id"),
    )
}

/// CAMB: upload a C source.
#[utoipa::path(
    operation_id = "camb_upload",
    post, path = "/upload", tag = "camb-compat",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "OK", body = CambUploaded),
        (status = 400, description = "No file part, No selected file, File too large, Invalid file type", body = CambError),
    ),
    security(())
)]
pub async fn upload(
    State(app): State<AppState>,
    Actor(actor): Actor,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let received = match multipart {
        Ok(multipart) => {
            upload::receive(multipart, app.records.files(), app.config.uploads.max_bytes).await
        }
        Err(rejection) => Err(upload::rejection(rejection)),
    };
    let upload = match received {
        Ok(upload) => upload,
        Err(err) => {
            let (status, error) = match &err {
                UploadError::NoFilePart => (StatusCode::BAD_REQUEST, "No file part"),
                UploadError::NoFileName => (StatusCode::BAD_REQUEST, "No selected file"),
                UploadError::TooLarge { .. } => (StatusCode::BAD_REQUEST, "File too large"),
                UploadError::Store(_) | UploadError::DiskFull(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
                }
                _ => (StatusCode::BAD_REQUEST, "Invalid file type"),
            };
            return camb_error(status, error, err.to_string());
        }
    };
    match app
        .records
        .call(move |db| db.create_program(&actor, &upload.name, upload.blob))
        .await
    {
        Ok(program) => Json(CambUploaded {
            message: "File successfully uploaded".into(),
            program_id: program.id,
        })
        .into_response(),
        Err(err) => from_records(err),
    }
}

/// CAMB: list programs.
#[utoipa::path(
    operation_id = "camb_files",
    get, path = "/files", tag = "camb-compat",
    responses((status = 200, description = "OK", body = Vec<CambFile>)),
    security(())
)]
pub async fn files(State(app): State<AppState>) -> Response {
    let listed = app
        .records
        .call(|db| {
            let mut out = Vec::new();
            for program in db.programs()? {
                let executables = db
                    .builds_of(program.id)?
                    .into_iter()
                    .filter(|b| b.status == BuildStatus::Succeeded)
                    .filter_map(|b| b.executable_sha256)
                    .map(|sha| db.files().path(&sha).display().to_string())
                    .collect();
                out.push(CambFile {
                    id: program.id,
                    file_path: db
                        .files()
                        .path(&program.source_sha256)
                        .display()
                        .to_string(),
                    file_name: program.name,
                    executables,
                    certificates: Vec::new(),
                });
            }
            Ok(out)
        })
        .await;
    match listed {
        Ok(files) => Json(files).into_response(),
        Err(err) => from_records(err),
    }
}

/// CAMB: delete a program.
#[utoipa::path(
    operation_id = "camb_delete_file",
    delete, path = "/files/{id}", tag = "camb-compat",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "OK", body = CambMessage),
        (status = 404, description = "Not found", body = CambError),
        (status = 409, description = "A run of the program is live", body = CambError),
    ),
    security(())
)]
pub async fn delete_file(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Path(raw): Path<String>,
) -> Response {
    let Ok(id) = raw.parse::<i64>() else {
        return bad_id(&raw);
    };
    match app
        .records
        .call(move |db| db.delete_program(&actor, id))
        .await
    {
        Ok(_) => Json(CambMessage {
            message: "File successfully deleted".into(),
        })
        .into_response(),
        Err(err) => from_records(err),
    }
}

/// CAMB: compile with the default profile; answers when done.
#[utoipa::path(
    operation_id = "camb_compile",
    post, path = "/compile/{id}", tag = "camb-compat",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "OK", body = CambCompiled),
        (status = 404, description = "Not found", body = CambError),
        (status = 500, description = "Compilation failed: the compiler's message", body = CambError),
    ),
    security(())
)]
pub async fn compile(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Path(raw): Path<String>,
) -> Response {
    let Ok(id) = raw.parse::<i64>() else {
        return bad_id(&raw);
    };
    let (program, source) = match app.records.call(move |db| db.program_source(id)).await {
        Ok(found) => found,
        Err(err) => return from_records(err),
    };
    let plan = match app.builder.plan(&program, source, None) {
        Ok(plan) => plan,
        Err(err) => return from_api(err.into(), "File not found"),
    };
    let report = match app.builder.build(actor, program.id, plan).await {
        Ok(report) => report,
        Err(err) => return from_api(err.into(), "File not found"),
    };
    let build = &report.build;
    if report.verdict != Verdict::Succeeded {
        let reason = match (&build.error, build.exit_code) {
            (Some(error), _) if build.log.is_empty() => error.clone(),
            (Some(error), _) => format!("{error}\n{}", build.log),
            (None, _) => build.log.clone(),
        };
        return camb_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Compilation failed: {reason}"),
            format!("build {} {}", build.id, build.status),
        );
    }
    let executable_path = build
        .executable_sha256
        .as_ref()
        .map(|sha| app.records.files().path(sha).display().to_string())
        .unwrap_or_default();
    Json(CambCompiled {
        message: "Compilation successful".into(),
        output: build.log.clone(),
        error_output: String::new(),
        executable_path,
        certificate_path: None,
        build_id: build.id,
    })
    .into_response()
}

/// CAMB: run the newest build and wait for it to end (bounded by its time limit).
#[utoipa::path(
    operation_id = "camb_execute",
    post, path = "/execute/{id}", tag = "camb-compat",
    params(("id" = i64, Path, description = "Program id")),
    responses(
        (status = 200, description = "The program ran and exited", body = CambExecuted),
        (status = 404, description = "File not found, or Executable not found (not compiled)", body = CambError),
        (status = 500, description = "Execution failed (time limit, start failure)", body = CambError),
    ),
    security(())
)]
pub async fn execute(
    State(app): State<AppState>,
    Actor(actor): Actor,
    Path(raw): Path<String>,
) -> Response {
    let Ok(id) = raw.parse::<i64>() else {
        return bad_id(&raw);
    };
    let params = match run_params(&app.config, Vec::new(), None) {
        Ok(params) => params,
        Err(err) => return from_api(err, "File not found"),
    };
    let time_limit = params.time_limit_s;
    let run = match start(&app, actor, id, None, params).await {
        Ok(run) => run,
        Err(err) if err.status == StatusCode::CONFLICT => {
            return camb_error(StatusCode::NOT_FOUND, "Executable not found", err.message);
        }
        Err(err) => return from_api(err, "File not found"),
    };
    let run_id = run.id;
    let limit = Duration::from_secs(u64::from(time_limit) + 30);
    if !app.supervisor.wait_for_end(run_id, limit).await {
        return camb_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Execution failed: the run did not end in time",
            format!("run {run_id} is still live; see GET /v1/runs/{run_id}"),
        );
    }
    let found = app
        .records
        .call(move |db| {
            let run = db.run(run_id)?;
            let build = db.build(run.build_id)?;
            Ok::<_, DbError>((run, build))
        })
        .await;
    let (run, build) = match found {
        Ok(found) => found,
        Err(err) => return from_records(err),
    };
    let executable_path = build
        .executable_sha256
        .as_ref()
        .map(|sha| app.records.files().path(sha).display().to_string())
        .unwrap_or_default();
    let output = String::from_utf8_lossy(&run.stdout.bytes).into_owned();
    let error_output = String::from_utf8_lossy(&run.stderr.bytes).into_owned();
    if run.status != RunStatus::Exited {
        let why = run.error.clone().unwrap_or_else(|| run.status.to_string());
        return camb_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Execution failed: {why}"),
            format!("run {run_id} ended {}", run.status),
        );
    }
    Json(CambExecuted {
        message: "Execution successful".into(),
        output,
        error_output,
        executable_path,
        run_id,
        exit_code: run.exit_code,
    })
    .into_response()
}
