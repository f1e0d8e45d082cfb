//! Reads and writes relayed end to end to an honest service.

use attestable_tests::channel_programs::{field, line, run_id, run_to_end};
use attestable_tests::service::TestService;
use attestable_tests::sha256_hex;

use crate::common::{assert_nowhere, needles, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_are_relayed_decrypted_by_the_program_and_recorded_without_payloads() {
    let s = setup("").await;
    let vault = TestService::start("vault", &s.ca).await;
    vault.allow(&s.root_pem(), &s.exe);
    s.launcher
        .register_service("vault", &vault.base_url(), &s.ca.pem)
        .await;

    let run = run_to_end(
        &s.launcher,
        s.program,
        &[
            "read:vault:things/a",
            "write:vault:notes:note",
            "read:vault:things/b",
        ],
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    let id = run_id(&run);
    assert_eq!(
        line(&run, "cert "),
        format!("cert O=sdk_client.c, CN=run-{id}")
    );

    // What the program decrypted is exactly what the service sealed (and the
    // service received exactly what the program sent).
    let plaintexts = vault.plaintexts();
    let digests: Vec<String> = plaintexts.iter().map(|p| sha256_hex(p)).collect();
    let first = line(&run, "1 read vault ok");
    let write = line(&run, "2 write vault ok");
    let second = line(&run, "3 read vault ok");
    assert_eq!(
        plaintexts.len(),
        4,
        "two read answers, one write and its receipt"
    );
    assert_eq!(field(first, "payload"), digests[0]);
    assert_eq!(field(write, "sent"), digests[1]);
    assert_eq!(field(write, "reply"), digests[2]);
    assert_eq!(field(second, "payload"), digests[3]);
    assert_ne!(digests[0], digests[3], "each read gets a fresh answer");

    // Every call is recorded: sizes, latency, outcome, the collection only.
    let calls = s.launcher.get(&format!("/v1/runs/{id}/calls"), 200).await;
    let calls = calls.as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap(),
                c["op"].as_str().unwrap(),
                c["resource"].as_str().unwrap(),
                c["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("vault", "service_cert", "", "ok"),
            ("vault", "read", "things", "ok"),
            ("vault", "write", "notes", "ok"),
            ("vault", "read", "things", "ok"),
        ],
        "{calls:?}"
    );
    for call in &calls[1..] {
        assert!(call["request_bytes"].as_u64().unwrap() > 500, "{call}");
        assert!(call["response_bytes"].as_u64().unwrap() > 500, "{call}");
        assert!(call["latency_us"].as_u64().unwrap() > 0, "{call}");
        assert!(call["detail"].is_null(), "{call}");
    }
    // The program's LOG line is in the run's log (its stderr record).
    assert!(
        run["stderr"]
            .as_str()
            .unwrap()
            .contains("[info] sdk_client: 3 steps, all ok"),
        "{run}"
    );

    // Neither the launcher's files (database and WAL included) nor its log
    // hold any of it: not the answers, not what was written.
    let secrets = needles(&plaintexts);
    let data = s.launcher.data_dir();
    assert_nowhere(&data, &s.launcher.log(), &secrets);
    let log_path = data.parent().unwrap().join("launcher.log");
    let tmp = s.launcher.stop();
    assert_nowhere(
        &tmp.path().join("data"),
        &std::fs::read_to_string(log_path).unwrap(),
        &secrets,
    );
    vault.stop().await;
}

/// A measurement, not a check: `cargo test -p attestable-tests --test broker
/// -- --ignored --nocapture read_latency`. Prints the time a program takes to
/// get its certificate and the latency of brokered reads (program → launcher
/// → service → program, with all cryptography on both ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run it with --ignored --nocapture"]
async fn read_latency() {
    let s = setup("").await;
    let vault = TestService::start("vault", &s.ca).await;
    vault.allow(&s.root_pem(), &s.exe);
    s.launcher
        .register_service("vault", &vault.base_url(), &s.ca.pem)
        .await;
    let run = run_to_end(&s.launcher, s.program, &["reads:vault:things/a:500"]).await;
    assert_eq!(run["exit_code"], 0, "{run}");
    println!("{}", line(&run, "timing"));
    println!("{}", line(&run, "1 reads vault ok"));
    s.launcher.stop();
    vault.stop().await;
}
