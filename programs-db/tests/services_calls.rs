//! The service registry and the record of brokered calls, on real SQLite files.

use programs_db::{
    AuditFilter, BuildOutcome, CallOp, Db, DbError, EndStatus, MAX_CALL_DETAIL_BYTES, NewBuild,
    NewCall, NewRun, RunEnd, RunUpdate,
};

const ACTOR: &str = "test";

fn run_of_a_program(db: &mut Db) -> (i64, i64) {
    let staged = db
        .files()
        .stage_bytes(b"int main(void){return 0;}")
        .unwrap();
    let program = db.create_program(ACTOR, "p.c", staged).unwrap().id;
    let build = db
        .start_build(
            ACTOR,
            &NewBuild {
                program_id: program,
                profile: "host".into(),
                compiler: "cc".into(),
                argv: vec!["cc".into()],
            },
        )
        .unwrap();
    let exe = db.files().stage_bytes(b"\x7fELF").unwrap();
    db.finish_build(
        ACTOR,
        build.id,
        BuildOutcome::Succeeded {
            executable: exe,
            log: String::new(),
            log_truncated: false,
            duration_ms: 1,
        },
    )
    .unwrap();
    let run = db
        .create_run(
            ACTOR,
            &NewRun {
                program_id: program,
                build_id: build.id,
                args: vec![],
                limits_json: "{}".into(),
                time_limit_s: 5,
            },
        )
        .unwrap();
    (program, run.id)
}

fn call(run_id: i64, op: CallOp, outcome: &str, at: i64) -> NewCall {
    NewCall {
        run_id,
        at,
        service: "store".into(),
        op,
        resource: "sales".into(),
        request_bytes: 1200,
        response_bytes: 900,
        latency_us: 450,
        outcome: outcome.into(),
        detail: None,
    }
}

#[test]
fn services_are_created_replaced_listed_and_removed_with_audit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    assert!(db.services().unwrap().is_empty());
    let (created, new) = db
        .put_service(ACTOR, "store", "https://127.0.0.1:8000", "PEM1")
        .unwrap();
    assert!(new);
    assert_eq!(created.base_url, "https://127.0.0.1:8000");
    let (updated, new) = db
        .put_service(ACTOR, "store", "https://127.0.0.1:8001", "PEM2")
        .unwrap();
    assert!(!new);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(updated.ca_pem, "PEM2");
    db.put_service(ACTOR, "taxi", "https://127.0.0.1:8002", "PEM3")
        .unwrap();
    let ids: Vec<String> = db.services().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["store", "taxi"]);
    assert_eq!(db.service("taxi").unwrap().unwrap().ca_pem, "PEM3");
    assert!(db.service("nope").unwrap().is_none());

    assert!(db.delete_service(ACTOR, "taxi").unwrap());
    assert!(!db.delete_service(ACTOR, "taxi").unwrap());
    let actions: Vec<String> = db
        .audit_events(&AuditFilter {
            subject_kind: Some("service".into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "service.create",
            "service.update",
            "service.create",
            "service.delete"
        ]
    );
    // Registrations survive a reopen.
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.services().unwrap().len(), 1);
}

#[test]
fn bad_service_ids_and_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    for id in ["", "Store", "a_b", "x/y", &"a".repeat(65)] {
        let err = db.put_service(ACTOR, id, "https://h", "P").unwrap_err();
        assert!(
            matches!(err, DbError::Invalid(ref m) if m.contains("service id")),
            "{id}: {err}"
        );
    }
    let err = db
        .put_service(ACTOR, "ok", &"h".repeat(3000), "P")
        .unwrap_err();
    assert!(err.to_string().contains("base_url"), "{err}");
    assert!(db.services().unwrap().is_empty());
}

#[test]
fn calls_are_recorded_in_batches_and_listed_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    let (program, run) = run_of_a_program(&mut db);
    let (_, other) = run_of_a_program(&mut db);
    let mut failed = call(run, CallOp::Write, "service_denied", 20);
    failed.detail = Some("x".repeat(MAX_CALL_DETAIL_BYTES * 2));
    db.record_calls(&[
        call(run, CallOp::Read, "ok", 30),
        failed,
        call(other, CallOp::ServiceCert, "ok", 10),
    ])
    .unwrap();
    db.record_calls(&[]).unwrap();
    let calls = db.run_calls(run).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].op, CallOp::Write, "ordered by start time");
    assert_eq!(calls[0].outcome, "service_denied");
    assert!(calls[0].detail.as_ref().unwrap().len() <= MAX_CALL_DETAIL_BYTES);
    assert_eq!(calls[1].request_bytes, 1200);
    assert_eq!(calls[1].latency_us, 450);
    assert_eq!(db.run_calls(other).unwrap().len(), 1);

    // A call of a run that does not exist breaks a foreign key: nothing of the batch is kept.
    let err = db
        .record_calls(&[
            call(run, CallOp::Read, "ok", 40),
            call(9999, CallOp::Read, "ok", 41),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("run 9999"), "{err}");
    assert_eq!(db.run_calls(run).unwrap().len(), 2);

    // Deleting the program deletes its runs' calls.
    let end = RunEnd::without_output(EndStatus::Cancelled, None);
    db.update_run(ACTOR, run, RunUpdate::Ended(end)).unwrap();
    db.delete_program(ACTOR, program).unwrap();
    assert!(db.run_calls(run).unwrap().is_empty());
}
