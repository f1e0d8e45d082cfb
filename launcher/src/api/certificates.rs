//! A run's certificate chain and its brokered calls.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use programs_db::Call;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Id;
use super::views::rfc3339;

/// The run's certificate chain: run certificate, attestation intermediate,
/// root (PEM). `openssl verify -CAfile root.pem -untrusted attestation.pem
/// run.pem` verifies it.
#[utoipa::path(
    operation_id = "get_run_certificate",
    get, path = "/v1/runs/{id}/certificate", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "PEM chain, leaf first", content_type = "application/x-pem-file", body = String),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such run, or it has no certificate (yet)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn certificate(
    State(app): State<AppState>,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let run = app.records.call(move |db| db.run(id)).await?;
    let Some(pem) = run.certificate_pem else {
        let why = if run.status.is_terminal() {
            format!(
                "run {id} ended ({}) without a certificate: the program never completed HELLO",
                run.status
            )
        } else {
            format!(
                "run {id} has no certificate yet: it is issued when the program sends HELLO \
                 (the SDK's att_init)"
            )
        };
        return Err(ApiError::not_found(why));
    };
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}

/// A call the broker made for a run. Never a payload.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    pub id: i64,
    /// When it started.
    #[schema(format = DateTime)]
    pub at: String,
    /// The same instant in Unix milliseconds.
    pub at_ms: i64,
    pub service: String,
    /// `read`, `write` or `service_cert`.
    pub op: String,
    /// The collection (first path segment) the program named; empty for `service_cert`.
    pub resource: String,
    /// Bytes of the request envelope.
    pub request_bytes: u64,
    /// Bytes of the response envelope (or certificate chain).
    pub response_bytes: u64,
    pub latency_us: u64,
    /// `ok`, the `NACK` code the program got, or `cancelled` (the run ended first).
    pub outcome: String,
    /// For failures: why (never a payload, never a service's proof).
    pub detail: Option<String>,
}

impl From<&Call> for CallView {
    fn from(c: &Call) -> Self {
        Self {
            id: c.id,
            at: rfc3339(c.at),
            at_ms: c.at,
            service: c.service.clone(),
            op: c.op.as_str().to_owned(),
            resource: c.resource.clone(),
            request_bytes: c.request_bytes,
            response_bytes: c.response_bytes,
            latency_us: c.latency_us,
            outcome: c.outcome.clone(),
            detail: c.detail.clone(),
        }
    }
}

/// The calls a run made through the broker, in the order they started.
#[utoipa::path(
    operation_id = "list_run_calls",
    get, path = "/v1/runs/{id}/calls", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "OK", body = Vec<CallView>),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn calls(
    State(app): State<AppState>,
    Id(id): Id,
) -> Result<Json<Vec<CallView>>, ApiError> {
    let calls = app
        .records
        .call(move |db| {
            db.run(id)?;
            db.run_calls(id)
        })
        .await?;
    Ok(Json(calls.iter().map(CallView::from).collect()))
}
