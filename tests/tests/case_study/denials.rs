//! What the services refuse: a program nobody approved, and the approved
//! program's source changed by one byte (a different executable, so a
//! different measurement). The program stops at once, shows the store's
//! proof, and nothing is booked or sent.

use attestable_tests::mock::MockOptions;

use crate::{CaseStudy, integration_source, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operators_approval_the_store_denies_with_its_proof() {
    let cs = CaseStudy::start(MockOptions::default()).await;
    let (program, _exe) = cs.build(integration_source()).await;
    cs.new_sale(2, "189.90").await;
    let before = cs.counts();

    // The services' first policy trusts no launcher and allows nothing.
    let run = cs.run(program, &[]).await;
    assert_eq!(run["status"], "exited", "{}", output(&run));
    assert_eq!(run["exit_code"], 1, "{}", output(&run));
    let stderr = run["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("error: step 2 (read the last sale from the store) failed"),
        "{}",
        output(&run)
    );
    // The proof, as the store made it: the step that failed and why.
    assert!(stderr.contains("FAILED Key[root "), "{}", output(&run));
    assert!(
        stderr.contains("=> DENIED at step 1 (trusted_root)"),
        "{}",
        output(&run)
    );
    assert!(
        run["stdout"]
            .as_str()
            .unwrap()
            .contains("outcome: failed at step 2 (read the last sale from the store)"),
        "{}",
        output(&run)
    );
    assert_eq!(cs.counts(), before, "no trip, no message");
    let calls = cs.calls(&run).await;
    let last = calls.last().expect("calls");
    assert_eq!(
        (
            last["service"].as_str(),
            last["op"].as_str(),
            last["outcome"].as_str()
        ),
        (Some("store"), Some("read"), Some("service_denied")),
        "{calls:?}"
    );
    assert_eq!(calls.len(), 2, "nothing after the denial: {calls:?}");
    cs.assert_no_plaintext();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_source_changed_by_one_byte_is_denied() {
    let cs = CaseStudy::start(MockOptions::default()).await;
    let original = integration_source();
    let (_, approved) = cs.build(original.clone()).await;
    cs.approve(&approved);

    // One byte of a string the program prints: the same program to a
    // reader, a different executable to the launcher.
    let from = b"store -> taxi";
    let at = original
        .windows(from.len())
        .position(|w| w == from)
        .expect("the banner");
    let mut changed = original.clone();
    changed[at + 7] = b'=';
    assert_eq!(
        original
            .iter()
            .zip(&changed)
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    let (program, exe) = cs.build(changed).await;
    assert_ne!(exe, approved, "one byte changes the measurement");

    cs.new_sale(2, "189.90").await;
    let before = cs.counts();
    let run = cs.run(program, &[]).await;
    assert_eq!(run["exit_code"], 1, "{}", output(&run));
    let stderr = run["stderr"].as_str().unwrap();
    // Everything holds up to the measurement, which no rule names; the proof
    // says which measurement was expected and which was found.
    assert!(
        stderr.contains("=> DENIED at step 8 (measurement)"),
        "{}",
        output(&run)
    );
    assert!(
        stderr.contains(&format!("FAILED Measurement[{}] is-trusted", &exe[..8])),
        "{}",
        output(&run)
    );
    assert!(
        stderr.contains(&format!("executable {}…", &approved[..8])),
        "the approved measurement is named: {}",
        output(&run)
    );
    assert!(
        stderr.contains(&exe),
        "the found one in full: {}",
        output(&run)
    );
    assert_eq!(cs.counts(), before, "no trip, no message");
    cs.assert_no_plaintext();
}
