//! The store against real SQLite files and real folders.

use std::fs;
use std::path::Path;

use programs_db::{
    AuditFilter, BuildOutcome, BuildStatus, Captured, CompiledIn, Db, DbError, EndStatus, MAX_PAGE,
    NewBuild, NewRun, Page, RunEnd, RunFilter, RunStatus, RunUpdate, SCHEMA_VERSION, Sha256Hex,
    Table,
};

const ACTOR: &str = "test";

fn open(dir: &Path) -> Db {
    Db::open(dir).unwrap()
}

fn upload(db: &mut Db, name: &str, source: &[u8]) -> i64 {
    let staged = db.files().stage_bytes(source).unwrap();
    db.create_program(ACTOR, name, staged).unwrap().id
}

fn build_ok(db: &mut Db, program: i64, exe: &[u8]) -> i64 {
    let build = db
        .start_build(
            ACTOR,
            &NewBuild {
                program_id: program,
                profile: "host".into(),
                compiler: "cc (test) 1.0".into(),
                argv: vec!["cc".into(), "-o".into(), "prog".into(), "prog.c".into()],
            },
        )
        .unwrap();
    assert_eq!(build.status, BuildStatus::Running);
    let staged = db.files().stage_bytes(exe).unwrap();
    let build = db
        .finish_build(
            ACTOR,
            build.id,
            BuildOutcome::Succeeded {
                executable: staged,
                log: String::new(),
                log_truncated: false,
                duration_ms: 5,
            },
        )
        .unwrap();
    assert_eq!(build.status, BuildStatus::Succeeded);
    build.id
}

fn queue_run(db: &mut Db, program: i64, build: i64) -> i64 {
    db.create_run(
        ACTOR,
        &NewRun {
            program_id: program,
            build_id: build,
            args: vec!["a".into()],
            limits_json: r#"{"wall_seconds":2}"#.into(),
            time_limit_s: 2,
        },
    )
    .unwrap()
    .id
}

fn ended(status: EndStatus) -> RunUpdate {
    RunUpdate::Ended(RunEnd {
        status,
        exit_code: Some(0),
        signal: None,
        error: None,
        stdout: Captured {
            bytes: b"out".to_vec(),
            truncated: false,
        },
        stderr: Captured::default(),
    })
}

fn running(exe: &[u8]) -> RunUpdate {
    RunUpdate::Running {
        pid: 4242,
        executable_sha256: Sha256Hex::of(exe),
        compartment: r#"{"backend":"none","insecure":true}"#.into(),
    }
}

fn files_in(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn fresh_database_is_migrated_wal_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(db.check_integrity().unwrap().is_empty());
    drop(db);
    let raw = rusqlite::Connection::open(dir.path().join("launcher.db")).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    use std::os::unix::fs::PermissionsExt;
    let perms = fs::metadata(dir.path().join("launcher.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(perms & 0o777, 0o600);
    // Reopening applies nothing twice.
    drop(raw);
    let db = open(dir.path());
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let raw = rusqlite::Connection::open(dir.path().join("launcher.db")).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let err = Db::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DbError::SchemaTooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err}"
    );
}

#[test]
fn ids_are_never_reused_after_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let a = upload(&mut db, "a.c", b"int main(void){return 0;}");
    let b = upload(&mut db, "b.c", b"int main(void){return 1;}");
    db.delete_program(ACTOR, b).unwrap();
    let c = upload(&mut db, "c.c", b"int main(void){return 2;}");
    assert_eq!((a, b, c), (1, 2, 3));
    assert_eq!(db.last_id(Table::Programs).unwrap(), 3);
    // Still true after reopening.
    drop(db);
    let mut db = open(dir.path());
    db.delete_program(ACTOR, c).unwrap();
    assert_eq!(upload(&mut db, "d.c", b"x"), 4);
    assert!(matches!(
        db.program(2),
        Err(DbError::NotFound {
            kind: "program",
            id: 2
        })
    ));
}

