//! Frames a program should not send, written by hand (`raw_frames.c`): an
//! unknown type gets ERROR and the channel goes on; a malformed or oversized
//! frame ends the run as `protocol_error`; the launcher goes on serving.

use attestable_tests::channel_programs::{build, run_to_end};
use attestable_tests::{Launcher, expect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_their_documented_outcome_and_the_launcher_goes_on() {
    let launcher = Launcher::start();
    let (program, _) = build(&launcher, "raw_frames.c", None).await;

    let unknown = run_to_end(&launcher, program, &["unknown"]).await;
    assert_eq!(unknown["status"], "exited", "{unknown}");
    assert_eq!(unknown["exit_code"], 0, "{unknown}");
    let stdout = unknown["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("ERROR corr=5 unknown frame type 0x42"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NACK corr=9 hello_required READ before HELLO"),
        "the channel went on after the unknown frame: {stdout}"
    );

    for (mode, reason) in [
        (
            "malformed",
            "malformed READ (0x02) frame: field service needs 99 bytes, 5 remain",
        ),
        (
            "oversized",
            "oversized frame: the header of a frame of type 0x03 announces 16777217 bytes; \
             expected at most 16777216",
        ),
    ] {
        let run = run_to_end(&launcher, program, &[mode]).await;
        assert_eq!(run["status"], "protocol_error", "{mode}: {run}");
        let error = run["error"].as_str().unwrap();
        assert!(error.contains(reason), "{mode}: {error}");
        assert!(error.contains("the program was stopped"), "{error}");
        assert_eq!(run["signal"], 9, "killed by the launcher: {run}");
    }

    // Still serving: the API answers and the next run is like the first.
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
    let again = run_to_end(&launcher, program, &["unknown"]).await;
    assert_eq!(again["status"], "exited", "{again}");
    launcher.stop();
}
