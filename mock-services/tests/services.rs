//! The services as real processes on loopback, driven over HTTPS by a
//! stand-in program whose run certificates come from a throwaway launcher PKI.

mod common;

use std::fs;

use attestable_data::attested::verify_service_chain;
use attestable_data::pki;
use attestable_data::policy::Op;
use common::*;
use serde_json::{Value, json};

fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (dir, data)
}

fn trip_for(sale: &Value) -> Vec<u8> {
    json!({
        "origin": "Acme Coffee, 1 Market Square",
        "destination": sale["customer"]["address"],
        "customer_phone": sale["customer"]["phone"],
        "fare_paid_by": "Acme Coffee",
    })
    .to_string()
    .into_bytes()
}

#[test]
fn permitted_reads_and_writes_succeed_and_the_databases_hold_the_writes() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "all", &[]);
    let program = launcher.run(exe(1), sandbox());

    let (answer, sale) = program.call(&services, "store", Op::Read, "sales/last", b"");
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let sale = sale.unwrap();
    assert_eq!(
        sale["total"], "177.90",
        "the last sample sale is above 150.00"
    );
    assert_eq!(sale["currency"], "USD");
    let phone = sale["customer"]["phone"].as_str().unwrap().to_owned();
    let address = sale["customer"]["address"].as_str().unwrap().to_owned();

    let (answer, booking) = program.call(&services, "taxi", Op::Write, "trips", &trip_for(&sale));
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let booking = booking.unwrap();
    let keys: Vec<&String> = booking.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["driver_name", "eta_minutes", "taxi_plate", "trip_id"]
    );
    let trip_id = booking["trip_id"].as_i64().unwrap();
    let (destination, stored_phone, plate): (String, String, String) = database(&data, "taxi")
        .query_row(
            "SELECT t.destination, t.customer_phone, v.plate FROM trips t \
             JOIN vehicles v ON v.id = t.vehicle_id WHERE t.id = ?1",
            [trip_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (destination.as_str(), stored_phone.as_str()),
        (address.as_str(), phone.as_str())
    );
    assert_eq!(booking["taxi_plate"], plate);

    let text = format!(
        "Your ride home is booked: taxi {} driven by {}.",
        booking["taxi_plate"].as_str().unwrap(),
        booking["driver_name"].as_str().unwrap()
    );
    let message = json!({"phone": phone, "text": text}).to_string();
    let (answer, sent) = program.call(
        &services,
        "messaging",
        Op::Write,
        "messages",
        message.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let message_id = sent.unwrap()["message_id"].as_i64().unwrap();
    let stored: String = database(&data, "messaging")
        .query_row(
            "SELECT text FROM messages WHERE id = ?1",
            [message_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, text);

    let (answer, reply) = program.call(
        &services,
        "messaging",
        Op::Read,
        &format!("replies/{phone}"),
        b"",
    );
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let reply = reply.unwrap();
    assert_eq!(reply["reply"], "ACCEPT");
    assert!(reply["at"].is_string());

    // Each decision is in the audit table with its proof, and in the log.
    for (service, allowed) in [("store", 1), ("taxi", 1), ("messaging", 2)] {
        let (count, proof): (i64, String) = database(&data, service)
            .query_row(
                "SELECT count(*), max(proof) FROM audit WHERE outcome = 'allowed' AND allowed = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(count, allowed, "{service}");
        assert!(proof.contains("=> Key[program "), "{proof}");
        let log = fs::read_to_string(data.join(service).join("decisions.log")).unwrap();
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as i64, allowed, "{service}: {log}");
        assert!(
            lines
                .iter()
                .all(|l| l["outcome"] == "allowed" && l["status"] == 200)
        );
        assert_eq!(lines[0]["measurement"], exe(1).to_string());
    }
}

#[test]
fn each_trust_failure_is_refused_with_403_and_a_proof_naming_its_step() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "store", &[]);
    let store = services.service_cert("store");
    let program = launcher.run(exe(1), sandbox());
    let read = |p: &Program, resource: &str| p.call(&services, "store", Op::Read, resource, b"").0;

    let foreign = Launcher::new("other").run(exe(1), sandbox());
    assert_eq!(read(&foreign, "sales/last").denied_at(), "trusted_root");

    let unknown = launcher.run(exe(2), sandbox());
    let answer = read(&unknown, "sales/last");
    assert_eq!(answer.denied_at(), "measurement");
    let proof = answer.body["error"]["proof"].as_str().unwrap();
    assert!(
        proof.contains(&exe(2).to_string()),
        "the full hash to approve: {proof}"
    );

    // Signed by another run's key, sent with this run's chain.
    let impostor = launcher.run(exe(1), sandbox());
    let body = program.body(Op::Read, "store", "sales/last", b"");
    let sealed = impostor.seal(&store, &body);
    assert_eq!(
        program
            .post(&services, "store", Op::Read, &sealed)
            .denied_at(),
        "signature"
    );

    let body = program.body(Op::Read, "store", "sales/last", b"");
    let sealed = program.seal(&store, &body);
    assert_eq!(
        program.post(&services, "store", Op::Read, &sealed).status,
        200
    );
    let replayed = program.post(&services, "store", Op::Read, &sealed);
    assert_eq!(replayed.denied_at(), "replay");
    assert!(
        replayed
            .error(403, "denied")
            .contains("the nonce was used before")
    );

    let mut body = program.body(Op::Read, "store", "sales/last", b"");
    body.timestamp -= 600;
    let stale = program.post(&services, "store", Op::Read, &program.seal(&store, &body));
    assert_eq!(stale.denied_at(), "replay");
    assert!(
        stale
            .error(403, "denied")
            .contains("outside the allowed skew")
    );

    assert_eq!(read(&program, "customers").denied_at(), "permission");
    let write = program
        .call(&services, "store", Op::Write, "sales/last", b"{}")
        .0;
    assert_eq!(write.denied_at(), "permission");

    let degraded = launcher.run(exe(1), degraded_sandbox());
    let answer = read(&degraded, "sales/last");
    assert_eq!(answer.denied_at(), "compartment");
    assert!(
        answer.body["error"]["proof"]
            .as_str()
            .unwrap()
            .contains("seccomp"),
        "{:#}",
        answer.body
    );

    // Every denial is stored with its proof and logged.
    let steps: Vec<(String, String)> = database(&data, "store")
        .prepare("SELECT failed_step, proof FROM audit WHERE outcome = 'denied' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "trusted_root",
            "measurement",
            "signature",
            "replay",
            "replay",
            "permission",
            "permission",
            "compartment"
        ]
    );
    assert!(
        steps
            .iter()
            .all(|(s, p)| p.contains("=> DENIED at step") && p.contains(s.as_str()))
    );
    let log = fs::read_to_string(data.join("store").join("decisions.log")).unwrap();
    assert_eq!(log.matches("\"outcome\":\"denied\"").count(), 8, "{log}");
}

