//! Attested reads against an embedded store, as a program's calls look once
//! the launcher relays them: seal (sign + encrypt), HTTPS over one kept-alive
//! connection, verify + answer + seal on the service, open (decrypt + verify).
//!
//! ```text
//! cargo run --release -p mock-services --example read_latency -- [READS] [CLIENTS]
//! ```
//!
//! Prints the median and 99th percentile of sequential reads, then the
//! throughput of CLIENTS concurrent clients. Client and service share the
//! machine's cores, so the figures include both sides' cryptography.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attestable_data::attested::{RequestBody, open_response, seal_request, verify_service_chain};
use attestable_data::certificate::{AttestationAuthority, RunFacts, issue_run_certificate};
use attestable_data::encoding::{Sha256Hex, UnixTime};
use attestable_data::evidence::{
    Backend, CompartmentFacts, LINUX_SANDBOX_LAYERS, Layer, LayerStatus, Limits, ProgramFacts,
};
use attestable_data::pki::{self, CertificateAuthority};
use attestable_data::policy::{AllowRule, Op, PolicyDocument};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mock_services::{ServiceConfig, ServiceKind};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509ReqBuilder};

struct Program {
    key: PKey<Private>,
    cert: X509,
    chain_pem: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let reads: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let exe = Sha256Hex::digest(b"bench executable");
    let (program, root) = program(exe)?;

    // A policy trusting the throwaway launcher and allowing the read.
    let mut doc = PolicyDocument::default();
    doc.add_trusted_root_pem("bench launcher", std::str::from_utf8(&root.to_pem()?)?)?;
    doc.add_allow_rule(AllowRule::for_executable(
        "bench",
        exe,
        vec!["sales/last".parse().map_err(anyhow::Error::msg)?],
        vec![Op::Read],
    ))?;
    std::fs::create_dir_all(data.join("store"))?;
    doc.save(&data.join("store").join("policy.toml"))?;

    let mut config = ServiceConfig::new(ServiceKind::Store, &data);
    config.listen = "127.0.0.1:0".parse()?;
    let store = mock_services::start(ServiceKind::Store, config).await?;
    let base = format!("https://{}", store.addr());
    let ca = std::fs::read(data.join("services-ca.pem"))?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .build()?;
    let chain = client
        .get(format!("{base}/.well-known/attestable/certificate"))
        .send()
        .await?
        .text()
        .await?;
    let service_cert =
        verify_service_chain(&chain, &X509::from_pem(&ca)?, "store", pki::unix_now())?;
    let ctx = Arc::new((
        program,
        service_cert,
        client,
        format!("{base}/attested/read"),
    ));

    // Warm up the connection and the service's chain cache.
    for _ in 0..20 {
        read(&ctx).await?;
    }
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        read(&ctx).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "sequential: {reads} reads, median {:.3} ms, p99 {:.3} ms",
        ms(at(0.5)),
        ms(at(0.99))
    );

    // The program's own share: sealing a request (sign, then encrypt to the service).
    let mut seals = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let body = RequestBody::new(Op::Read, "store", "sales/last", b"", pki::unix_now());
        seal_request(&ctx.0.key, &ctx.0.cert, &ctx.1, &body)?;
        seals.push(t.elapsed());
    }
    seals.sort();
    println!(
        "  of which sealing the request (program side): median {:.3} ms",
        ms(seals[seals.len() / 2])
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let ctx = ctx.clone();
        let n = reads / clients;
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                read(&ctx).await?;
            }
            anyhow::Ok(n)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "concurrent: {clients} clients, {done} reads in {secs:.2} s, {:.0} reads/s",
        done as f64 / secs
    );
    store.stop().await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn read(ctx: &(Program, X509, reqwest::Client, String)) -> anyhow::Result<()> {
    let (program, service_cert, client, url) = ctx;
    let body = RequestBody::new(Op::Read, "store", "sales/last", b"", pki::unix_now());
    let sealed = seal_request(&program.key, &program.cert, service_cert, &body)?;
    let response = client
        .post(url)
        .json(&serde_json::json!({
            "certificate_chain": program.chain_pem,
            "request": BASE64.encode(sealed),
        }))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{}", response.text().await?);
    let answer: serde_json::Value = response.json().await?;
    let der = BASE64.decode(answer["response"].as_str().unwrap_or_default())?;
    open_response(&program.key, &program.cert, service_cert, &body, &der)?;
    Ok(())
}

fn program(exe: Sha256Hex) -> anyhow::Result<(Program, X509)> {
    let root = CertificateAuthority::create_root("bench launcher root", None, 1)?;
    let authority = AttestationAuthority::create(&root, "bench attestation", 1)?;
    let key = pki::generate_p256_key()?;
    let mut csr = X509ReqBuilder::new()?;
    csr.set_pubkey(&key)?;
    csr.sign(&key, MessageDigest::sha256())?;
    let run = RunFacts {
        program: ProgramFacts {
            id: 1,
            name: "bench.c".into(),
            build_id: 1,
            source_sha256: Sha256Hex::digest(b"source"),
            executable_sha256: exe,
            sdk_sha256: Sha256Hex::digest(b"sdk"),
            services_anchor_sha256: None,
            toolchain_profile: "host".into(),
            compiler: "cc".into(),
            flags: vec![],
        },
        run_id: 1,
        started_at: UnixTime(pki::unix_now()),
        time_limit_secs: 3600,
        launcher_version: "bench".into(),
    };
    let compartment = CompartmentFacts {
        backend: Backend::LinuxSandbox,
        layers: LINUX_SANDBOX_LAYERS
            .iter()
            .map(|n| Layer {
                name: (*n).into(),
                status: LayerStatus::Active,
                detail: String::new(),
            })
            .collect(),
        degraded: vec![],
        insecure: false,
        limits: Limits::default(),
        memory_map: vec![],
        memory_map_omitted: 0,
        cheri_bounds: None,
    };
    let issued = issue_run_certificate(
        &authority,
        &csr.build().to_der()?,
        &run,
        &attestable_data::probe::platform()?,
        &compartment,
    )?;
    let program = Program {
        key,
        cert: issued.certificate,
        chain_pem: issued.chain_pem,
    };
    Ok((program, root.certificate().clone()))
}
