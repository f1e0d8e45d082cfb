//! Health, the root certificate, the platform, the audit log, and the
//! OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use programs_db::AuditFilter;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::views::{
    self, AuditEventView, AuditQuery, Health, PlatformView, ProfileView, ToolchainsView,
};

/// Liveness; needs no token.
#[utoipa::path(
    operation_id = "healthz",
    get, path = "/healthz", tag = "system",
    responses((status = 200, description = "OK", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The launcher's root CA certificate, then the attestation intermediate in
/// force (PEM); needs no token. The root comes first, so a client that reads
/// one certificate gets the root.
#[utoipa::path(
    operation_id = "get_ca",
    get, path = "/v1/ca", tag = "system",
    responses((status = 200, description = "PEM certificates: the root, then the attestation intermediate", content_type = "application/x-pem-file", body = String)),
    security(())
)]
pub async fn ca(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        app.attestation.ca_chain_pem(),
    )
}

/// What the launcher runs on and how it confines programs.
#[utoipa::path(
    operation_id = "get_platform",
    get, path = "/v1/platform", tag = "system",
    responses(
        (status = 200, description = "OK", body = PlatformView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn platform(State(app): State<AppState>) -> Json<PlatformView> {
    let profiles = app
        .builder
        .profiles()
        .iter()
        .map(|(name, p)| ProfileView {
            name: name.clone(),
            compiler: p.compiler.clone(),
            flags: p.flags.clone(),
            libs: p.libs.clone(),
            description: p.description.clone(),
        })
        .collect();
    Json(PlatformView {
        facts: app.platform.clone(),
        compartment: app.compartment.clone(),
        toolchains: ToolchainsView {
            default_profile: app.builder.default_profile().to_owned(),
            profiles,
        },
        launcher_version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The audit log, oldest first.
#[utoipa::path(
    operation_id = "list_audit_events",
    get, path = "/v1/audit", tag = "system",
    params(AuditQuery),
    responses(
        (status = 200, description = "OK", body = Vec<AuditEventView>),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEventView>>, ApiError> {
    let page = views::page(query.after, query.limit)?;
    let filter = AuditFilter {
        subject_kind: query.subject_kind,
        subject_id: query.subject_id,
        after_id: page.after_id,
        limit: page.limit,
    };
    let events = app.records.call(move |db| db.audit_events(&filter)).await?;
    Ok(Json(events.iter().map(AuditEventView::from).collect()))
}

/// This document.
#[utoipa::path(
    operation_id = "get_openapi",
    get, path = "/v1/openapi.json", tag = "system",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn openapi(State(app): State<AppState>) -> impl IntoResponse {
    Json(super::openapi::document(app.camb_compat, &app.config.runs))
}
