-- Programs, builds, runs and the audit log. Times are Unix milliseconds.

CREATE TABLE programs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    source_sha256 TEXT    NOT NULL CHECK (length(source_sha256) = 64),
    size          INTEGER NOT NULL CHECK (size > 0),
    created_at    INTEGER NOT NULL
);
CREATE INDEX programs_source_sha256 ON programs (source_sha256);

CREATE TABLE builds (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    program_id        INTEGER NOT NULL REFERENCES programs (id) ON DELETE CASCADE,
    status            TEXT    NOT NULL
                      CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    profile           TEXT    NOT NULL,
    compiler          TEXT    NOT NULL,
    argv              TEXT    NOT NULL,  -- JSON array of strings
    executable_sha256 TEXT    CHECK (executable_sha256 IS NULL OR length(executable_sha256) = 64),
    exit_code         INTEGER,
    log               TEXT    NOT NULL DEFAULT '',
    log_truncated     INTEGER NOT NULL DEFAULT 0 CHECK (log_truncated IN (0, 1)),
    error             TEXT,
    duration_ms       INTEGER,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    -- An executable exists exactly when the build succeeded.
    CHECK ((status = 'succeeded') = (executable_sha256 IS NOT NULL))
);
CREATE INDEX builds_program_id ON builds (program_id);
CREATE INDEX builds_executable_sha256 ON builds (executable_sha256);

CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    program_id        INTEGER NOT NULL REFERENCES programs (id) ON DELETE CASCADE,
    build_id          INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    status            TEXT    NOT NULL
                      CHECK (status IN ('queued', 'starting', 'running', 'exited', 'failed',
                                        'timed_out', 'cancelled', 'interrupted', 'protocol_error')),
    args              TEXT    NOT NULL,  -- JSON array of strings
    limits            TEXT    NOT NULL,  -- JSON object
    time_limit_s      INTEGER NOT NULL CHECK (time_limit_s > 0),
    executable_sha256 TEXT    CHECK (executable_sha256 IS NULL OR length(executable_sha256) = 64),
    pid               INTEGER,
    exit_code         INTEGER,
    signal            INTEGER,
    error             TEXT,
    stdout            BLOB    NOT NULL DEFAULT x'',
    stderr            BLOB    NOT NULL DEFAULT x'',
    stdout_truncated  INTEGER NOT NULL DEFAULT 0 CHECK (stdout_truncated IN (0, 1)),
    stderr_truncated  INTEGER NOT NULL DEFAULT 0 CHECK (stderr_truncated IN (0, 1)),
    certificate_pem   TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    ended_at          INTEGER
);
CREATE INDEX runs_program_id ON runs (program_id);
CREATE INDEX runs_status ON runs (status);

-- Belt and braces under the typed state machine: an ended run stays ended.
CREATE TRIGGER runs_terminal_is_final
BEFORE UPDATE OF status ON runs
WHEN OLD.status IN ('exited', 'failed', 'timed_out', 'cancelled', 'interrupted', 'protocol_error')
 AND NEW.status <> OLD.status
BEGIN
    SELECT RAISE(ABORT, 'run status is final');
END;

-- Append-only: subjects are plain ids, not foreign keys, so history outlives deletions.
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    subject_kind TEXT    NOT NULL,
    subject_id   INTEGER,
    detail       TEXT    NOT NULL DEFAULT '{}'  -- JSON object
);
CREATE INDEX audit_events_subject ON audit_events (subject_kind, subject_id);

CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete
BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
