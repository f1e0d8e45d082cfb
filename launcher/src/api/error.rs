//! Every error the API returns: `{"error": {"code", "message"}}` with the
//! status that fits. Messages say which check failed and what was expected.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use programs_db::DbError;
use serde::Serialize;
use utoipa::ToSchema;

use super::views::BuildView;
use crate::records::RecordsError;
use crate::supervisor::{CancelError, SubmitError};
use crate::toolchain::BuildError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `unauthorized`, `not_found`, `invalid_request`,
    /// `invalid_upload`, `payload_too_large`, `unsupported_media_type`,
    /// `conflict`, `compile_failed`, `method_not_allowed`, `unavailable`,
    /// `compartment_unavailable`, `toolchain_unavailable`, `internal`.
    pub code: String,
    /// For a person.
    pub message: String,
}

/// A failed build: the error, and the build row with the compiler's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildFailedBody {
    pub error: ErrorDetail,
    pub build: BuildView,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// A failed build travels with its error.
    pub build: Option<Box<BuildView>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            build: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 503: the compartment cannot confine programs on this machine (a
    /// layer is missing); the message says which and what to do.
    pub fn compartment_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "compartment_unavailable",
            message,
        )
    }

    /// 507: the data folder's disk is full; the message says what could
    /// not be written.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let error = ErrorDetail {
            code: self.code.to_owned(),
            message: self.message,
        };
        let mut response = match self.build {
            Some(build) => (
                self.status,
                Json(BuildFailedBody {
                    error,
                    build: *build,
                }),
            )
                .into_response(),
            None => (self.status, Json(ErrorBody { error })).into_response(),
        };
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NotFound { .. } => Self::not_found(err.to_string()),
            DbError::Conflict(message) => Self::conflict(message),
            DbError::IllegalTransition { .. } => Self::conflict(err.to_string()),
            DbError::Invalid(message) => Self::bad_request(message),
            full if full.is_disk_full() => Self::insufficient_storage(full.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<RecordsError> for ApiError {
    fn from(err: RecordsError) -> Self {
        match err {
            RecordsError::Db(db) => db.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(err: BuildError) -> Self {
        match err {
            BuildError::UnknownProfile { .. } => Self::bad_request(err.to_string()),
            BuildError::CompartmentUnavailable(message) => Self::compartment_unavailable(message),
            BuildError::Records(records) => records.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::CompartmentUnavailable(message) => Self::compartment_unavailable(message),
            other => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                other.to_string(),
            ),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(err: CancelError) -> Self {
        match err {
            CancelError::NotFound(_) => Self::not_found(err.to_string()),
            CancelError::AlreadyEnded { .. } | CancelError::NotSupervised(_) => {
                Self::conflict(err.to_string())
            }
            CancelError::Records(records) => records.into(),
        }
    }
}
