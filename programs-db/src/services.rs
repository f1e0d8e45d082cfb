//! The services the broker may call, registered through the API. (Services
//! named in the launcher's configuration file are not stored here.)

use rusqlite::{OptionalExtension, Row, params};
use serde_json::json;

use crate::db::{Db, audit, now_ms};
use crate::error::{DbError, Result, SqlContext};

const COLUMNS: &str = "id, base_url, ca_pem, created_at, updated_at";

/// Longest base URL stored.
pub const MAX_BASE_URL_BYTES: usize = 2048;

/// A registered service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The id programs name it with: `[a-z0-9-]{1,64}`.
    pub id: String,
    /// `https://host:port[/prefix]`, without a trailing `/`.
    pub base_url: String,
    /// The CA (PEM) the service's TLS certificate must chain to.
    pub ca_pem: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whether `id` is a valid service id: 1 to 64 characters of `a-z 0-9 -`.
pub fn valid_service_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Service> {
    Ok(Service {
        id: row.get(0)?,
        base_url: row.get(1)?,
        ca_pem: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

impl Db {
    /// Every registered service, by id.
    pub fn services(&self) -> Result<Vec<Service>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM services ORDER BY id"))
            .context("listing services")?;
        let rows = stmt.query_map([], from_row).context("listing services")?;
        rows.collect::<rusqlite::Result<_>>()
            .context("listing services")
    }

    /// The service `id`, if registered.
    pub fn service(&self, id: &str) -> Result<Option<Service>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM services WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("reading a service")
    }

    /// Registers service `id` or replaces its registration. Returns the row
    /// and whether it was created. The caller validates the URL and the PEM;
    /// this checks the id and the sizes.
    pub fn put_service(
        &mut self,
        actor: &str,
        id: &str,
        base_url: &str,
        ca_pem: &str,
    ) -> Result<(Service, bool)> {
        if !valid_service_id(id) {
            return Err(DbError::Invalid(format!(
                "service id: expected 1 to 64 characters of a-z, 0-9 and -, found {id:?}"
            )));
        }
        if base_url.is_empty() || base_url.len() > MAX_BASE_URL_BYTES {
            return Err(DbError::Invalid(format!(
                "base_url: expected 1 to {MAX_BASE_URL_BYTES} bytes, found {}",
                base_url.len()
            )));
        }
        let tx = self.write_tx("registering a service")?;
        let existed: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM services WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
            .context("checking a service")?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO services (id, base_url, ca_pem, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (id) DO UPDATE SET base_url = ?2, ca_pem = ?3, updated_at = ?4",
            params![id, base_url, ca_pem, now],
        )
        .context("registering a service")?;
        audit(
            &tx,
            actor,
            if existed {
                "service.update"
            } else {
                "service.create"
            },
            "service",
            None,
            &json!({"id": id, "base_url": base_url, "ca_pem_bytes": ca_pem.len()}),
        )?;
        let service = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM services WHERE id = ?1"),
                [id],
                from_row,
            )
            .context("reading a service")?;
        tx.commit().context("registering a service")?;
        Ok((service, !existed))
    }

    /// Removes service `id`; false if it was not registered.
    pub fn delete_service(&mut self, actor: &str, id: &str) -> Result<bool> {
        let tx = self.write_tx("removing a service")?;
        let removed = tx
            .execute("DELETE FROM services WHERE id = ?1", [id])
            .context("removing a service")?;
        if removed > 0 {
            audit(
                &tx,
                actor,
                "service.delete",
                "service",
                None,
                &json!({"id": id}),
            )?;
        }
        tx.commit().context("removing a service")?;
        Ok(removed > 0)
    }
}
