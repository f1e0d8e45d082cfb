//! A small attested service, in the test process, for the broker tests.
//!
//! Every check is `attestable_data::attested::ServiceVerifier`'s, as in a
//! real service; what it answers is chosen by the test: a fresh plaintext
//! marker per read, a receipt per write. It can also misbehave on purpose
//! ([`Behaviour`]): flip a bit of its sealed answer, replay an earlier
//! answer, answer slowly, or refuse. A misbehaving service stands in for a
//! malicious relay: the program receives the same bytes either way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestable_data::attested::{
    AttestedHttpRequest, AttestedHttpResponse, ServiceIdentity, ServiceVerifier,
    describe_json_error,
};
use attestable_data::https;
use attestable_data::pki::{self, CertificateAuthority, ServerCertSpec};
use attestable_data::policy::{Op, Policy};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use tokio::sync::watch;

/// How the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// As PROTOCOL.md says.
    Honest,
    /// Seals the right answer, then flips one bit in the middle of the envelope.
    FlipBit,
    /// Answers every read after the first with the first read's envelope.
    ReplayFirst,
    /// Waits this long before answering anything attested.
    Slow(Duration),
    /// Answers every attested request with `200` and an HTML page.
    NotJson,
    /// Answers every attested request with this status and a text body.
    Status(u16),
    /// Answers every attested request with `200` and 64 MiB of JSON-ish bytes.
    HugeAnswer,
    /// Serves a certificate "chain" of 2 MiB.
    HugeCertificate,
    /// Starts a `200` answer, then breaks the connection in its middle.
    BrokenAnswer,
}

struct ServiceState {
    verifier: ServiceVerifier,
    behaviour: Mutex<Behaviour>,
    /// Plaintexts this service sent or received, for searching records.
    plaintexts: Mutex<Vec<Vec<u8>>>,
    /// The first read's response envelope (base64).
    first_read: Mutex<Option<String>>,
    attested_requests: AtomicUsize,
    chain_pem: String,
}

