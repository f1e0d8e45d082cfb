//! The service registry: list, show, register or replace, remove.
//!
//! Services from the configuration file are listed with `"source":
//! "config"` and cannot be changed here (409); the others are kept in the
//! database. A change takes effect for the next call: the service gets a new
//! HTTPS client trusting exactly its new CA.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Actor, JsonBody};
use super::views::rfc3339;
use crate::broker::ServiceClient;
use crate::broker::registry::{RegistryError, validate};

/// Largest body of `PUT /v1/services/{id}`: the CA PEM limit and a URL.
pub const SERVICE_BODY_LIMIT: usize = 128 * 1024;

/// A service the broker may call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    /// What programs name it by: `[a-z0-9-]{1,64}`.
    pub id: String,
    /// `https://host:port[/prefix]`; calls go to `{base_url}/attested/read` etc.
    pub base_url: String,
    /// The CA (PEM) the service's TLS certificate must chain to.
    pub ca_pem: String,
    /// Subjects of the certificates in `ca_pem`.
    pub ca_subjects: Vec<String>,
    /// `config` (the launcher's configuration file; read-only here) or `api`.
    pub source: String,
    /// When an API registration last changed.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl From<&ServiceClient> for ServiceView {
    fn from(s: &ServiceClient) -> Self {
        Self {
            id: s.id().to_owned(),
            base_url: s.base_url().to_owned(),
            ca_pem: s.ca_pem().to_owned(),
            ca_subjects: s
                .cas()
                .iter()
                .map(|c| attestable_data::pki::describe_name(c.subject_name()))
                .collect(),
            source: s.source().as_str().to_owned(),
            updated_at: (s.updated_at() > 0).then(|| rfc3339(s.updated_at())),
        }
    }
}

/// `PUT /v1/services/{id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    /// An `https` URL: scheme, host, optional port and path prefix; no
    /// credentials, query or fragment.
    #[schema(pattern = "^https://", max_length = 2048)]
    pub base_url: String,
    /// 1 to 16 PEM certificates (at most 64 KiB): the CA(s) the service's TLS
    /// certificate must chain to. Nothing else is trusted for it.
    #[schema(pattern = "-----BEGIN CERTIFICATE-----", max_length = 65536)]
    pub ca_pem: String,
}

/// A service id from the path, checked.
#[derive(Debug)]
pub struct ServiceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ServiceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("service id: {}", e.body_text())))?;
        if !programs_db::valid_service_id(&id) {
            return Err(ApiError::bad_request(format!(
                "service id: expected 1 to 64 characters of a-z, 0-9 and -, found {id:?}"
            )));
        }
        Ok(Self(id))
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::Configured { .. } => ApiError::conflict(err.to_string()),
            RegistryError::Invalid { .. } => ApiError::bad_request(err.to_string()),
            RegistryError::Client { .. } => ApiError::internal(err.to_string()),
        }
    }
}

/// Every service the broker may call.
#[utoipa::path(
    operation_id = "list_services",
    get, path = "/v1/services", tag = "services",
    responses(
        (status = 200, description = "OK", body = Vec<ServiceView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(app): State<AppState>) -> Json<Vec<ServiceView>> {
    Json(app.registry.list().iter().map(|s| (&**s).into()).collect())
}

/// One service.
#[utoipa::path(
    operation_id = "get_service",
    get, path = "/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 200, description = "OK", body = ServiceView),
        (status = 400, description = "Not a service id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(app): State<AppState>,
    ServiceId(id): ServiceId,
) -> Result<Json<ServiceView>, ApiError> {
    app.registry
        .get(&id)
        .map(|s| Json((&*s).into()))
        .ok_or_else(|| not_registered(&id))
}

fn not_registered(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no service {id:?} is registered; PUT /v1/services/{id} registers it"
    ))
}

/// Register a service, or replace its registration.
#[utoipa::path(
    operation_id = "put_service",
    put, path = "/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id", pattern = "^[a-z0-9-]{1,64}$")),
    request_body(content = ServiceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = ServiceView),
        (status = 201, description = "Registered", body = ServiceView),
        (status = 400, description = "A field failed validation: the message names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "The service is defined in the configuration file", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(app): State<AppState>,
    Actor(actor): Actor,
    ServiceId(id): ServiceId,
    JsonBody(request): JsonBody<ServiceRequest>,
) -> Result<(StatusCode, Json<ServiceView>), ApiError> {
    if request.base_url.is_empty() && request.ca_pem.is_empty() {
        return Err(ApiError::bad_request(
            "expected a JSON body {\"base_url\": \"https://…\", \"ca_pem\": \"-----BEGIN CERTIFICATE-----…\"}",
        ));
    }
    app.registry.check_api_change(&id)?;
    let valid = validate(&id, &request.base_url, &request.ca_pem).map_err(|message| {
        ApiError::from(RegistryError::Invalid {
            id: id.clone(),
            message,
        })
    })?;
    let (row_id, url, pem) = (
        valid.id.clone(),
        valid.base_url.clone(),
        valid.ca_pem.clone(),
    );
    let (row, created) = app
        .records
        .call(move |db| db.put_service(&actor, &row_id, &url, &pem))
        .await?;
    let client = app.registry.put(valid, row.updated_at)?;
    tracing::info!(service = %id, base_url = %client.base_url(), created, "service registered");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json((&*client).into())))
}

/// Remove a service registered through the API.
#[utoipa::path(
    operation_id = "delete_service",
    delete, path = "/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a service id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "The service is defined in the configuration file", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Actor(actor): Actor,
    ServiceId(id): ServiceId,
) -> Result<StatusCode, ApiError> {
    app.registry.check_api_change(&id)?;
    let row_id = id.clone();
    let removed = app
        .records
        .call(move |db| db.delete_service(&actor, &row_id))
        .await?;
    let was_live = app.registry.remove(&id)?;
    if !removed && !was_live {
        return Err(not_registered(&id));
    }
    tracing::info!(service = %id, "service removed");
    Ok(StatusCode::NO_CONTENT)
}
