//! Fixtures: the `mock-services` binary as a real process on loopback, a
//! throwaway launcher PKI (root → attestation intermediate → run
//! certificates for Rust-made P-256 keys, evidence built here), and a
//! stand-in program that seals requests as the C SDK does.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use attestable_data::attested::{RequestBody, open_response, seal_request, verify_service_chain};
use attestable_data::certificate::{
    AttestationAuthority, IssuedRunCertificate, RunFacts, issue_run_certificate,
};
use attestable_data::encoding::{Sha256Hex, UnixTime};
use attestable_data::evidence::{
    Backend, CompartmentFacts, LINUX_SANDBOX_LAYERS, Layer, LayerStatus, Limits, ProgramFacts,
};
use attestable_data::pki::{self, CertificateAuthority};
use attestable_data::policy::Op;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509ReqBuilder};
use serde_json::Value;

/// Generous bound for a process to start, stop, or pick up a change.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const BIN: &str = env!("CARGO_BIN_EXE_mock-services");

/// Runs `mock-services <args>` to completion; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running mock-services");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a `mock-services policy …` command that must succeed.
pub fn policy(args: &[&str]) -> String {
    let mut all = vec!["policy"];
    all.extend_from_slice(args);
    let (ok, out, err) = run_cli(&all);
    assert!(ok, "mock-services {all:?} failed:\n{out}{err}");
    out
}

/// A `mock-services` process serving one service or all three.
pub struct Services {
    child: Option<Child>,
    pub data: PathBuf,
    stderr: PathBuf,
    addrs: Vec<(String, String)>,
}

