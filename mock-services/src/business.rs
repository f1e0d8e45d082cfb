//! What the services do once a request is allowed: the resources of
//! `docs/PROTOCOL.md` ("Case-study resources"), and the checks on their payloads.
//!
//! Error messages here may travel back through the relay in clear and into
//! logs, so they describe what is wrong without quoting the payload.

use attestable_data::attested::describe_json_error;
use attestable_data::policy::Op;
use rusqlite::Connection;
use serde::de::DeserializeOwned;

use crate::config::Settings;
use crate::db::DbError;
use crate::kind::ServiceKind;
use crate::{messaging, store, taxi};

/// Why an allowed request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    /// 404 `unknown_resource`.
    #[error("{0}")]
    UnknownResource(String),
    /// 400 `bad_request`: the payload is not what the resource takes.
    #[error("{0}")]
    Invalid(String),
    /// 503 `unavailable`: e.g. no free driver.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal`.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl BusinessError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            BusinessError::UnknownResource(_) => 404,
            BusinessError::Invalid(_) => 400,
            BusinessError::Unavailable(_) => 503,
            BusinessError::Database(_) => 500,
        }
    }

    /// The error body's `code`, also the audit outcome.
    pub fn code(&self) -> &'static str {
        match self {
            BusinessError::UnknownResource(_) => "unknown_resource",
            BusinessError::Invalid(_) => "bad_request",
            BusinessError::Unavailable(_) => "unavailable",
            BusinessError::Database(_) => "internal",
        }
    }
}

impl From<rusqlite::Error> for BusinessError {
    fn from(source: rusqlite::Error) -> Self {
        BusinessError::Database(DbError::Sqlite {
            context: "serving the request".into(),
            source,
        })
    }
}

/// Serves an allowed request: returns the answer's payload (JSON).
pub fn serve(
    kind: ServiceKind,
    conn: &mut Connection,
    settings: &Settings,
    op: Op,
    resource: &str,
    payload: &[u8],
    now: i64,
) -> Result<Vec<u8>, BusinessError> {
    let value = match (kind, op) {
        (ServiceKind::Store, Op::Read) => store::read(conn, resource, payload)?,
        (ServiceKind::Taxi, Op::Write) => taxi::write(conn, settings, resource, payload, now)?,
        (ServiceKind::Messaging, Op::Write) => {
            messaging::write(conn, settings, resource, payload, now)?
        }
        (ServiceKind::Messaging, Op::Read) => messaging::read(conn, resource, payload)?,
        (kind, op) => return Err(unknown(kind, op, resource)),
    };
    // A `Value` always serializes.
    Ok(serde_json::to_vec(&value).expect("a JSON value serializes"))
}

/// The 404 for a resource the service does not have; names only its collection.
pub fn unknown(kind: ServiceKind, op: Op, resource: &str) -> BusinessError {
    let offered = match kind {
        ServiceKind::Store => "read sales/last",
        ServiceKind::Taxi => "write trips",
        ServiceKind::Messaging => "write messages, read replies/<phone>",
    };
    BusinessError::UnknownResource(format!(
        "{kind} has no resource {}/… to {op}; expected one of: {offered}",
        attestable_data::policy::collection(resource)
    ))
}

/// Parses a write's payload as `T` (strict: unknown keys refused).
pub fn parse_payload<T: DeserializeOwned>(what: &str, payload: &[u8]) -> Result<T, BusinessError> {
    serde_json::from_slice(payload)
        .map_err(|e| BusinessError::Invalid(format!("{what} payload {}", describe_json_error(&e))))
}

/// A read's parameters: empty, or a JSON object (none of the case study's
/// reads takes any, so its keys are ignored).
pub fn check_read_parameters(payload: &[u8]) -> Result<(), BusinessError> {
    if payload.is_empty() {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(BusinessError::Invalid(
            "read parameters: expected nothing or a JSON object, found another JSON value".into(),
        )),
        Err(e) => Err(BusinessError::Invalid(format!(
            "read parameters {}",
            describe_json_error(&e)
        ))),
    }
}

/// A phone number as the services take it: `+` then 3 to 20 digits, or just
/// the digits (it becomes a path segment of `replies/<phone>`).
pub fn check_phone(field: &str, phone: &str) -> Result<(), String> {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    if (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{field}: expected + and 3 to 20 digits, found {} characters that are not",
            phone.chars().count()
        ))
    }
}

/// Free text: 1 to `max` characters, no control characters.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    let n = text.chars().count();
    if n == 0 || n > max || text.trim().is_empty() {
        return Err(format!(
            "{field}: expected 1 to {max} characters, found {n}{}",
            if n > 0 { " (blank or too long)" } else { "" }
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{field}: expected no control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_texts_are_checked_without_echo() {
        assert!(check_phone("phone", "+15550100201").is_ok());
        assert!(check_phone("phone", "5550100").is_ok());
        for bad in [
            "",
            "+",
            "+12",
            "+1 555 0100",
            "+1555x",
            "../x",
            "+123456789012345678901",
        ] {
            let e = check_phone("phone", bad).unwrap_err();
            assert!(bad.len() < 4 || !e.contains(bad), "{e}");
        }
        assert!(check_text("text", "hello", 10).is_ok());
        assert!(check_text("text", "", 10).is_err());
        assert!(check_text("text", "   ", 10).is_err());
        assert!(check_text("text", "a\u{7}b", 10).is_err());
        assert!(check_text("text", "abcdefghijk", 10).is_err());
        assert!(check_read_parameters(b"").is_ok());
        assert!(check_read_parameters(b"{\"a\":1}").is_ok());
        let e = check_read_parameters(b"\"secret-value\"")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        let e = check_read_parameters(b"secret-value")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
