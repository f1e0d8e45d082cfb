//! What schemathesis found in the API (tests/api/run.sh), each pinned by a
//! test: bodies that are JSON but not objects, an anchor at its documented
//! limit, and a client that sends a refused body to its end.

use std::io::{Read, Write};
use std::net::SocketAddr;

use attestable_tests::{Launcher, expect, program_source};
use serde_json::json;

/// serde reads a struct from a JSON array as well; every body of this API is
/// an object, and `[null, null]` once built a program with the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_that_are_not_objects_are_refused_with_the_check() {
    let launcher = Launcher::start();
    let program = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    for (method, path, body) in [
        (
            "POST",
            format!("/v1/programs/{program}/builds"),
            "[null, null]",
        ),
        (
            "POST",
            format!("/v1/programs/{program}/runs"),
            "[1, [\"x\"]]",
        ),
        (
            "PUT",
            "/v1/services/store".to_owned(),
            "[\"https://x\", \"pem\"]",
        ),
        ("POST", format!("/v1/programs/{program}/builds"), "\"host\""),
    ] {
        let response = launcher
            .client()
            .request(method.parse().unwrap(), launcher.url(&path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let error = expect(response, 400).await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid JSON body: expected an object, found a"),
            "{method} {path} {body}: {message}"
        );
    }
    let builds = launcher
        .get(&format!("/v1/programs/{program}/builds"), 200)
        .await;
    assert_eq!(builds, json!([]), "nothing was built");
    launcher.stop();
}

/// The anchor may be 64 KiB of PEM; the request that carries it, with its
/// line ends escaped in JSON, is larger than the 64 KiB JSON limit of other
/// routes, and once got a 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_at_its_documented_limit_fits_its_request() {
    let launcher = Launcher::start();
    let program = launcher
        .upload_ok("hello.c", program_source("hello.c"))
        .await["id"]
        .as_i64()
        .unwrap();
    let one = String::from_utf8(launcher.root_pem().to_vec()).unwrap();
    let mut anchor = String::new();
    while anchor.len() + one.len() <= 64 * 1024 {
        anchor.push_str(&one);
    }
    let escaped = serde_json::to_string(&json!({"services_anchor_pem": anchor})).unwrap();
    assert!(
        escaped.len() > 64 * 1024,
        "the body must exceed the other routes' limit"
    );
    let build = expect(
        launcher
            .build_with(program, json!({"services_anchor_pem": anchor}))
            .await,
        201,
    )
    .await;
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(
        build["services_anchor_sha256"],
        attestable_tests::sha256_hex(anchor.as_bytes())
    );
    launcher.stop();
}

/// Sends a request with a body of `size` bytes over TLS, all of it before
/// reading anything (as Python's `requests` does), then reads the answer.
fn send_whole_body_then_read(
    addr: SocketAddr,
    root_pem: &[u8],
    token: &str,
    path: &str,
    size: usize,
) -> Result<String, String> {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let root = openssl::x509::X509::from_pem(root_pem).unwrap();
    connector.cert_store_mut().add_cert(root).unwrap();
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = connector
        .build()
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min(size - sent);
        tls.write_all(&chunk[..n])
            .map_err(|e| format!("writing the body after {sent} bytes: {e}"))?;
        sent += n;
    }
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A body announced far over its route's limit is refused at once, unread;
/// the connection then reads and drops the rest before closing, so that a
/// client still sending receives the 413 rather than a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_an_oversized_body_to_its_end_reads_the_413() {
    let launcher = Launcher::start();
    let (addr, root, token) = (
        launcher.addr(),
        launcher.root_pem().to_vec(),
        launcher.token().to_owned(),
    );
    let answer = tokio::task::spawn_blocking(move || {
        send_whole_body_then_read(addr, &root, &token, "/v1/programs/1/builds", 12 << 20)
    })
    .await
    .unwrap();
    let answer = answer.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    let health = expect(
        launcher
            .anonymous()
            .get(launcher.url("/healthz"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(health["status"], "ok");
    launcher.stop();
}