#[test]
fn malformed_requests_get_400_with_a_reason() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "store", &[]);
    let store = services.service_cert("store");
    let program = launcher.run(exe(1), sandbox());
    let chain = &program.issued.chain_pem;

    let m = post_json(
        &services,
        "store",
        "/attested/read",
        "{\"certificate_chain\": ",
    )
    .error(400, "bad_request")
    .to_owned();
    assert!(m.contains("truncated JSON"), "{m}");
    let m = post_json(&services, "store", "/attested/read", "not json")
        .error(400, "bad_request")
        .to_owned();
    assert!(m.contains("not JSON"), "{m}");

    let bad_base64 = json!({"certificate_chain": chain, "request": "%%% not base64"}).to_string();
    let m = post_json(&services, "store", "/attested/read", &bad_base64)
        .error(400, "bad_request")
        .to_owned();
    assert!(m.contains("not base64"), "{m}");

    let body = program.body(Op::Read, "store", "sales/last", b"");
    let sealed = program.seal(&store, &body);
    let der = base64_decode(&sealed);
    let truncated = base64_encode(&der[..der.len() / 2]);
    let m = program
        .post(&services, "store", Op::Read, &truncated)
        .error(400, "bad_request")
        .to_owned();
    assert!(m.contains("request envelope"), "{m}");

    let no_chain = json!({"certificate_chain": "not a certificate", "request": sealed}).to_string();
    post_json(&services, "store", "/attested/read", &no_chain).error(400, "bad_request");

    // A body announced over the limit is refused before it is read.
    let head = format!(
        "POST /attested/read HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        attestable_data::attested::MAX_REQUEST_BODY_BYTES + 1
    );
    let response = raw_https(&services, "store", &head);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"too_large\""), "{response}");

    let outcomes: Vec<String> = database(&data, "store")
        .prepare("SELECT outcome FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        outcomes,
        [
            "bad_request",
            "bad_request",
            "bad_request",
            "bad_request",
            "bad_request",
            "too_large"
        ]
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

#[test]
fn data_keys_and_token_survive_a_restart() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let mut services = Services::start(&data, "all", &[]);
    let program = launcher.run(exe(1), sandbox());
    let token = services.token();
    let ca = fs::read(data.join("services-ca.pem")).unwrap();
    let taxi_cert = pki::cert_fingerprint(&services.service_cert("taxi")).unwrap();

    let (_, sale) = program.call(&services, "store", Op::Read, "sales/last", b"");
    let (answer, booking) = program.call(
        &services,
        "taxi",
        Op::Write,
        "trips",
        &trip_for(&sale.unwrap()),
    );
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let trip_id = booking.unwrap()["trip_id"].clone();
    let added = services
        .client()
        .post(services.url("store", "/api/sales"))
        .bearer_auth(&token)
        .json(&json!({"customer_id": 2, "total": "99.50"}))
        .send()
        .unwrap();
    assert_eq!(added.status(), 201);
    let sale_id = added.json::<Value>().unwrap()["sale_id"].clone();

    services.stop();
    for name in ["store", "taxi", "messaging"] {
        assert!(
            !data.join(format!("{name}.addr")).exists(),
            "{name}.addr removed at stop"
        );
    }
    let services = Services::start(&data, "all", &[]);
    assert_eq!(services.token(), token);
    assert_eq!(fs::read(data.join("services-ca.pem")).unwrap(), ca);
    assert_eq!(
        pki::cert_fingerprint(&services.service_cert("taxi")).unwrap(),
        taxi_cert
    );
    let trips = services.operator_get("taxi", "/api/trips");
    assert_eq!(trips["trips"][0]["trip_id"], trip_id);
    let (answer, last) = program.call(&services, "store", Op::Read, "sales/last", b"");
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let last = last.unwrap();
    assert_eq!(
        (&last["sale_id"], &last["total"]),
        (&sale_id, &json!("99.50"))
    );
    let allowed: i64 = database(&data, "store")
        .query_row("SELECT count(*) FROM audit WHERE allowed = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(allowed, 2, "the audit survives too");
}

#[test]
fn a_policy_change_takes_effect_without_a_restart_and_a_broken_one_is_refused() {
    let (dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    let services = Services::start(&data, "store", &[]);
    let program = launcher.run(exe(1), sandbox());
    let read = || {
        program
            .call(&services, "store", Op::Read, "sales/last", b"")
            .0
    };

    // The empty policy of a first start denies everything.
    assert_eq!(read().denied_at(), "trusted_root");
    let policy_file = data.join("store").join("policy.toml");
    assert!(fs::read_to_string(&policy_file).unwrap().contains("denied"));

    let root = launcher.write_root(&dir.path().join("root.pem"));
    let d = data.to_str().unwrap();
    policy(&[
        "trust-root",
        "--data",
        d,
        "--service",
        "store",
        "--ca",
        root.to_str().unwrap(),
    ]);
    eventually("the new root", || {
        (read().denied_at() == "measurement").then_some(())
    });
    policy(&[
        "allow",
        "--data",
        d,
        "--service",
        "store",
        "--sha256",
        &exe(1).to_string(),
    ]);
    eventually("the allow rule", || (read().status == 200).then_some(()));

    // A policy that does not parse is refused; the previous one stays.
    let good = fs::read_to_string(&policy_file).unwrap();
    fs::write(&policy_file, format!("{good}\nallow_everything = true\n")).unwrap();
    eventually("the rejection in the log", || {
        services
            .stderr_text()
            .contains("policy rejected")
            .then_some(())
    });
    assert!(services.stderr_text().contains("allow_everything"));
    assert_eq!(read().status, 200, "the previous policy is still in force");
    let (ok, shown, _) = run_cli(&["policy", "show", "--data", d, "--service", "store"]);
    assert!(ok && shown.contains("DOES NOT LOAD"), "{shown}");

    fs::write(&policy_file, &good).unwrap();
    policy(&[
        "revoke",
        "--data",
        d,
        "--service",
        "store",
        "--sha256",
        &exe(1).to_string(),
    ]);
    eventually("the revocation", || (read().status == 403).then_some(()));
    assert_eq!(read().denied_at(), "measurement");
}

#[test]
fn sighup_reloads_the_policy_at_once() {
    let (dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    // Polling once an hour: only the signal can bring the change in.
    let services = Services::start(&data, "store", &["--policy-poll-ms", "3600000"]);
    let program = launcher.run(exe(1), sandbox());
    let read = || {
        program
            .call(&services, "store", Op::Read, "sales/last", b"")
            .0
    };
    assert_eq!(read().denied_at(), "trusted_root");
    let root = launcher.write_root(&dir.path().join("root.pem"));
    let d = data.to_str().unwrap();
    policy(&[
        "trust-root",
        "--data",
        d,
        "--service",
        "store",
        "--ca",
        root.to_str().unwrap(),
    ]);
    policy(&[
        "allow",
        "--data",
        d,
        "--service",
        "store",
        "--sha256",
        &exe(1).to_string(),
    ]);
    assert_eq!(read().denied_at(), "trusted_root", "not polled yet");
    services.signal(libc::SIGHUP);
    eventually("the reload on SIGHUP", || {
        (read().status == 200).then_some(())
    });
    assert!(services.stderr_text().contains("reason=\"SIGHUP\""));
}

#[test]
fn no_request_plaintext_reaches_logs_or_databases_beyond_the_business_records() {
    let (dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let mut services = Services::start(&data, "all", &[]);
    let program = launcher.run(exe(1), sandbox());
    let stranger = launcher.run(exe(2), sandbox());

    // Read parameters are never stored.
    let (answer, _) = program.call(
        &services,
        "store",
        Op::Read,
        "sales/last",
        br#"{"note":"MARKER-READ-PARAMS"}"#,
    );
    assert_eq!(answer.status, 200);
    // A denied write's payload is never stored.
    let denied = json!({"origin": "MARKER-DENIED", "destination": "x", "customer_phone": "+15550100999", "fare_paid_by": "x"});
    let (answer, _) = stranger.call(
        &services,
        "taxi",
        Op::Write,
        "trips",
        denied.to_string().as_bytes(),
    );
    assert_eq!(answer.denied_at(), "measurement");
    // A malformed payload's values are not echoed in the 400, the log or the audit.
    let malformed = json!({"origin": 17, "destination": "MARKER-MALFORMED", "customer_phone": "MARKER-PHONE", "fare_paid_by": "x"});
    let (answer, _) = program.call(
        &services,
        "taxi",
        Op::Write,
        "trips",
        malformed.to_string().as_bytes(),
    );
    let m = answer.error(400, "bad_request");
    assert!(m.contains("invalid type") && !m.contains("MARKER"), "{m}");
    // An identifier in a resource path stays out of proofs and the audit.
    let (answer, reply) = program.call(
        &services,
        "messaging",
        Op::Read,
        "replies/+15550177777",
        b"",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(reply.unwrap()["reply"], Value::Null);
    // A stored message: its text is a business record, and only that.
    let message = json!({"phone": "+15550188888", "text": "MARKER-STORED-TEXT"}).to_string();
    let (answer, _) = program.call(
        &services,
        "messaging",
        Op::Write,
        "messages",
        message.as_bytes(),
    );
    assert_eq!(answer.status, 200);
    services.stop();

    let never = [
        "MARKER-READ-PARAMS",
        "MARKER-DENIED",
        "MARKER-MALFORMED",
        "MARKER-PHONE",
        "15550177777",
    ];
    let business_only = ["MARKER-STORED-TEXT", "15550188888"];
    let mut checked = 0;
    for (path, bytes) in files_below(dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        for marker in never {
            assert!(
                !text.contains(marker),
                "{marker} found in {}",
                path.display()
            );
        }
        let is_messaging_db = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("messaging.db"));
        if !is_messaging_db {
            for marker in business_only {
                assert!(
                    !text.contains(marker),
                    "{marker} found in {}",
                    path.display()
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 15, "logs, databases and keys were all looked at");
    // Inside the messaging database, only the messages table holds them.
    let conn = database(&data, "messaging");
    let in_audit: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE coalesce(message, '') || coalesce(proof, '') || \
             coalesce(resource, '') LIKE '%1555018888%' OR coalesce(proof, '') LIKE '%MARKER%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_audit, 0);
    let resources: Vec<String> = conn
        .prepare("SELECT resource FROM audit WHERE resource IS NOT NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(resources, ["replies/…", "messages"]);
}

#[test]
fn the_operator_views_need_the_token() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "all", &[]);
    let client = services.client();
    for (service, path) in [
        ("store", "/api/sales"),
        ("taxi", "/api/trips"),
        ("messaging", "/api/messages"),
        ("store", "/api/audit"),
    ] {
        let none = client.get(services.url(service, path)).send().unwrap();
        assert_eq!(none.status(), 401, "{service}{path}");
        let body: Value = none.json().unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator-token")
        );
        let wrong = client
            .get(services.url(service, path))
            .bearer_auth("0".repeat(64))
            .send()
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let ok = services.operator_get(service, path);
        assert!(ok.is_object());
        let health = client
            .get(services.url(service, "/healthz"))
            .send()
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    let sales = services.operator_get("store", "/api/sales?limit=2");
    assert_eq!(sales["sales"].as_array().unwrap().len(), 2);
    assert!(sales["sales"][0]["items"].is_array());
    let drivers = services.operator_get("taxi", "/api/trips");
    assert!(
        drivers["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["free"] == true)
    );

    // A new sale, the start of the case study, becomes what programs read.
    let unauthorised = client
        .post(services.url("store", "/api/sales"))
        .json(&json!({"customer_id": 1, "total": "120.00"}))
        .send()
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let new = json!({"customer": {"name": "Ada Byrne", "phone": "+15550100299", "address": "1 Mill Lane"}, "total": "120.00"});
    let added = client
        .post(services.url("store", "/api/sales"))
        .bearer_auth(services.token())
        .json(&new)
        .send()
        .unwrap();
    assert_eq!(added.status(), 201);
    let program = launcher.run(exe(1), sandbox());
    let (_, last) = program.call(&services, "store", Op::Read, "sales/last", b"");
    let last = last.unwrap();
    assert_eq!(
        (&last["total"], &last["customer"]["name"]),
        (&json!("120.00"), &json!("Ada Byrne"))
    );

    let bad = client
        .post(services.url("store", "/api/sales"))
        .bearer_auth(services.token())
        .json(&json!({"customer_id": 1, "total": "12.5"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Refused from its head: the body is never read.
    let head = format!(
        "POST /api/sales HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        services.token(),
        100 << 10
    );
    let response = raw_https(&services, "store", &head);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"too_large\""), "{response}");
}

#[test]
fn the_published_certificate_chains_to_the_services_ca_and_names_the_service() {
    let (_dir, data) = data_dir();
    let services = Services::start(&data, "all", &[]);
    let anchor = services.services_ca();
    for name in ["store", "taxi", "messaging"] {
        let response = services
            .client()
            .get(services.url(name, "/.well-known/attestable/certificate"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-pem-file");
        let pem = response.text().unwrap();
        let now = pki::unix_now();
        let leaf = verify_service_chain(&pem, &anchor, name, now).unwrap();
        assert_eq!(pki::common_name(&leaf).as_deref(), Some(name));
        let other = if name == "store" { "taxi" } else { "store" };
        let err = verify_service_chain(&pem, &anchor, other, now).unwrap_err();
        assert!(err.to_string().contains("common name"), "{err}");
        let stranger = pki::CertificateAuthority::create_root("stranger", None, 1).unwrap();
        assert!(verify_service_chain(&pem, stranger.certificate(), name, now).is_err());
        // The key file is private.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(data.join(name).join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let ca_key = fs::metadata(data.join("ca").join("ca.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&ca_key.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn the_simulated_customer_answers_as_configured() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let program = launcher.run(exe(1), sandbox());
    let phone = "+15550100201";
    let ask = |services: &Services| -> Value {
        let message = json!({"phone": phone, "text": "Your taxi is on its way."}).to_string();
        let (answer, _) = program.call(
            services,
            "messaging",
            Op::Write,
            "messages",
            message.as_bytes(),
        );
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let (answer, reply) = program.call(
            services,
            "messaging",
            Op::Read,
            &format!("replies/{phone}"),
            b"",
        );
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        reply.unwrap()
    };
    for (args, expected) in [
        (vec!["--customer-reply", "decline"], json!("DECLINE")),
        (vec!["--customer-reply", "none"], Value::Null),
        (vec![], json!("ACCEPT")),
    ] {
        let mut services = Services::start(&data, "messaging", &args);
        let reply = ask(&services);
        assert_eq!(reply["reply"], expected, "{args:?}");
        assert_eq!(reply["at"].is_null(), expected.is_null());
        services.stop();
    }
    // The configuration file sets it too.
    fs::write(
        data.join("config.toml"),
        "[messaging]\ncustomer_reply = \"decline\"\n",
    )
    .unwrap();
    let services = Services::start(&data, "messaging", &[]);
    assert_eq!(ask(&services)["reply"], "DECLINE");
    let messages = services.operator_get("messaging", "/api/messages");
    assert_eq!(messages["customer_reply"], "decline");
}

#[test]
fn with_every_driver_busy_a_booking_gets_a_clear_error() {
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "taxi", &["--trip-seconds", "3600"]);
    let program = launcher.run(exe(1), sandbox());
    let trip = json!({"origin": "a", "destination": "b", "customer_phone": "+15550100201", "fare_paid_by": "c"}).to_string();
    let drivers = services.operator_get("taxi", "/api/trips")["drivers"]
        .as_array()
        .unwrap()
        .len();
    for _ in 0..drivers {
        let (answer, _) = program.call(&services, "taxi", Op::Write, "trips", trip.as_bytes());
        assert_eq!(answer.status, 200, "{:#}", answer.body);
    }
    let (answer, _) = program.call(&services, "taxi", Op::Write, "trips", trip.as_bytes());
    let m = answer.error(503, "unavailable");
    assert!(
        m.contains("no free driver") && m.contains("next is free at"),
        "{m}"
    );
}

#[test]
fn a_second_instance_and_a_public_address_are_refused() {
    let (_dir, data) = data_dir();
    let services = Services::start(&data, "store", &[]);
    let d = data.to_str().unwrap();
    let (ok, _, err) = run_cli(&["store", "--data", d, "--store-listen", "127.0.0.1:0"]);
    assert!(!ok && err.contains("already runs"), "{err}");
    assert!(
        err.contains(&services.pid().to_string()),
        "names the holder: {err}"
    );
    let (ok, _, err) = run_cli(&["taxi", "--data", d, "--taxi-listen", "0.0.0.0:0"]);
    assert!(!ok && err.contains("not a loopback address"), "{err}");
    let (ok, _, err) = run_cli(&["messaging", "--data", d, "--customer-reply", "maybe"]);
    assert!(!ok && err.contains("accept, decline or none"), "{err}");
}

#[test]
fn the_plain_operator_endpoints_answer_what_the_attested_calls_answer() {
    // The benchmark's baseline: the same request without attestation.
    let (_dir, data) = data_dir();
    let launcher = Launcher::new("dev");
    approve(&data, &launcher, exe(1));
    let services = Services::start(&data, "all", &[]);
    let program = launcher.run(exe(1), sandbox());
    let client = services.client();

    let (_, attested) = program.call(&services, "store", Op::Read, "sales/last", b"");
    let plain = services.operator_get("store", "/api/sales/last");
    assert_eq!(attested.unwrap(), plain);

    let message = json!({"phone": "+15550100311", "text": "plain message"});
    let none = client
        .post(services.url("messaging", "/api/messages"))
        .json(&message)
        .send()
        .unwrap();
    assert_eq!(none.status(), 401);
    let sent = client
        .post(services.url("messaging", "/api/messages"))
        .bearer_auth(services.token())
        .json(&message)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let sent: Value = sent.json().unwrap();
    let (_, attested) = program.call(
        &services,
        "messaging",
        Op::Write,
        "messages",
        message.to_string().as_bytes(),
    );
    let attested = attested.unwrap();
    assert_eq!(
        sent.as_object().unwrap().keys().collect::<Vec<_>>(),
        attested.as_object().unwrap().keys().collect::<Vec<_>>(),
        "{sent} vs {attested}"
    );
    let listed = services.operator_get("messaging", "/api/messages");
    let texts: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| **t == "plain message").count(),
        2,
        "{listed}"
    );

    let bad = client
        .post(services.url("messaging", "/api/messages"))
        .bearer_auth(services.token())
        .json(&json!({"phone": "not a phone", "text": "x"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Reads and writes exist where the attested ones do, and nowhere else.
    let missing = client
        .get(services.url("taxi", "/api/sales/last"))
        .bearer_auth(services.token())
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
}