/// A running test service.
pub struct TestService {
    state: Arc<ServiceState>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A services CA for test services, with its certificate as PEM.
pub struct ServicesCa {
    pub ca: CertificateAuthority,
    pub pem: String,
}

impl ServicesCa {
    pub fn new(name: &str) -> Self {
        let ca = CertificateAuthority::create_root(name, Some("attestable tests"), 30)
            .expect("a services CA");
        let pem = String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap();
        Self { ca, pem }
    }
}

/// A marker that appears nowhere else: what the tests search for in the
/// launcher's records.
pub fn marker(what: &str) -> String {
    let mut bytes = [0u8; 12];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    format!("{what}-PLAINTEXT-{}", hex::encode(bytes))
}

impl TestService {
    /// Starts service `name` on `127.0.0.1:0`, its TLS and envelope key
    /// certified by `ca`, denying everything until [`TestService::allow`].
    pub async fn start(name: &str, ca: &ServicesCa) -> Self {
        let key = pki::generate_p256_key().unwrap();
        let certificate = ca
            .ca
            .issue_server_cert(
                &key,
                &ServerCertSpec {
                    common_name: name.to_owned(),
                    organization: Some("attestable tests".into()),
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                    days: 2,
                },
            )
            .unwrap();
        let chain = vec![certificate.clone(), ca.ca.certificate().clone()];
        let chain_pem = String::from_utf8(
            pki::certs_to_pem(&chain.iter().map(|c| c.as_ref()).collect::<Vec<_>>()).unwrap(),
        )
        .unwrap();
        let acceptor = https::tls_acceptor(&chain, &key).unwrap();
        let verifier = ServiceVerifier::new(
            ServiceIdentity {
                name: name.to_owned(),
                key,
                certificate,
            },
            Policy::deny_all(),
        );
        let state = Arc::new(ServiceState {
            verifier,
            behaviour: Mutex::new(Behaviour::Honest),
            plaintexts: Mutex::new(Vec::new()),
            first_read: Mutex::new(None),
            attested_requests: AtomicUsize::new(0),
            chain_pem,
        });
        let router = Router::new()
            .route("/attested/read", post(read))
            .route("/attested/write", post(write))
            .route(
                "/.well-known/attestable/certificate",
                get(certificate_chain),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stopped = stopped;
            let _ = https::serve(
                listener,
                acceptor,
                router,
                https::ServeOptions::default(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await;
        });
        Self {
            state,
            addr,
            stop,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Trusts run certificates under `launcher_root_pem` from a
    /// `linux-sandbox` compartment running `executable_sha256`, for reads
    /// and writes of anything.
    pub fn allow(&self, launcher_root_pem: &str, executable_sha256: &str) {
        let policy = format!(
            "allowed_backends = [\"linux-sandbox\"]\n\
             [[trusted_root]]\nname = \"test launcher\"\npem = \"\"\"\n{}\"\"\"\n\
             [[allow]]\nname = \"test program\"\nexecutable_sha256 = \"{executable_sha256}\"\n\
             resources = [\"*\"]\nops = [\"read\", \"write\"]\n",
            launcher_root_pem.trim_end()
        );
        let policy = Policy::from_toml(&policy, None).expect("test policy");
        self.state.verifier.set_policy(policy);
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Every plaintext this service sent (read answers, write receipts) or
    /// received (written data).
    pub fn plaintexts(&self) -> Vec<Vec<u8>> {
        self.state.plaintexts.lock().unwrap().clone()
    }

    /// Attested requests that reached this service (allowed or not).
    pub fn attested_requests(&self) -> usize {
        self.state.attested_requests.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn certificate_chain(State(state): State<Arc<ServiceState>>) -> Response {
    if *state.behaviour.lock().unwrap() == Behaviour::HugeCertificate {
        let mut pem = state.chain_pem.clone();
        while pem.len() < 2 << 20 {
            pem.push_str(&state.chain_pem);
        }
        return (
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem,
        )
            .into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        state.chain_pem.clone(),
    )
        .into_response()
}

async fn read(State(state): State<Arc<ServiceState>>, body: Bytes) -> Response {
    attested(state, body, Op::Read).await
}

async fn write(State(state): State<Arc<ServiceState>>, body: Bytes) -> Response {
    attested(state, body, Op::Write).await
}

async fn attested(state: Arc<ServiceState>, body: Bytes, op: Op) -> Response {
    state.attested_requests.fetch_add(1, Ordering::SeqCst);
    let behaviour = *state.behaviour.lock().unwrap();
    if let Behaviour::Slow(delay) = behaviour {
        tokio::time::sleep(delay).await;
    }
    if let Some(garbage) = garbage(behaviour) {
        return garbage;
    }
    let request: AttestedHttpRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                describe_json_error(&e),
            );
        }
    };
    let worker = state.clone();
    let sealed = tokio::task::spawn_blocking(move || {
        let verified = request
            .envelope()
            .and_then(|der| worker.verifier.verify(&request.certificate_chain, &der, op))
            .map_err(|rejection| (rejection.status(), rejection.error_body()))?;
        let answer = match op {
            Op::Read => json!({"secret": marker("READ")}).to_string().into_bytes(),
            Op::Write => {
                worker
                    .plaintexts
                    .lock()
                    .unwrap()
                    .push(verified.payload.clone());
                json!({"receipt": marker("RECEIPT")})
                    .to_string()
                    .into_bytes()
            }
        };
        worker.plaintexts.lock().unwrap().push(answer.clone());
        worker
            .verifier
            .seal_response(&verified, &answer)
            .map_err(|e| {
                (
                    500,
                    json!({"error": {"code": "internal", "message": e.to_string()}}),
                )
            })
    })
    .await
    .expect("the sealing task");
    let mut der = match sealed {
        Ok(der) => der,
        Err((status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, axum::Json(body)).into_response();
        }
    };
    if behaviour == Behaviour::FlipBit {
        let middle = der.len() / 2;
        der[middle] ^= 0x10;
    }
    let mut response = BASE64.encode(&der);
    if op == Op::Read && behaviour == Behaviour::ReplayFirst {
        let mut first = state.first_read.lock().unwrap();
        match &*first {
            Some(earlier) => response = earlier.clone(),
            None => *first = Some(response.clone()),
        }
    }
    axum::Json(AttestedHttpResponse { response }).into_response()
}

/// The answer of a service that answers garbage, if it does.
fn garbage(behaviour: Behaviour) -> Option<Response> {
    use axum::http::header::CONTENT_TYPE;
    let chunks = |n: usize, then_fail: bool| {
        let chunk = Bytes::from(vec![b'A'; 1 << 20]);
        let items = (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
        let tail = then_fail.then(|| Err(std::io::Error::other("the service broke off")));
        futures::stream::iter(items.chain(tail))
    };
    Some(match behaviour {
        Behaviour::NotJson => (
            [(CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            "not an attested answer",
        )
            .into_response(),
        Behaviour::HugeAnswer => (
            [(CONTENT_TYPE, "application/json")],
            axum::body::Body::from_stream(chunks(64, false)),
        )
            .into_response(),
        Behaviour::BrokenAnswer => (
            [(CONTENT_TYPE, "application/json")],
            axum::body::Body::from_stream(chunks(1, true)),
        )
            .into_response(),
        _ => return None,
    })
}
