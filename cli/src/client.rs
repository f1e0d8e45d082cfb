//! The launcher's HTTP API, as the CLI uses it: HTTPS trusting exactly the
//! configured root (no system roots, no proxy), the bearer token on every
//! request, and every failure turned into a [`CliError`] a person can act on.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::connection::Connection;
use crate::error::{CliError, Result};

/// Longest wait for an answer (or, on the event stream, between two reads:
/// the launcher sends a heartbeat well within it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A build waits for the compiler (and maybe for other builds first).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows asked for in each request of a paged list (the launcher's maximum).
pub const PAGE: usize = 1000;

/// What a request is about, for "not found" messages.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    None,
    Program(i64),
    Run(i64),
    Service(&'a str),
}

impl Subject<'_> {
    fn hint(self) -> &'static str {
        match self {
            Subject::Program(_) => "; `attestable programs list` shows the programs",
            Subject::Run(_) => "; `attestable runs list` shows the runs",
            Subject::Service(_) => "; `attestable services list` shows the services",
            Subject::None => "",
        }
    }

    fn describe(self) -> Option<String> {
        match self {
            Subject::Program(id) => Some(format!("program {id}")),
            Subject::Run(id) => Some(format!("run {id}")),
            Subject::Service(id) => Some(format!("service {id:?}")),
            Subject::None => None,
        }
    }
}

pub struct Api {
    conn: Connection,
    http: Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("url", &self.conn.url).finish()
    }
}