#[test]
fn files_live_exactly_as_long_as_rows_refer_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let store = dir.path().join("store").join("sha256");
    let same = b"int main(void){return 0;}\n";
    let p1 = upload(&mut db, "one.c", same);
    let p2 = upload(&mut db, "two.c", same);
    assert_eq!(files_in(&store), 1, "identical sources are stored once");
    build_ok(&mut db, p1, b"\x7fELF-one");
    assert_eq!(files_in(&store), 2);
    assert_eq!(db.referenced_blobs().unwrap(), db.stored_blobs().unwrap());

    let deleted = db.delete_program(ACTOR, p1).unwrap();
    assert_eq!((deleted.builds, deleted.runs), (1, 0));
    assert_eq!(
        files_in(&store),
        1,
        "the executable went, the shared source stayed"
    );
    db.delete_program(ACTOR, p2).unwrap();
    assert_eq!(files_in(&store), 0);
    assert_eq!(files_in(&dir.path().join("store").join("tmp")), 0);
    assert_eq!(db.count(Table::Builds).unwrap(), 0);
}

#[test]
fn an_empty_source_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let staged = db.files().stage_bytes(b"").unwrap();
    assert!(matches!(
        db.create_program(ACTOR, "e.c", staged),
        Err(DbError::Invalid(_))
    ));
    assert_eq!(db.count(Table::Programs).unwrap(), 0);
    assert_eq!(files_in(&dir.path().join("store")), 0);
}

#[test]
fn run_state_machine_is_enforced_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let exe = b"\x7fELF";
    let program = upload(&mut db, "p.c", b"int main(void){return 0;}");
    let build = build_ok(&mut db, program, exe);
    let run = queue_run(&mut db, program, build);
    assert_eq!(db.run(run).unwrap().status, RunStatus::Queued);

    let err = db.update_run(ACTOR, run, running(exe)).unwrap_err();
    assert!(
        matches!(
            err,
            DbError::IllegalTransition {
                from: RunStatus::Queued,
                to: RunStatus::Running,
                ..
            }
        ),
        "{err}"
    );
    db.update_run(ACTOR, run, RunUpdate::Starting).unwrap();
    let r = db.update_run(ACTOR, run, running(exe)).unwrap();
    assert_eq!(r.pid, Some(4242));
    assert_eq!(r.executable_sha256, Some(Sha256Hex::of(exe)));
    assert!(r.started_at.is_some());
    let r = db.update_run(ACTOR, run, ended(EndStatus::Exited)).unwrap();
    assert_eq!(r.status, RunStatus::Exited);
    assert_eq!(r.stdout.bytes, b"out");
    assert!(r.ended_at.is_some());
    for update in [
        RunUpdate::Starting,
        running(exe),
        ended(EndStatus::Cancelled),
    ] {
        assert!(matches!(
            db.update_run(ACTOR, run, update),
            Err(DbError::IllegalTransition {
                from: RunStatus::Exited,
                ..
            })
        ));
    }
    // The schema backs the types: an ended run stays ended even for raw SQL.
    let raw = rusqlite::Connection::open(dir.path().join("launcher.db")).unwrap();
    let err = raw
        .execute("UPDATE runs SET status = 'running' WHERE id = ?1", [run])
        .unwrap_err();
    assert!(err.to_string().contains("final"), "{err}");
    drop(raw);
    let events = db
        .audit_events(&AuditFilter {
            subject_kind: Some("run".into()),
            subject_id: Some(run),
            ..Default::default()
        })
        .unwrap();
    let actions: Vec<_> = events
        .iter()
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            format!("{} {}", e.action, detail["to"].as_str().unwrap_or("queued"))
        })
        .collect();
    assert_eq!(
        actions,
        [
            "run.create queued",
            "run.status starting",
            "run.status running",
            "run.status exited"
        ]
    );
    // Output never reaches the audit log.
    assert!(!events.iter().any(|e| e.detail.contains("\"out\"")));
}

