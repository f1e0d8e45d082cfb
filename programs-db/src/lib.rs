//! The launcher's records: programs, builds, runs and an append-only audit
//! log in SQLite (WAL, foreign keys, versioned migrations), with sources and
//! executables in a content-addressed file store beside the database.
//!
//! [`Db`] is a single connection; changes take `&mut self`, so a process that
//! shares one `Db` behind a mutex serialises every change together with the
//! file-store operations that must agree with it. This crate depends on no
//! other crate of the workspace.

mod audit;
mod builds;
mod calls;
mod db;
mod error;
mod migrate;
mod model;
mod programs;
mod runs;
mod services;
mod store;

pub use audit::MAX_AUDIT_PAGE;
pub use calls::{Call, CallOp, MAX_CALL_DETAIL_BYTES, NewCall};
pub use db::{Db, Recovery, SYSTEM_ACTOR, Table, now_ms};
pub use error::{DbError, Result};
pub use migrate::SCHEMA_VERSION;
pub use model::{
    AuditEvent, AuditFilter, Build, BuildOutcome, BuildStatus, Captured, CompiledIn, EndStatus,
    MAX_PAGE, NewBuild, NewRun, Page, Program, Run, RunEnd, RunStatus, RunUpdate,
};
pub use programs::DeletedProgram;
pub use runs::RunFilter;
pub use services::{MAX_BASE_URL_BYTES, Service, valid_service_id};
pub use store::{BlobKind, FileStore, Sha256Hex, StagedBlob, StagedWriter};