impl Api {
    pub fn new(conn: Connection) -> Result<Self> {
        let roots = reqwest::Certificate::from_pem_bundle(&conn.ca_pem).map_err(|e| {
            CliError::Input(format!(
                "the CA file {} does not hold PEM certificates: {e}",
                conn.ca_file.display()
            ))
        })?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", conn.token)).map_err(|_| {
            CliError::Input(format!(
                "the API token in {} has characters a header cannot carry",
                conn.token_file.display()
            ))
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = Client::builder()
            .tls_certs_only(roots)
            .no_proxy()
            .default_headers(headers)
            .user_agent(concat!("attestable-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| CliError::Input(format!("setting up HTTPS: {e}")))?;
        Ok(Self { conn, http })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.url)
    }

    pub fn get(&self, path: &str, subject: Subject<'_>) -> Result<Value> {
        let response = self.send(self.http.get(self.url(path)), "GET", path, subject)?;
        json_body(response, "GET", path)
    }

    /// Every row of a paged list (`GET /v1/programs`, `/v1/runs`): pages of
    /// [`PAGE`] rows, each after the last id of the one before, until one
    /// comes back shorter.
    pub fn get_all(&self, path: &str, subject: Subject<'_>) -> Result<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page_path = match after {
                Some(id) => format!("{path}{sep}limit={PAGE}&after={id}"),
                None => format!("{path}{sep}limit={PAGE}"),
            };
            let page = match self.get(&page_path, subject)? {
                Value::Array(page) => page,
                // Not a list: the caller's parsing says what came instead.
                other => return Ok(other),
            };
            let full = page.len() == PAGE;
            after = page.last().and_then(|row| row["id"].as_i64());
            rows.extend(page);
            if !full || after.is_none() {
                return Ok(Value::Array(rows));
            }
        }
    }

    pub fn get_text(&self, path: &str, subject: Subject<'_>) -> Result<String> {
        let response = self.send(self.http.get(self.url(path)), "GET", path, subject)?;
        response.text().map_err(|e| self.transport("GET", path, e))
    }

    /// POST with a JSON body (`Value::Null`: no body at all).
    pub fn post(&self, path: &str, body: &Value, subject: Subject<'_>) -> Result<Value> {
        let mut request = self.http.post(self.url(path));
        if !body.is_null() {
            request = request.json(body);
        }
        let response = self.send(request, "POST", path, subject)?;
        json_body(response, "POST", path)
    }

    /// POST that may take long (builds).
    pub fn post_slow(&self, path: &str, body: &Value, subject: Subject<'_>) -> Result<Value> {
        let request = self
            .http
            .post(self.url(path))
            .json(body)
            .timeout(BUILD_TIMEOUT);
        let response = self.send(request, "POST", path, subject)?;
        json_body(response, "POST", path)
    }

    pub fn put(&self, path: &str, body: &Value, subject: Subject<'_>) -> Result<Value> {
        let request = self.http.put(self.url(path)).json(body);
        let response = self.send(request, "PUT", path, subject)?;
        json_body(response, "PUT", path)
    }

    pub fn delete(&self, path: &str, subject: Subject<'_>) -> Result<()> {
        self.send(self.http.delete(self.url(path)), "DELETE", path, subject)?;
        Ok(())
    }

    /// `POST /v1/programs` with the file as multipart field `file`.
    pub fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<Value> {
        let path = "/v1/programs";
        let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::blocking::multipart::Form::new().part("file", part);
        let response = self.send(
            self.http.post(self.url(path)).multipart(form),
            "POST",
            path,
            Subject::None,
        )?;
        json_body(response, "POST", path)
    }

    /// A streaming GET: the response, to be read as it arrives. Each read
    /// waits at most [`REQUEST_TIMEOUT`].
    pub fn stream(&self, path: &str, subject: Subject<'_>) -> Result<Response> {
        self.send(self.http.get(self.url(path)), "GET", path, subject)
    }

    fn send(
        &self,
        request: RequestBuilder,
        method: &str,
        path: &str,
        subject: Subject<'_>,
    ) -> Result<Response> {
        let request = request
            .build()
            .map_err(|e| self.transport(method, path, e))?;
        // What a timeout error names: this request's own (a build's is long).
        let waited = request.timeout().copied().unwrap_or(REQUEST_TIMEOUT);
        let response = self
            .http
            .execute(request)
            .map_err(|e| self.transport_within(method, path, e, waited))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        Err(self.refusal(status, &body, method, path, subject))
    }

    /// A transport failure: refused, TLS, timeout, or something else on the way.
    pub fn transport(&self, method: &str, path: &str, err: reqwest::Error) -> CliError {
        self.transport_within(method, path, err, REQUEST_TIMEOUT)
    }

    /// [`Api::transport`] of a request that had `timeout` to answer.
    fn transport_within(
        &self,
        method: &str,
        path: &str,
        err: reqwest::Error,
        timeout: Duration,
    ) -> CliError {
        let url = self.conn.url.clone();
        if err.is_timeout() {
            return CliError::Timeout {
                url,
                seconds: timeout.as_secs(),
            };
        }
        let mut messages = Vec::new();
        let mut refused = false;
        let mut tls = false;
        let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            tls |= e.is::<openssl::ssl::Error>() || e.is::<openssl::error::ErrorStack>();
            let text = e.to_string();
            let lower = text.to_ascii_lowercase();
            tls |= ["certificate", "ssl", "tls", "handshake"]
                .iter()
                .any(|w| lower.contains(w));
            if messages.last() != Some(&text) {
                messages.push(text);
            }
            source = e.source();
        }
        // OpenSSL's own text ends in source locations; keep what a person needs.
        let detail = if messages
            .iter()
            .any(|m| m.contains("certificate verify failed"))
        {
            "certificate verify failed".to_owned()
        } else {
            messages.last().cloned().unwrap_or_else(|| err.to_string())
        };
        if refused {
            return CliError::Unreachable {
                url,
                reason: "connection refused".into(),
                hint: self.conn.start_hint(),
            };
        }
        if tls {
            return CliError::Tls {
                url,
                ca_file: self.conn.ca_file.clone(),
                detail,
            };
        }
        if err.is_connect() {
            return CliError::Unreachable {
                url,
                reason: detail,
                hint: self.conn.start_hint(),
            };
        }
        CliError::BadAnswer {
            request: format!("{method} {path}"),
            detail: messages.join(": "),
        }
    }

    fn refusal(
        &self,
        status: StatusCode,
        body: &str,
        method: &str,
        path: &str,
        subject: Subject<'_>,
    ) -> CliError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().map(|v| &v["error"]);
        let code = error
            .and_then(|e| e["code"].as_str())
            .unwrap_or("")
            .to_owned();
        let message = error
            .and_then(|e| e["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = body.trim();
                if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    text.chars().take(500).collect()
                }
            });
        let code = if code.is_empty() {
            format!("http_{}", status.as_u16())
        } else {
            code
        };
        match status {
            StatusCode::UNAUTHORIZED => CliError::Unauthorized {
                url: self.conn.url.clone(),
                token_file: self.conn.token_file.clone(),
                message,
            },
            StatusCode::NOT_FOUND if message.starts_with("no route") => CliError::NoRoute {
                url: self.conn.url.clone(),
                route: format!("{method} {path}"),
            },
            StatusCode::NOT_FOUND => {
                let message = match subject.describe() {
                    Some(what) if !message.contains(&what) => format!("{what}: {message}"),
                    _ => message,
                };
                // The list helps when the id is wrong, not when the thing
                // exists but lacks something (a run without a certificate).
                let hint = if message.contains("not found") {
                    subject.hint()
                } else {
                    ""
                };
                CliError::NotFound {
                    message,
                    hint: hint.to_owned(),
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY if code == "compile_failed" => {
                CliError::CompileFailed {
                    message,
                    build: parsed.map(|v| v["build"].clone()).unwrap_or(Value::Null),
                }
            }
            s if s.is_server_error() => CliError::Server {
                status: s.as_u16(),
                code,
                message,
            },
            s => CliError::Rejected {
                status: s.as_u16(),
                code,
                message,
            },
        }
    }
}

fn json_body(response: Response, method: &str, path: &str) -> Result<Value> {
    let text = response.text().map_err(|e| CliError::BadAnswer {
        request: format!("{method} {path}"),
        detail: e.to_string(),
    })?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| CliError::BadAnswer {
        request: format!("{method} {path}"),
        detail: format!("the body is not JSON ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestable_data::pki::CertificateAuthority;

    #[test]
    fn a_timeout_names_the_time_its_request_had() {
        // A listener that accepts and never answers: the TLS handshake waits.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let root = CertificateAuthority::create_root("test root", None, 1).unwrap();
        let api = Api::new(Connection {
            url,
            token: "t".into(),
            token_file: "api-token".into(),
            ca_pem: root.certificate().to_pem().unwrap(),
            ca_file: "root.pem".into(),
            data_dir: None,
        })
        .unwrap();
        let request = api
            .http
            .post(api.url("/v1/programs/1/builds"))
            .timeout(Duration::from_secs(2));
        let err = api
            .send(request, "POST", "/v1/programs/1/builds", Subject::None)
            .unwrap_err();
        drop(listener);
        assert!(
            matches!(err, CliError::Timeout { seconds: 2, .. }),
            "{err:?}"
        );
    }
}