#[test]
fn a_run_needs_a_succeeded_build_of_its_own_program() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let p1 = upload(&mut db, "p1.c", b"a");
    let p2 = upload(&mut db, "p2.c", b"b");
    let b1 = build_ok(&mut db, p1, b"exe1");
    let new = |program_id, build_id| NewRun {
        program_id,
        build_id,
        args: vec![],
        limits_json: "{}".into(),
        time_limit_s: 1,
    };
    assert!(matches!(
        db.create_run(ACTOR, &new(p2, b1)),
        Err(DbError::Invalid(m)) if m.contains("belongs to program 1")
    ));
    assert!(matches!(
        db.create_run(ACTOR, &new(p1, 99)),
        Err(DbError::NotFound { kind: "build", .. })
    ));
    let failed = db
        .start_build(
            ACTOR,
            &NewBuild {
                program_id: p2,
                profile: "host".into(),
                compiler: "cc".into(),
                argv: vec![],
            },
        )
        .unwrap();
    db.finish_build(
        ACTOR,
        failed.id,
        BuildOutcome::Failed {
            exit_code: Some(1),
            error: None,
            log: "p2.c:1:1: error: expected".into(),
            log_truncated: false,
            duration_ms: 3,
        },
    )
    .unwrap();
    assert!(matches!(
        db.create_run(ACTOR, &new(p2, failed.id)),
        Err(DbError::Conflict(m)) if m.contains("failed")
    ));
    assert!(db.latest_successful_build(p2).unwrap().is_none());
    assert_eq!(db.latest_successful_build(p1).unwrap().unwrap().id, b1);
    // A finished build cannot be finished again.
    assert!(matches!(
        db.finish_build(
            ACTOR,
            failed.id,
            BuildOutcome::Failed {
                exit_code: None,
                error: None,
                log: String::new(),
                log_truncated: false,
                duration_ms: 0
            }
        ),
        Err(DbError::Conflict(_))
    ));
}

