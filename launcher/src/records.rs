//! Async access to the records: one `programs_db::Db` behind a mutex, used
//! from blocking threads so SQLite never stalls the async workers. Callers
//! queue for the database *before* taking a blocking thread: one connection
//! serves one call at a time anyway, and a burst of runs would otherwise park
//! a blocking thread per waiting call on the mutex (100 runs starting together
//! grew the pool past 100 threads; docs/PERFORMANCE.md).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

use programs_db::{Db, DbError, FileStore};

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database task failed: {0}")]
    Task(String),
}

#[derive(Clone)]
pub struct Records {
    db: Arc<Mutex<Db>>,
    /// One permit: the turn to use the database.
    turn: Arc<Semaphore>,
    files: FileStore,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    pub fn new(db: Db) -> Self {
        let files = db.files().clone();
        Self {
            db: Arc::new(Mutex::new(db)),
            turn: Arc::new(Semaphore::new(1)),
            files,
        }
    }

    /// The file store, for staging (which needs no lock).
    pub fn files(&self) -> &FileStore {
        &self.files
    }

    /// Runs `f` with exclusive access to the database on a blocking thread.
    pub async fn call<R, F>(&self, f: F) -> Result<R, RecordsError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, DbError> + Send + 'static,
    {
        let db = self.db.clone();
        // Held by the blocking task, so released when `f` is done even if
        // this future is dropped while it runs. Never closed.
        let turn = self
            .turn
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| RecordsError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db)
        })
        .await
        .map_err(|e| RecordsError::Task(e.to_string()))?
        .map_err(RecordsError::Db)
    }
}
