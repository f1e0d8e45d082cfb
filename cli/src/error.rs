//! Errors a person can act on, their exit status and their JSON form.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::connection::ConnectionError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration: no launcher found, unreadable token, bad URL.
    #[error(transparent)]
    Connection(#[from] ConnectionError),

    #[error("cannot connect to the launcher at {url}: {reason}; is it running? {hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: String,
    },

    #[error(
        "TLS with the launcher at {url} failed: {detail}; the launcher's certificate must chain \
         to the CA file {} (--ca, ATTESTABLE_CA, or <data>/pki/root.pem of that launcher)",
        ca_file.display()
    )]
    Tls {
        url: String,
        ca_file: PathBuf,
        detail: String,
    },

    #[error("the launcher at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },

    #[error(
        "the launcher at {url} rejected the API token from {} ({message}); use the api-token \
         file of that launcher's data folder (--token-file, ATTESTABLE_TOKEN_FILE)",
        token_file.display()
    )]
    Unauthorized {
        url: String,
        token_file: PathBuf,
        message: String,
    },

    #[error("{message}{hint}")]
    NotFound { message: String, hint: String },

    #[error("the launcher at {url} has no route {route}; it may be an older version")]
    NoRoute { url: String, route: String },

    /// The launcher refused the request (4xx other than 401 and 404).
    #[error("{message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },

    /// The launcher failed (5xx): its message.
    #[error("the launcher failed (HTTP {status}, {code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },

    /// The compiler rejected the program; the message holds its diagnostics.
    #[error("{message}")]
    CompileFailed { message: String, build: Value },

    #[error("unexpected answer from the launcher to {request}: {detail}")]
    BadAnswer { request: String, detail: String },

    /// Something local: a file that cannot be read, a value that does not parse.
    #[error("{0}")]
    Input(String),

    /// `cert verify` could not decide (exit 2).
    #[error("{0}")]
    Undecided(String),
}

impl CliError {
    /// Exit status of the command that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Undecided(_) => 2,
            _ => 1,
        }
    }

    /// Stable code for `--json`.
    pub fn code(&self) -> &str {
        match self {
            CliError::Connection(_) => "connection_config",
            CliError::Unreachable { .. } => "unreachable",
            CliError::Tls { .. } => "tls",
            CliError::Timeout { .. } => "timeout",
            CliError::Unauthorized { .. } => "unauthorized",
            CliError::NotFound { .. } => "not_found",
            CliError::NoRoute { .. } => "no_route",
            CliError::Rejected { code, .. } | CliError::Server { code, .. } => code,
            CliError::CompileFailed { .. } => "compile_failed",
            CliError::BadAnswer { .. } => "bad_answer",
            CliError::Input(_) => "input",
            CliError::Undecided(_) => "undecided",
        }
    }

    /// `{"error": {"code", "message"}}`, with the failed build when there is one.
    pub fn to_json(&self) -> Value {
        let mut value = json!({"error": {"code": self.code(), "message": self.to_string()}});
        if let CliError::CompileFailed { build, .. } = self {
            value["build"] = build.clone();
        }
        value
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// An input problem with context.
pub fn input(message: impl Into<String>) -> CliError {
    CliError::Input(message.into())
}
