//! The HTTP surface of a service (`docs/PROTOCOL.md`, "Service endpoints"):
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /attested/read`, `POST /attested/write` | programs, through the launcher | verified by [`ServiceVerifier`], answered sealed |
//! | `GET /.well-known/attestable/certificate` | anyone | the service's certificate and the services CA |
//! | `GET /healthz` | anyone | `{"status": "ok", "service"}` |
//! | `GET /api/…`, `POST /api/sales`, `POST /api/messages` | the operator (bearer token) | the business records and the audit; `GET /api/sales/last` and `POST /api/messages` serve what the attested read and write serve, without attestation |

use std::sync::{Arc, Mutex};

use attestable_data::attested::{
    AttestedHttpRequest, AttestedHttpResponse, Rejection, ServiceVerifier, VerifiedRequest,
    describe_json_error,
};
use attestable_data::pki::unix_now;
use attestable_data::policy::Op;
use attestable_data::verify::parse_chain_pem;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::business;
use crate::config::Settings;
use crate::db::{self, AuditRecord};
use crate::decisions::DecisionLog;
use crate::kind::ServiceKind;
use crate::{messaging, store, taxi};
use attestable_data::token::BearerToken;

/// Largest body of an attested request (`docs/PROTOCOL.md`, Service endpoints).
pub const MAX_ATTESTED_BODY: usize = attestable_data::attested::MAX_REQUEST_BODY_BYTES;
/// Largest body of an operator request.
pub const MAX_OPERATOR_BODY: usize = 64 << 10;
/// Rows an operator list returns by default, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// One running service's state, shared by its handlers.
pub struct Service {
    /// Which service.
    pub kind: ServiceKind,
    /// Verifies requests and seals answers.
    pub verifier: Arc<ServiceVerifier>,
    /// The database (one connection: SQLite serialises writers anyway).
    pub db: Mutex<Connection>,
    /// The JSON-lines decision log.
    pub log: DecisionLog,
    /// The operator token.
    pub token: BearerToken,
    /// `GET /.well-known/attestable/certificate`.
    pub chain_pem: String,
    /// The case study's knobs.
    pub settings: Settings,
}

impl Service {
    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs and stores a decision.
    fn record(&self, record: &AuditRecord) {
        self.log.write(record);
        if let Err(e) = record.insert(&self.db()) {
            tracing::error!(service = self.kind.name(), error = %e, "cannot store a decision");
        }
    }

    /// Everything after the body was read: parse, verify, serve, seal, record.
    fn handle_attested(&self, op: Op, body: &[u8]) -> Response {
        let now = unix_now();
        let mut record = AuditRecord::new(now, self.kind.name(), op.as_str());
        let response = self.decide_and_serve(op, body, now, &mut record);
        self.record(&record);
        response
    }

    fn decide_and_serve(
        &self,
        op: Op,
        body: &[u8],
        now: i64,
        record: &mut AuditRecord,
    ) -> Response {
        let request: AttestedHttpRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return record.rejected(&Rejection::BadRequest(format!(
                    "the body {}; expected {{\"certificate_chain\": PEM, \"request\": base64}}",
                    describe_json_error(&e)
                )));
            }
        };
        let verified = match request
            .envelope()
            .and_then(|der| self.verifier.verify(&request.certificate_chain, &der, op))
        {
            Ok(v) => v,
            Err(rejection) => {
                // Parsed again only for a refusal: the verifier caches accepted chains.
                record.certificate_sha256 = leaf_fingerprint(&request.certificate_chain);
                return record.rejected(&rejection);
            }
        };
        record.allowed(&verified, &self.verifier);
        let served = business::serve(
            self.kind,
            &mut self.db(),
            &self.settings,
            op,
            &verified.body.resource,
            &verified.payload,
            now,
        );
        match served {
            Ok(payload) => match self.verifier.seal_response(&verified, &payload) {
                Ok(der) => {
                    record.finish("allowed", 200, None);
                    let body = AttestedHttpResponse {
                        response: BASE64.encode(der),
                    };
                    (StatusCode::OK, axum::Json(body)).into_response()
                }
                Err(e) => {
                    tracing::error!(service = self.kind.name(), error = %e, "cannot seal an answer");
                    record.finish("internal", 500, Some("cannot seal the answer".into()));
                    error(
                        500,
                        "internal",
                        "the service could not seal its answer; see its log",
                    )
                }
            },
            Err(business::BusinessError::Database(e)) => {
                tracing::error!(service = self.kind.name(), error = %e, "database error");
                record.finish("internal", 500, Some("database error".into()));
                error(
                    500,
                    "internal",
                    "the service's database failed; see its log",
                )
            }
            Err(e) => {
                let message = e.to_string();
                record.finish(e.code(), e.status(), Some(message.clone()));
                error(e.status(), e.code(), &message)
            }
        }
    }
}

impl AuditRecord {
    fn new(at: i64, service: &'static str, endpoint: &'static str) -> Self {
        Self {
            at,
            service,
            endpoint,
            outcome: "internal",
            status: 500,
            allowed: false,
            failed_step: None,
            message: None,
            resource: None,
            run: None,
            program_key: None,
            measurement: None,
            certificate_sha256: None,
            proof: None,
        }
    }

    /// Fills in a refusal and makes its answer.
    fn rejected(&mut self, rejection: &Rejection) -> Response {
        let status = rejection.status();
        match rejection {
            Rejection::BadRequest(m) => {
                self.outcome = "bad_request";
                self.message = Some(m.clone());
            }
            Rejection::Denied(d) => {
                self.outcome = "denied";
                self.failed_step = d.failed_step().map(|s| s.as_str());
                self.message = Some(d.summary());
                self.proof = Some(d.to_string());
            }
        }
        self.status = status;
        json_response(status, rejection.error_body())
    }

    fn allowed(&mut self, v: &VerifiedRequest, verifier: &ServiceVerifier) {
        let cert = &v.certificate;
        self.allowed = true;
        self.resource = Some(verifier.policy().shown_resource(&v.body.resource));
        self.run = Some(cert.run_name());
        self.program_key = Some(cert.program_key_id().to_string());
        self.certificate_sha256 = Some(cert.fingerprint().to_string());
        self.measurement = Some(cert.measurement().to_string());
        self.proof = Some(v.decision.to_string());
        self.message = Some(v.decision.conclusion().to_owned());
    }

    fn finish(&mut self, outcome: &'static str, status: u16, message: Option<String>) {
        self.outcome = outcome;
        self.status = status;
        if message.is_some() {
            self.message = message;
        }
    }
}

/// SHA-256 of the presented run certificate, for the audit (unverified).
fn leaf_fingerprint(chain_pem: &str) -> Option<String> {
    let chain = parse_chain_pem(chain_pem).ok()?;
    attestable_data::pki::cert_fingerprint(chain.first()?).ok()
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

/// The router of one service.
pub fn router(service: Arc<Service>) -> Router {
    let attested = Router::new()
        .route("/attested/read", post(attested_read))
        .route("/attested/write", post(attested_write))
        .layer(DefaultBodyLimit::max(MAX_ATTESTED_BODY))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            refuse_oversized_attested,
        ));
    let operator = Router::new().route("/api/audit", get(audit));
    let operator = match service.kind {
        ServiceKind::Store => operator
            .route("/api/sales", get(list_sales).post(new_sale))
            .route("/api/sales/last", get(last_sale)),
        ServiceKind::Taxi => operator.route("/api/trips", get(list_trips)),
        ServiceKind::Messaging => {
            operator.route("/api/messages", get(list_messages).post(send_message))
        }
    };
    let operator = operator
        .layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY))
        .layer(middleware::from_fn(|request: Request, next: Next| {
            refuse_announced_oversize(MAX_OPERATOR_BODY, request, next)
        }))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            operator_only,
        ));
    Router::new()
        .merge(attested)
        .merge(operator)
        .route("/.well-known/attestable/certificate", get(certificate))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service)
}

/// The body size a request announces, if it announces one.
fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: usize, announced: u64) -> Response {
    error(
        413,
        "too_large",
        &format!("the body is over the limit of {limit} bytes: {announced} announced"),
    )
}

/// Answers 413 at once to a body announced over `limit`, rather than
/// reading it (the body limit alone notices only once that much has arrived).
async fn refuse_announced_oversize(limit: usize, request: Request, next: Next) -> Response {
    match announced_length(&request) {
        Some(n) if n > limit as u64 => too_large(limit, n),
        _ => next.run(request).await,
    }
}

/// As [`refuse_announced_oversize`] for attested requests, whose refusals are audited.
async fn refuse_oversized_attested(
    State(service): State<Arc<Service>>,
    request: Request,
    next: Next,
) -> Response {
    let announced = match announced_length(&request) {
        Some(n) if n > MAX_ATTESTED_BODY as u64 => n,
        _ => return next.run(request).await,
    };
    let op = if request.uri().path().ends_with("/write") {
        Op::Write
    } else {
        Op::Read
    };
    let _ = tokio::task::spawn_blocking(move || {
        let mut record = AuditRecord::new(unix_now(), service.kind.name(), op.as_str());
        record.finish(
            "too_large",
            413,
            Some(format!(
                "the body is over the limit of {MAX_ATTESTED_BODY} bytes: {announced} announced"
            )),
        );
        service.record(&record);
    })
    .await;
    too_large(MAX_ATTESTED_BODY, announced)
}

async fn attested_read(
    State(service): State<Arc<Service>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    attested(service, Op::Read, body).await
}

async fn attested_write(
    State(service): State<Arc<Service>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    attested(service, Op::Write, body).await
}

async fn attested(service: Arc<Service>, op: Op, body: Result<Bytes, BytesRejection>) -> Response {
    // Verification and SQLite block: keep them off the async workers.
    let task = tokio::task::spawn_blocking(move || match body {
        Ok(bytes) => service.handle_attested(op, &bytes),
        Err(rejection) => {
            let mut record = AuditRecord::new(unix_now(), service.kind.name(), op.as_str());
            let (code, message) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                (
                    "too_large",
                    format!("the body is over the limit of {MAX_ATTESTED_BODY} bytes"),
                )
            } else {
                (
                    "bad_request",
                    format!("the body could not be read: {}", rejection.body_text()),
                )
            };
            let status = rejection.status().as_u16();
            record.finish(code, status, Some(message.clone()));
            service.record(&record);
            error(status, code, &message)
        }
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an attested request's task failed");
        error(500, "internal", "the service failed; see its log")
    })
}

async fn certificate(State(service): State<Arc<Service>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        service.chain_pem.clone(),
    )
        .into_response()
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    json_response(200, json!({"status": "ok", "service": service.kind.name()}))
}

async fn not_found(request: Request) -> Response {
    error(
        404,
        "not_found",
        &format!(
            "no route {} {}; see docs/PROTOCOL.md, \"Service endpoints\"",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> Response {
    error(
        405,
        "method_not_allowed",
        &format!(
            "{} is not served on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn operator_only(
    State(service): State<Arc<Service>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match service.token.check(header) {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            let mut response = error(401, "unauthorized", &service.token.message(failure));
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// An operator request's failure, answered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    fn internal() -> Self {
        Self::new(
            500,
            "internal",
            "the service's database failed; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
}

fn limit(query: Result<Query<ListQuery>, QueryRejection>) -> Result<u32, ApiError> {
    let query = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match query.0.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit: expected 1 to {MAX_LIMIT}, found {n}"
        ))),
    }
}

/// Runs `f` with the database on a blocking thread; 500 on failure.
async fn with_db<T, E>(
    service: Arc<Service>,
    f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let kind = service.kind;
    let outcome = tokio::task::spawn_blocking(move || f(&mut service.db())).await;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(service = kind.name(), error = %e, "operator request failed");
            Err(ApiError::internal())
        }
        Err(e) => {
            tracing::error!(service = kind.name(), error = %e, "operator task failed");
            Err(ApiError::internal())
        }
    }
}

type ListQueryResult = Result<Query<ListQuery>, QueryRejection>;

async fn audit(
    State(service): State<Arc<Service>>,
    query: ListQueryResult,
) -> Result<Response, ApiError> {
    let limit = limit(query)?;
    let rows = with_db(service, move |c| db::recent_audit(c, limit)).await?;
    Ok(json_response(200, json!({ "audit": rows })))
}

async fn list_sales(
    State(service): State<Arc<Service>>,
    query: ListQueryResult,
) -> Result<Response, ApiError> {
    let limit = limit(query)?;
    let sales = with_db(service, move |c| store::recent_sales(c, limit)).await?;
    Ok(json_response(200, json!({ "sales": sales })))
}

/// An operator request's body, or why it could not be read.
fn operator_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                413,
                "too_large",
                format!("the body is over the limit of {MAX_OPERATOR_BODY} bytes"),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

async fn new_sale(
    State(service): State<Arc<Service>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = operator_body(body)?;
    // The operator's own data: parse errors may quote it back to them.
    let new: store::NewSale = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{customer_id | customer: {{name, phone, address}}, total: \"189.90\", \
             items?: [{{product_id, quantity}}]}}: {e}"
        ))
    })?;
    let now = unix_now();
    let added = with_db(service, move |c| {
        Ok::<_, std::convert::Infallible>(store::add_sale(c, &new, now))
    })
    .await?;
    match added {
        Ok(sale) => {
            tracing::info!(
                service = "store",
                sale_id = sale.sale.sale_id,
                above_threshold = sale.sale.total > crate::money::RIDE_THRESHOLD,
                "the operator added a sale"
            );
            Ok(json_response(
                201,
                serde_json::to_value(&sale).expect("a sale serializes"),
            ))
        }
        Err(store::SaleError::Invalid(m)) => Err(ApiError::bad_request(m)),
        Err(store::SaleError::Database(e)) => {
            tracing::error!(service = "store", error = %e, "cannot add a sale");
            Err(ApiError::internal())
        }
    }
}

/// Serves `op` on `resource` as an allowed attested request would be served,
/// for the operator: the same business code and the same JSON answer, without
/// the attestation (no certificate, no envelope, no audit record). The
/// benchmark's baseline for what the attestation costs.
async fn plain(
    service: Arc<Service>,
    op: Op,
    resource: &'static str,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let kind = service.kind;
    let settings = service.settings.clone();
    let now = unix_now();
    let served = with_db(service, move |c| {
        Ok::<_, std::convert::Infallible>(business::serve(
            kind, c, &settings, op, resource, &payload, now,
        ))
    })
    .await?;
    match served {
        Ok(answer) => Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response()),
        Err(business::BusinessError::Database(e)) => {
            tracing::error!(service = kind.name(), error = %e, "database error");
            Err(ApiError::internal())
        }
        Err(e) => Err(ApiError::new(e.status(), e.code(), e.to_string())),
    }
}

/// `GET /api/sales/last`: what the attested read `sales/last` answers.
async fn last_sale(State(service): State<Arc<Service>>) -> Result<Response, ApiError> {
    plain(service, Op::Read, "sales/last", Bytes::new()).await
}

/// `POST /api/messages`: the attested write `messages`, for the operator.
async fn send_message(
    State(service): State<Arc<Service>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = operator_body(body)?;
    plain(service, Op::Write, "messages", body).await
}

async fn list_trips(
    State(service): State<Arc<Service>>,
    query: ListQueryResult,
) -> Result<Response, ApiError> {
    let limit = limit(query)?;
    let now = unix_now();
    let (trips, drivers) = with_db(service, move |c| {
        Ok::<_, rusqlite::Error>((taxi::recent_trips(c, limit)?, taxi::drivers(c, now)?))
    })
    .await?;
    Ok(json_response(
        200,
        json!({ "trips": trips, "drivers": drivers }),
    ))
}

async fn list_messages(
    State(service): State<Arc<Service>>,
    query: ListQueryResult,
) -> Result<Response, ApiError> {
    let limit = limit(query)?;
    let reply_mode = service.settings.customer_reply.to_string();
    let messages = with_db(service, move |c| messaging::recent_messages(c, limit)).await?;
    Ok(json_response(
        200,
        json!({ "messages": messages, "customer_reply": reply_mode }),
    ))
}