impl Services {
    /// Starts `mock-services <which> --data <data> <extra…>` on ephemeral
    /// ports and waits for its "listening" lines.
    pub fn start(data: &Path, which: &str, extra: &[&str]) -> Self {
        let names: Vec<&str> = match which {
            "all" => vec!["store", "taxi", "messaging"],
            one => vec![one],
        };
        let stderr = unique(data.with_extension(format!("{which}.stderr.log")));
        let mut child = Command::new(BIN)
            .arg(which)
            .arg("--data")
            .arg(data)
            .args([
                "--store-listen",
                "127.0.0.1:0",
                "--taxi-listen",
                "127.0.0.1:0",
                "--messaging-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting mock-services");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut services = Services {
            child: Some(child),
            data: data.to_path_buf(),
            stderr,
            addrs: Vec::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        while services.addrs.len() < names.len() {
            let line = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => line,
                Err(_) => {
                    if let Some(status) = services.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!(
                            "mock-services {which} exited with {status}:\n{}",
                            services.stderr_text()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "mock-services {which} did not start:\n{}",
                        services.stderr_text()
                    );
                    continue;
                }
            };
            let (name, url) = line
                .split_once(" listening on https://")
                .unwrap_or_else(|| panic!("unexpected output line {line:?}"));
            assert!(names.contains(&name), "{line}");
            let addr = fs::read_to_string(data.join(format!("{name}.addr"))).unwrap();
            assert_eq!(addr, url, "<service>.addr holds the printed address");
            services.addrs.push((name.to_owned(), url.to_owned()));
        }
        services
    }

    pub fn url(&self, service: &str, path: &str) -> String {
        let addr = &self
            .addrs
            .iter()
            .find(|(n, _)| n == service)
            .unwrap_or_else(|| panic!("{service} is not served here"))
            .1;
        format!("https://{addr}{path}")
    }

    pub fn addr(&self, service: &str) -> String {
        self.url(service, "")
            .trim_start_matches("https://")
            .to_owned()
    }

    pub fn token(&self) -> String {
        fs::read_to_string(self.data.join("operator-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn services_ca(&self) -> X509 {
        X509::from_pem(&fs::read(self.data.join("services-ca.pem")).unwrap()).unwrap()
    }

    /// A client trusting exactly `services-ca.pem`.
    pub fn client(&self) -> reqwest::blocking::Client {
        let ca = fs::read(self.data.join("services-ca.pem")).unwrap();
        reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .timeout(PATIENCE)
            .build()
            .unwrap()
    }

    /// The service's certificate, fetched and checked as a program does.
    pub fn service_cert(&self, service: &str) -> X509 {
        let pem = self
            .client()
            .get(self.url(service, "/.well-known/attestable/certificate"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        verify_service_chain(&pem, &self.services_ca(), service, pki::unix_now()).unwrap()
    }

    /// `GET` an operator view with the token.
    pub fn operator_get(&self, service: &str, path: &str) -> Value {
        let response = self
            .client()
            .get(self.url(service, path))
            .bearer_auth(self.token())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().unwrap()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "mock-services exited with {status}:\n{}",
                    self.stderr_text()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mock-services did not stop:\n{}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- mock-services stderr ---\n{}", self.stderr_text());
            }
        }
    }
}

fn unique(path: PathBuf) -> PathBuf {
    let mut candidate = path.clone();
    let mut n = 0;
    while candidate.exists() {
        n += 1;
        candidate = path.with_extension(format!("{n}.log"));
    }
    candidate
}

/// A throwaway launcher: root → attestation intermediate.
pub struct Launcher {
    pub root: CertificateAuthority,
    pub authority: AttestationAuthority,
}

impl Launcher {
    pub fn new(name: &str) -> Self {
        let root =
            CertificateAuthority::create_root(&format!("{name} root"), Some(name), 30).unwrap();
        let authority =
            AttestationAuthority::create(&root, &format!("{name} attestation"), 30).unwrap();
        Self { root, authority }
    }

    /// Writes the root's PEM to `path` (what `policy trust-root --ca` reads).
    pub fn write_root(&self, path: &Path) -> PathBuf {
        fs::write(path, self.root.certificate().to_pem().unwrap()).unwrap();
        path.to_path_buf()
    }

    /// A run of executable `exe` in `compartment`, started now.
    pub fn run(&self, exe: Sha256Hex, compartment: CompartmentFacts) -> Program {
        let key = pki::generate_p256_key().unwrap();
        let run = RunFacts {
            program: ProgramFacts {
                id: 1,
                name: "integration_process.c".into(),
                build_id: 1,
                source_sha256: Sha256Hex::digest(b"source"),
                executable_sha256: exe,
                sdk_sha256: Sha256Hex::digest(b"sdk"),
                services_anchor_sha256: None,
                toolchain_profile: "host".into(),
                compiler: "cc (test) 1.0".into(),
                flags: vec!["-O2".into()],
            },
            run_id: 7,
            started_at: UnixTime(pki::unix_now()),
            time_limit_secs: 300,
            launcher_version: "attestable-launcher 0.1.0".into(),
        };
        let platform = attestable_data::probe::platform().unwrap();
        let issued =
            issue_run_certificate(&self.authority, &csr(&key), &run, &platform, &compartment)
                .unwrap();
        Program { key, issued, exe }
    }
}

fn csr(key: &PKey<Private>) -> Vec<u8> {
    let mut b = X509ReqBuilder::new().unwrap();
    b.set_pubkey(key).unwrap();
    b.set_subject_name(&pki::x509_name("program", None).unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

/// A Linux sandbox with every standard layer active.
pub fn sandbox() -> CompartmentFacts {
    CompartmentFacts {
        backend: Backend::LinuxSandbox,
        layers: LINUX_SANDBOX_LAYERS
            .iter()
            .map(|n| Layer {
                name: (*n).into(),
                status: LayerStatus::Active,
                detail: "set up".into(),
            })
            .collect(),
        degraded: vec![],
        insecure: false,
        limits: Limits::default(),
        memory_map: vec![],
        memory_map_omitted: 0,
        cheri_bounds: None,
    }
}

/// A Linux sandbox whose seccomp filter could not be set up.
pub fn degraded_sandbox() -> CompartmentFacts {
    let mut c = sandbox();
    for layer in &mut c.layers {
        if layer.name == "seccomp" {
            layer.status = LayerStatus::Unavailable;
            layer.detail = "kernel without seccomp filters".into();
        }
    }
    c.degraded = vec!["seccomp".into()];
    c
}

/// The case study's executable, and another one.
pub fn exe(n: u8) -> Sha256Hex {
    Sha256Hex::digest(&[b'e', n])
}

/// A program: its key and run certificate.
pub struct Program {
    pub key: PKey<Private>,
    pub issued: IssuedRunCertificate,
    pub exe: Sha256Hex,
}

/// What a service answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The error body's `failed_step`, asserting a 403 `denied`.
    pub fn denied_at(&self) -> &str {
        assert_eq!(self.status, 403, "{:#}", self.body);
        assert_eq!(self.body["error"]["code"], "denied", "{:#}", self.body);
        let proof = self.body["error"]["proof"].as_str().unwrap();
        let step = self.body["error"]["failed_step"].as_str().unwrap();
        assert!(
            proof.contains(" FAILED ") && proof.contains(&format!("({step})")),
            "{proof}"
        );
        step
    }

    /// The error body's message, asserting `status` and `code`.
    pub fn error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{:#}", self.body);
        self.body["error"]["message"].as_str().unwrap()
    }
}

impl Program {
    /// Seals a request body now.
    pub fn body(&self, op: Op, service: &str, resource: &str, payload: &[u8]) -> RequestBody {
        RequestBody::new(op, service, resource, payload, pki::unix_now())
    }

    /// Seals `body` to `service_cert` with this program's key: the `request` field.
    pub fn seal(&self, service_cert: &X509, body: &RequestBody) -> String {
        BASE64
            .encode(seal_request(&self.key, &self.issued.certificate, service_cert, body).unwrap())
    }

    /// POSTs an already sealed request.
    pub fn post(&self, services: &Services, service: &str, op: Op, sealed: &str) -> Answer {
        post_json(
            services,
            service,
            &format!("/attested/{op}"),
            &serde_json::json!({
                "certificate_chain": self.issued.chain_pem,
                "request": sealed,
            })
            .to_string(),
        )
    }

    /// A whole call: seal, POST; the answer's payload when it is a 200.
    pub fn call(
        &self,
        services: &Services,
        service: &str,
        op: Op,
        resource: &str,
        payload: &[u8],
    ) -> (Answer, Option<Value>) {
        let cert = services.service_cert(service);
        let body = self.body(op, service, resource, payload);
        let answer = self.post(services, service, op, &self.seal(&cert, &body));
        let opened = (answer.status == 200).then(|| {
            let der = BASE64
                .decode(answer.body["response"].as_str().unwrap())
                .unwrap();
            let plain =
                open_response(&self.key, &self.issued.certificate, &cert, &body, &der).unwrap();
            serde_json::from_slice(&plain).unwrap()
        });
        (answer, opened)
    }
}

/// POSTs raw JSON text to a service.
pub fn post_json(services: &Services, service: &str, path: &str, json: &str) -> Answer {
    let response = services
        .client()
        .post(services.url(service, path))
        .header("content-type", "application/json")
        .body(json.to_owned())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().unwrap_or(Value::Null);
    Answer { status, body }
}

/// Sends a raw HTTP/1.1 request head over TLS and returns the response text
/// (for what an HTTP client will not send, such as an announced body that
/// never comes).
pub fn raw_https(services: &Services, service: &str, head: &str) -> String {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector
        .cert_store_mut()
        .add_cert(services.services_ca())
        .unwrap();
    connector.set_verify(SslVerifyMode::PEER);
    let tcp = std::net::TcpStream::connect(services.addr(service)).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = connector.build().connect("localhost", tcp).unwrap();
    tls.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the server closes, or the head and a JSON body arrived.
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` until it returns `Some`, within [`PATIENCE`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file below `dir`, with its bytes.
pub fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Opens a service's database (read-only checks).
pub fn database(data: &Path, service: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join(service).join(format!("{service}.db"))).unwrap()
}

/// A data folder whose policies trust `launcher` and allow `exe` what the
/// case study needs (written before the services start).
pub fn approve(data: &Path, launcher: &Launcher, exe: Sha256Hex) {
    let root = launcher.write_root(&data.with_extension("root.pem"));
    let data = data.to_str().unwrap();
    policy(&[
        "trust-root",
        "--data",
        data,
        "--service",
        "all",
        "--ca",
        root.to_str().unwrap(),
    ]);
    policy(&[
        "allow",
        "--data",
        data,
        "--service",
        "all",
        "--sha256",
        &exe.to_string(),
        "--name",
        "case study",
    ]);
}
