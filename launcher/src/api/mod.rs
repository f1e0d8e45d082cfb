//! The HTTP API: `/v1` (bearer token), `/healthz` and `/v1/ca` (open), and
//! with `--camb-compat` the CAMB launcher's routes (no token; loopback only).

mod builds;
pub mod camb;
mod certificates;
mod error;
mod events;
mod extract;
pub mod openapi;
mod programs;
mod runs;
pub mod services;
mod system;
pub mod upload;
pub mod views;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::{ApiError, ErrorBody};
use extract::JsonLimit;

use crate::compartment::CompartmentInfo;
use crate::config::Config;
use crate::platform::PlatformFacts;
use crate::records::Records;
use crate::supervisor::Supervisor;
use crate::toolchain::Builder;
use attestable_data::token::BearerToken;

/// Largest JSON body any route accepts.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// Everything the handlers share.
pub struct App {
    pub records: Records,
    pub builder: Arc<Builder>,
    pub supervisor: Supervisor,
    pub token: BearerToken,
    pub config: Config,
    pub root_pem: String,
    /// The attestation intermediate in force (`GET /v1/ca`).
    pub attestation: Arc<crate::pki::Attestation>,
    /// The services the broker may call.
    pub registry: Arc<crate::broker::Registry>,
    pub platform: PlatformFacts,
    pub compartment: CompartmentInfo,
    pub camb_compat: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("camb_compat", &self.camb_compat)
            .finish_non_exhaustive()
    }
}

pub type AppState = Arc<App>;

/// The whole router.
pub fn router(app: AppState) -> Router {
    let upload_limit = DefaultBodyLimit::max(upload::body_limit(app.config.uploads.max_bytes));
    let mut router = Router::new()
        .route("/healthz", get(system::healthz))
        .route("/v1/ca", get(system::ca))
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/platform", get(system::platform))
        .route("/v1/audit", get(system::audit))
        .route(
            "/v1/programs",
            post(programs::upload)
                .layer(upload_limit)
                .get(programs::list),
        )
        .route(
            "/v1/programs/{id}",
            get(programs::show).delete(programs::delete),
        )
        .route("/v1/programs/{id}/source", get(programs::source))
        .route(
            "/v1/programs/{id}/builds",
            post(builds::create)
                .layer(Extension(JsonLimit(builds::BUILD_BODY_LIMIT)))
                .get(builds::list),
        )
        .route("/v1/builds/{id}", get(builds::show))
        .route(
            "/v1/programs/{id}/runs",
            post(runs::create).layer(Extension(JsonLimit(runs::body_limit(&app.config)))),
        )
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/events", get(events::follow))
        .route("/v1/runs/{id}/certificate", get(certificates::certificate))
        .route("/v1/runs/{id}/calls", get(certificates::calls))
        .route("/v1/services", get(services::list))
        .route(
            "/v1/services/{id}",
            get(services::show)
                .put(services::put)
                .delete(services::delete)
                .layer(Extension(JsonLimit(services::SERVICE_BODY_LIMIT))),
        );
    if app.camb_compat {
        router = router.merge(camb::routes(upload_limit));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// Routes outside `/v1`, and the CA certificate, need no token.
fn requires_token(path: &str) -> bool {
    (path == "/v1" || path.starts_with("/v1/")) && path != "/v1/ca"
}

async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if requires_token(request.uri().path()) {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if let Err(failure) = app.token.check(header) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                app.token.message(failure),
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; see GET /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_v1_routes_but_the_ca_need_the_token() {
        assert!(requires_token("/v1/programs"));
        assert!(requires_token("/v1/openapi.json"));
        assert!(requires_token("/v1/nope"));
        assert!(requires_token("/v1"));
        assert!(!requires_token("/v1/ca"));
        assert!(!requires_token("/healthz"));
        assert!(!requires_token("/upload"));
        assert!(!requires_token("/v1x"));
    }
}
