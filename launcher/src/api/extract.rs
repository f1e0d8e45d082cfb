//! Extractors whose rejections are JSON errors like every other.

use std::net::SocketAddr;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::JSON_BODY_LIMIT;
use super::error::ApiError;

/// The JSON body limit of a route (an extension; default [`JSON_BODY_LIMIT`]).
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

/// How far past its limit a body is still read (and dropped) so that the
/// client, still sending, receives our 413 rather than a reset connection.
const DRAIN_ALLOWANCE: usize = 4 * 1024 * 1024;

/// A JSON body; an empty body or `null` is `T::default()`. Anything else must be
/// `application/json` and parse as `T` (unknown fields are refused).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = req
            .extensions()
            .get::<JsonLimit>()
            .map_or(JSON_BODY_LIMIT, |l| l.0);
        let bytes = read_limited(req, limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let is_json = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "expected content-type application/json, found {}",
                    content_type.as_deref().unwrap_or("none")
                ),
            ));
        }
        // serde reads a struct from a JSON array as well (`[null, null]` would
        // be a build with defaults): every body of this API is an object.
        let found = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'n') => None,
            Some(b'[') => Some("an array"),
            Some(b'"') => Some("a string"),
            Some(b't' | b'f') => Some("a boolean"),
            Some(b'-' | b'0'..=b'9') => Some("a number"),
            _ => Some("text that is not JSON"),
        };
        if let Some(found) = found {
            return Err(ApiError::bad_request(format!(
                "invalid JSON body: expected an object, found {found}"
            )));
        }
        // `null` means "no body" too, as the optional body's schema allows.
        serde_json::from_slice::<Option<T>>(&bytes)
            .map(|body| Self(body.unwrap_or_default()))
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Reads a body of at most `limit` bytes. A larger one is read on (and
/// dropped) up to [`DRAIN_ALLOWANCE`] past the limit before the 413.
async fn read_limited(req: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("the request body is over {limit} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (limit + DRAIN_ALLOWANCE) as u64) {
        return Err(too_large());
    }
    let mut stream = req.into_body().into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit + DRAIN_ALLOWANCE {
            return Err(too_large());
        }
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A numeric id from the path.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<i64>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Id(id))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!(
                    "the id in the path must be an integer: {}",
                    e.body_text()
                ))
            })
    }
}

/// Query parameters, parsed strictly.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("invalid query string: {}", e.body_text()))
            })
    }
}

/// Who is asking, for the audit log: `api <peer>` or `camb-compat <peer>`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let surface = if parts.uri.path().starts_with("/v1/") {
            "api"
        } else {
            "camb-compat"
        };
        Ok(Actor(
            match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(peer)) => format!("{surface} {peer}"),
                None => surface.to_owned(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;
    use crate::api::views::BuildRequest;

    async fn parse(body: &str) -> Result<BuildRequest, ApiError> {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        JsonBody::<BuildRequest>::from_request(req, &())
            .await
            .map(|b| b.0)
    }

    #[tokio::test]
    async fn bodies_are_objects_never_arrays_or_scalars() {
        for ok in ["", "  ", "null", "{}", r#"{"profile": "host"}"#] {
            assert!(parse(ok).await.is_ok(), "{ok:?}");
        }
        for (body, found) in [
            ("[null, null]", "an array"),
            (r#"["host"]"#, "an array"),
            (r#""host""#, "a string"),
            ("true", "a boolean"),
            ("-1", "a number"),
            ("<xml/>", "text that is not JSON"),
        ] {
            let err = parse(body).await.unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                err.message
                    .contains(&format!("expected an object, found {found}")),
                "{body}: {}",
                err.message
            );
        }
    }
}