#[test]
fn delete_is_refused_while_a_run_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let program = upload(&mut db, "p.c", b"int main(void){for(;;);}");
    let build = build_ok(&mut db, program, b"exe");
    let run = queue_run(&mut db, program, build);
    let err = db.delete_program(ACTOR, program).unwrap_err();
    assert!(
        matches!(&err, DbError::Conflict(m) if m.contains(&format!("run {run} is queued"))),
        "{err}"
    );
    assert_eq!(db.runs(RunFilter::default()).unwrap().len(), 1);
    db.update_run(
        ACTOR,
        run,
        RunUpdate::Ended(RunEnd::without_output(EndStatus::Cancelled, None)),
    )
    .unwrap();
    let deleted = db.delete_program(ACTOR, program).unwrap();
    assert_eq!(deleted.runs, 1);
    assert!(matches!(
        db.run(run),
        Err(DbError::NotFound { kind: "run", .. })
    ));
    // The history outlives the rows.
    let events = db
        .audit_events(&AuditFilter {
            subject_kind: Some("run".into()),
            subject_id: Some(run),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[test]
fn the_audit_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    upload(&mut db, "p.c", b"x");
    drop(db);
    let raw = rusqlite::Connection::open(dir.path().join("launcher.db")).unwrap();
    let update = raw
        .execute("UPDATE audit_events SET actor = 'mallory'", [])
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = raw.execute("DELETE FROM audit_events", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
    let count: i64 = raw
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn recovery_interrupts_live_work_and_collects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let exe = b"exe";
    let (queued, live, done, build_running) = {
        let mut db = open(dir.path());
        let program = upload(&mut db, "p.c", b"int main(void){return 0;}");
        let build = build_ok(&mut db, program, exe);
        let queued = queue_run(&mut db, program, build);
        let live = queue_run(&mut db, program, build);
        db.update_run(ACTOR, live, RunUpdate::Starting).unwrap();
        db.update_run(ACTOR, live, running(exe)).unwrap();
        let done = queue_run(&mut db, program, build);
        db.update_run(ACTOR, done, RunUpdate::Starting).unwrap();
        db.update_run(ACTOR, done, running(exe)).unwrap();
        db.update_run(ACTOR, done, ended(EndStatus::Exited))
            .unwrap();
        let b = db
            .start_build(
                ACTOR,
                &NewBuild {
                    program_id: program,
                    profile: "host".into(),
                    compiler: "cc".into(),
                    argv: vec![],
                },
            )
            .unwrap();
        // What a crash leaves: a committed orphan, a staging file, a stray.
        let orphan = db.files().stage_bytes(b"orphan").unwrap();
        let orphan_path = db.files().path(orphan.sha256());
        fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
        fs::copy(orphan.path(), &orphan_path).unwrap();
        drop(orphan);
        fs::write(dir.path().join("store/tmp/stage-crashed"), b"half").unwrap();
        (queued, live, done, b.id)
    };
    let mut db = open(dir.path());
    let recovery = db.recover().unwrap();
    assert_eq!(recovery.interrupted_runs, vec![queued, live]);
    assert_eq!(recovery.interrupted_builds, vec![build_running]);
    assert_eq!(recovery.orphan_files, 1);
    assert_eq!(recovery.stray_files, 1);
    assert_eq!(db.run(queued).unwrap().status, RunStatus::Interrupted);
    assert_eq!(db.run(live).unwrap().status, RunStatus::Interrupted);
    assert_eq!(db.run(done).unwrap().status, RunStatus::Exited);
    assert_eq!(
        db.build(build_running).unwrap().status,
        BuildStatus::Interrupted
    );
    assert_eq!(db.referenced_blobs().unwrap(), db.stored_blobs().unwrap());
    let events = db
        .audit_events(&AuditFilter {
            subject_kind: Some("run".into()),
            subject_id: Some(live),
            ..Default::default()
        })
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.actor, programs_db::SYSTEM_ACTOR);
    assert!(last.detail.contains("\"to\":\"interrupted\""));
    // A second recovery finds nothing to do.
    assert_eq!(db.recover().unwrap(), programs_db::Recovery::default());
}

#[test]
fn certificates_attach_once_to_running_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let exe = b"exe";
    let program = upload(&mut db, "p.c", b"x");
    let build = build_ok(&mut db, program, exe);
    let run = queue_run(&mut db, program, build);
    assert!(matches!(
        db.set_run_certificate(ACTOR, run, "PEM"),
        Err(DbError::Conflict(_))
    ));
    db.update_run(ACTOR, run, RunUpdate::Starting).unwrap();
    db.update_run(ACTOR, run, running(exe)).unwrap();
    db.set_run_certificate(ACTOR, run, "PEM").unwrap();
    assert!(matches!(
        db.set_run_certificate(ACTOR, run, "PEM2"),
        Err(DbError::Conflict(_))
    ));
    assert_eq!(db.run(run).unwrap().certificate_pem.as_deref(), Some("PEM"));
}

#[test]
fn an_interrupted_build_is_recorded_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let program = upload(&mut db, "p.c", b"x");
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
    let build = db
        .finish_build(
            ACTOR,
            build.id,
            BuildOutcome::Interrupted {
                log: "partial".into(),
                log_truncated: false,
                duration_ms: 7,
            },
        )
        .unwrap();
    assert_eq!(build.status, BuildStatus::Interrupted);
    assert_eq!(build.log, "partial");
    assert!(build.error.unwrap().contains("stopped"));
    assert!(build.executable_sha256.is_none());
    let events = db
        .audit_events(&AuditFilter {
            subject_kind: Some("build".into()),
            subject_id: Some(build.id),
            ..Default::default()
        })
        .unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["build.start", "build.interrupted"]);
}

