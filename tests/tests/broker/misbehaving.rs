//! What a program does with answers it must not accept, and what the broker
//! does with services that are down, slow or not trusted by the program.
//!
//! A deliberately misbehaving test service stands in for a malicious relay
//! here: it corrupts or replays its own sealed answers, and the program
//! receives exactly the bytes a relay that did the same would have sent.

use std::time::Duration;

use attestable_tests::channel_programs::{field, line, run_id, run_to_end};
use attestable_tests::service::{Behaviour, ServicesCa, TestService};

use crate::common::{assert_nowhere, needles, setup};

/// The SDK's `ATT_E_RESPONSE`, `ATT_E_SERVICE_CERT` and `ATT_E_NACK`.
const ATT_E_RESPONSE: &str = "-9";
const ATT_E_SERVICE_CERT: &str = "-8";
const ATT_E_NACK: &str = "-5";

fn reason(line: &str) -> &str {
    line.split_once("reason=").map(|(_, r)| r).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_and_a_replayed_answer_are_rejected_by_the_program() {
    let s = setup("").await;
    let flipper = TestService::start("flipper", &s.ca).await;
    let replayer = TestService::start("replayer", &s.ca).await;
    for service in [&flipper, &replayer] {
        service.allow(&s.root_pem(), &s.exe);
    }
    flipper.set_behaviour(Behaviour::FlipBit);
    replayer.set_behaviour(Behaviour::ReplayFirst);
    s.launcher
        .register_service("flipper", &flipper.base_url(), &s.ca.pem)
        .await;
    s.launcher
        .register_service("replayer", &replayer.base_url(), &s.ca.pem)
        .await;

    let run = run_to_end(
        &s.launcher,
        s.program,
        &[
            "read:flipper:things/a",
            "read:replayer:things/a",
            "read:replayer:things/b",
        ],
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}");
    assert_eq!(run["exit_code"], 1, "two steps fail: {run}");

    let flipped = line(&run, "1 read flipper error");
    assert_eq!(field(flipped, "status"), ATT_E_RESPONSE, "{flipped}");
    assert_eq!(field(flipped, "nack"), "-");
    let fresh = line(&run, "2 read replayer ok");
    assert!(field(fresh, "payload").len() == 64);
    let replayed = line(&run, "3 read replayer error");
    assert_eq!(field(replayed, "status"), ATT_E_RESPONSE, "{replayed}");
    assert!(reason(replayed).contains("nonce"), "{replayed}");

    // To the broker both calls succeeded: it cannot tell, by design.
    let calls = s
        .launcher
        .get(&format!("/v1/runs/{}/calls", run_id(&run)), 200)
        .await;
    let reads: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["op"] == "read")
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(reads, ["ok", "ok", "ok"]);

    let mut plaintexts = flipper.plaintexts();
    plaintexts.extend(replayer.plaintexts());
    let data = s.launcher.data_dir();
    assert_nowhere(&data, &s.launcher.log(), &needles(&plaintexts));
    s.launcher.stop();
    flipper.stop().await;
    replayer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_not_chaining_to_the_compiled_in_anchor_receives_nothing() {
    let s = setup("").await;
    // The launcher trusts this service's CA for TLS; the program's anchor is
    // another CA, so the program must refuse to encrypt anything to it.
    let other = ServicesCa::new("a CA the program does not know");
    let rogue = TestService::start("rogue", &other).await;
    rogue.allow(&s.root_pem(), &s.exe);
    s.launcher
        .register_service("rogue", &rogue.base_url(), &other.pem)
        .await;

    let run = run_to_end(
        &s.launcher,
        s.program,
        &["write:rogue:notes:note", "read:rogue:x"],
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}");
    for prefix in ["1 write rogue error", "2 read rogue error"] {
        let refused = line(&run, prefix);
        assert_eq!(field(refused, "status"), ATT_E_SERVICE_CERT, "{refused}");
    }
    assert_eq!(rogue.attested_requests(), 0, "nothing was sent to it");
    s.launcher.stop();
    rogue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_down_or_slow_is_a_nack_with_the_reason_within_the_timeout() {
    // A 1 s request timeout, and a service that would answer after 300 s: had
    // the broker waited for it, the run would have hit its 60 s time limit.
    let s = setup("[broker]\nrequest_timeout_ms = 1000\nconnect_timeout_ms = 1000\n").await;
    let slow = TestService::start("slow", &s.ca).await;
    slow.allow(&s.root_pem(), &s.exe);
    slow.set_behaviour(Behaviour::Slow(Duration::from_secs(300)));
    s.launcher
        .register_service("slow", &slow.base_url(), &s.ca.pem)
        .await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    s.launcher
        .register_service("down", &format!("https://{closed}"), &s.ca.pem)
        .await;

    let run = run_to_end(
        &s.launcher,
        s.program,
        &[
            "read:down:things/a",
            "read:slow:things/a",
            "write:slow:notes:note",
        ],
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}");
    let down = line(&run, "1 read down error");
    assert_eq!(field(down, "status"), ATT_E_NACK, "{down}");
    assert_eq!(field(down, "nack"), "service_unreachable");
    assert!(reason(down).contains("connection refused"), "{down}");
    for prefix in ["2 read slow error", "3 write slow error"] {
        let timed_out = line(&run, prefix);
        assert_eq!(
            field(timed_out, "nack"),
            "service_unreachable",
            "{timed_out}"
        );
        assert!(reason(timed_out).contains("timeout"), "{timed_out}");
        assert!(reason(timed_out).contains("1000 ms"), "{timed_out}");
    }
    let calls = s
        .launcher
        .get(&format!("/v1/runs/{}/calls", run_id(&run)), 200)
        .await;
    let outcomes: Vec<(&str, &str)> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["op"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("service_cert", "service_unreachable"),
            ("service_cert", "ok"),
            ("read", "service_unreachable"),
            ("write", "service_unreachable"),
        ],
        "{calls}"
    );
    assert!(
        calls[2]["detail"].as_str().unwrap().contains("timeout"),
        "{calls}"
    );
    s.launcher.stop();
    slow.stop().await;
}