#[test]
fn builds_keep_their_sdk_and_anchor_and_runs_their_compartment() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let program = upload(&mut db, "p.c", b"int main(void){return 0;}");
    let anchor = Sha256Hex::of(b"-----BEGIN CERTIFICATE-----");
    let build = db
        .start_build_with(
            ACTOR,
            &NewBuild {
                program_id: program,
                profile: "host".into(),
                compiler: "cc".into(),
                argv: vec!["cc".into()],
            },
            &CompiledIn {
                sdk_sha256: Sha256Hex::of(b"sdk"),
                services_anchor_sha256: Some(anchor.clone()),
            },
        )
        .unwrap();
    assert_eq!(build.sdk_sha256, Some(Sha256Hex::of(b"sdk")));
    assert_eq!(build.services_anchor_sha256, Some(anchor.clone()));
    let staged = db.files().stage_bytes(b"exe").unwrap();
    let finished = db
        .finish_build(
            ACTOR,
            build.id,
            BuildOutcome::Succeeded {
                executable: staged,
                log: String::new(),
                log_truncated: false,
                duration_ms: 1,
            },
        )
        .unwrap();
    assert_eq!(finished.services_anchor_sha256, Some(anchor));
    // Builds made before the SDK was compiled in have neither.
    let old = build_ok(&mut db, program, b"exe2");
    assert_eq!(db.build(old).unwrap().sdk_sha256, None);
    assert_eq!(db.build(old).unwrap().services_anchor_sha256, None);

    let run = queue_run(&mut db, program, build.id);
    assert_eq!(db.run(run).unwrap().compartment, None);
    db.update_run(ACTOR, run, RunUpdate::Starting).unwrap();
    // Not a JSON object: refused, and nothing changes.
    let bad = RunUpdate::Running {
        pid: 1,
        executable_sha256: Sha256Hex::of(b"exe"),
        compartment: "[1]".into(),
    };
    let err = db.update_run(ACTOR, run, bad).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
    assert_eq!(db.run(run).unwrap().status, RunStatus::Starting);
    db.update_run(ACTOR, run, running(b"exe")).unwrap();
    let stored = db.run(run).unwrap();
    assert_eq!(
        stored.compartment.as_deref(),
        Some(r#"{"backend":"none","insecure":true}"#)
    );
    let events = db
        .audit_events(&AuditFilter {
            subject_kind: Some("run".into()),
            subject_id: Some(run),
            after_id: None,
            limit: 100,
        })
        .unwrap();
    assert!(
        events.iter().any(|e| e
            .detail
            .contains(r#""compartment":{"backend":"none","insecure":true}"#)),
        "{events:?}"
    );
}

#[test]
fn lists_page_by_id_within_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let programs: Vec<i64> = (0..5)
        .map(|i| upload(&mut db, &format!("p{i}.c"), format!("int x{i};").as_bytes()))
        .collect();
    let build = build_ok(&mut db, programs[0], b"exe");
    let runs: Vec<i64> = (0..5)
        .map(|_| queue_run(&mut db, programs[0], build))
        .collect();
    let ids = |page: Page| -> Vec<i64> {
        db.programs_page(page)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(Page::default()), programs, "0 means the maximum");
    assert_eq!(
        ids(Page {
            after_id: None,
            limit: 2
        }),
        programs[..2]
    );
    assert_eq!(
        ids(Page {
            after_id: Some(programs[1]),
            limit: 2
        }),
        programs[2..4]
    );
    assert!(
        ids(Page {
            after_id: Some(programs[4]),
            limit: 2
        })
        .is_empty()
    );
    assert_eq!(
        ids(Page {
            after_id: None,
            limit: MAX_PAGE + 1
        })
        .len(),
        5
    );

    let run_ids =
        |filter: RunFilter| -> Vec<i64> { db.runs(filter).unwrap().iter().map(|r| r.id).collect() };
    assert_eq!(run_ids(RunFilter::default()), runs, "no page: every run");
    let page = |after_id, limit| RunFilter {
        program_id: Some(programs[0]),
        page: Some(Page { after_id, limit }),
        ..Default::default()
    };
    assert_eq!(run_ids(page(Some(runs[0]), 3)), runs[1..4]);
    assert!(
        run_ids(RunFilter {
            program_id: Some(programs[1]),
            ..page(None, 3)
        })
        .is_empty()
    );
}
