//! The taxi company: drivers, vehicles and trips. Attested write `trips`
//! books a trip with a free driver, who is then busy for the configured
//! trip length; with nobody free the answer is 503 and names when the next
//! driver is free.

use attestable_data::encoding::UnixTime;
use attestable_data::policy::Op;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::business::{self, BusinessError, check_phone, check_text};
use crate::config::Settings;
use crate::db::{DbError, SqlContext};
use crate::kind::ServiceKind;

const SCHEMA: &str = "
CREATE TABLE vehicles (
    id INTEGER PRIMARY KEY,
    plate TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL
);
CREATE TABLE drivers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    vehicle_id INTEGER NOT NULL UNIQUE REFERENCES vehicles(id),
    busy_until INTEGER                   -- Unix seconds; NULL or past: free
);
CREATE TABLE trips (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    destination TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    fare_paid_by TEXT NOT NULL,
    driver_id INTEGER NOT NULL REFERENCES drivers(id),
    vehicle_id INTEGER NOT NULL REFERENCES vehicles(id),
    eta_minutes INTEGER NOT NULL,
    booked_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL
);
";

/// (driver, plate, model)
const FLEET: &[(&str, &str, &str)] = &[
    ("Rosa Achterberg", "KTX4R17", "Toyota Prius"),
    ("Emeka Obi", "LMN2C58", "Skoda Octavia"),
    ("Hana Kovac", "QRD7F30", "Kia Niro"),
    ("Dmitri Vale", "BHC9T41", "Hyundai Ioniq"),
    ("Saoirse Lynch", "ZPE3K62", "Renault Megane"),
];

/// Past trips: (driver, origin, destination, phone, days ago).
const PAST_TRIPS: &[(i64, &str, &str, &str, i64)] = &[
    (
        2,
        "Central Station",
        "41 Pike Street, Riverside",
        "+15550100311",
        6,
    ),
    (
        4,
        "Harbour Cinema",
        "8 Elm Close, Westgate",
        "+15550100312",
        3,
    ),
];

/// Creates the tables and the sample fleet (everybody free).
pub fn create(tx: &Transaction<'_>, now: i64) -> Result<(), DbError> {
    tx.execute_batch(SCHEMA).context("taxi schema")?;
    for (i, (name, plate, model)) in FLEET.iter().enumerate() {
        let id = i as i64 + 1;
        tx.execute(
            "INSERT INTO vehicles (id, plate, model) VALUES (?1, ?2, ?3)",
            params![id, plate, model],
        )
        .context("sample vehicles")?;
        tx.execute(
            "INSERT INTO drivers (id, name, vehicle_id) VALUES (?1, ?2, ?1)",
            params![id, name],
        )
        .context("sample drivers")?;
    }
    for (driver, origin, destination, phone, days_ago) in PAST_TRIPS {
        let at = now - days_ago * 86_400;
        tx.execute(
            "INSERT INTO trips (origin, destination, customer_phone, fare_paid_by, driver_id, \
             vehicle_id, eta_minutes, booked_at, ends_at) \
             VALUES (?1, ?2, ?3, 'customer', ?4, ?4, 5, ?5, ?6)",
            params![origin, destination, phone, driver, at, at + 1500],
        )
        .context("sample trips")?;
    }
    Ok(())
}

/// The payload of a `trips` write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripRequest {
    /// Where the taxi picks the customer up.
    pub origin: String,
    /// Where it takes them.
    pub destination: String,
    /// The customer's phone.
    pub customer_phone: String,
    /// Who pays (the store, in the case study).
    pub fare_paid_by: String,
}

/// The answer to a `trips` write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    /// The trip's id.
    pub trip_id: i64,
    /// The taxi's plate.
    pub taxi_plate: String,
    /// Its driver.
    pub driver_name: String,
    /// Minutes until pick-up.
    pub eta_minutes: i64,
}

/// Attested write.
pub fn write(
    conn: &mut Connection,
    settings: &Settings,
    resource: &str,
    payload: &[u8],
    now: i64,
) -> Result<serde_json::Value, BusinessError> {
    if resource != "trips" {
        return Err(business::unknown(ServiceKind::Taxi, Op::Write, resource));
    }
    let trip: TripRequest = business::parse_payload("trips", payload)?;
    let invalid = BusinessError::Invalid;
    check_text("trips origin", &trip.origin, 200).map_err(invalid)?;
    check_text("trips destination", &trip.destination, 200).map_err(invalid)?;
    check_phone("trips customer_phone", &trip.customer_phone).map_err(invalid)?;
    check_text("trips fare_paid_by", &trip.fare_paid_by, 100).map_err(invalid)?;
    let booking = book(conn, settings, &trip, now)?;
    Ok(serde_json::to_value(booking).expect("a booking serializes"))
}

fn book(
    conn: &mut Connection,
    settings: &Settings,
    trip: &TripRequest,
    now: i64,
) -> Result<Booking, BusinessError> {
    let tx = conn.transaction()?;
    // The driver free for longest: a fair rotation.
    let free = tx
        .query_row(
            "SELECT d.id, d.name, v.id, v.plate FROM drivers d JOIN vehicles v ON v.id = d.vehicle_id \
             WHERE d.busy_until IS NULL OR d.busy_until <= ?1 \
             ORDER BY coalesce(d.busy_until, 0), d.id LIMIT 1",
            [now],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?)),
        )
        .optional()?;
    let Some((driver_id, driver_name, vehicle_id, plate)) = free else {
        let (drivers, next): (i64, Option<i64>) =
            tx.query_row("SELECT count(*), min(busy_until) FROM drivers", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        return Err(BusinessError::Unavailable(format!(
            "no free driver: expected one of the {drivers} drivers to be free, found all on a \
             trip (the next is free at {})",
            next.map(|t| UnixTime(t).to_string())
                .unwrap_or_else(|| "an unknown time".into())
        )));
    };
    let ends_at = now + settings.trip_seconds as i64;
    tx.execute(
        "UPDATE drivers SET busy_until = ?2 WHERE id = ?1",
        params![driver_id, ends_at],
    )?;
    tx.execute(
        "INSERT INTO trips (origin, destination, customer_phone, fare_paid_by, driver_id, \
         vehicle_id, eta_minutes, booked_at, ends_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
        params![
            trip.origin,
            trip.destination,
            trip.customer_phone,
            trip.fare_paid_by,
            driver_id,
            vehicle_id,
            now,
            ends_at
        ],
    )?;
    let trip_id = tx.last_insert_rowid();
    // A deterministic "distance": 3 to 12 minutes.
    let eta_minutes = 3 + (trip_id * 7 + driver_id * 3) % 10;
    tx.execute(
        "UPDATE trips SET eta_minutes = ?2 WHERE id = ?1",
        params![trip_id, eta_minutes],
    )?;
    tx.commit()?;
    Ok(Booking {
        trip_id,
        taxi_plate: plate,
        driver_name,
        eta_minutes,
    })
}

/// A trip in the operator's view.
#[derive(Debug, Clone, Serialize)]
pub struct TripView {
    /// The trip's id.
    pub trip_id: i64,
    /// Pick-up.
    pub origin: String,
    /// Drop-off.
    pub destination: String,
    /// The customer's phone.
    pub customer_phone: String,
    /// Who pays.
    pub fare_paid_by: String,
    /// The driver.
    pub driver_name: String,
    /// The taxi's plate.
    pub taxi_plate: String,
    /// Minutes until pick-up, as promised.
    pub eta_minutes: i64,
    /// When it was booked.
    pub booked_at: UnixTime,
    /// When the driver is free again.
    pub ends_at: UnixTime,
}

/// A driver in the operator's view.
#[derive(Debug, Clone, Serialize)]
pub struct DriverView {
    /// Name.
    pub name: String,
    /// The taxi's plate.
    pub taxi_plate: String,
    /// The taxi's model.
    pub model: String,
    /// Free now.
    pub free: bool,
    /// Busy until, if on a trip.
    pub busy_until: Option<UnixTime>,
}

/// The newest `limit` trips, newest first.
pub fn recent_trips(conn: &Connection, limit: u32) -> Result<Vec<TripView>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT t.id, t.origin, t.destination, t.customer_phone, t.fare_paid_by, d.name, v.plate, \
         t.eta_minutes, t.booked_at, t.ends_at FROM trips t JOIN drivers d ON d.id = t.driver_id \
         JOIN vehicles v ON v.id = t.vehicle_id ORDER BY t.id DESC LIMIT ?1",
    )?
    .query_map([limit], |r| {
        Ok(TripView {
            trip_id: r.get(0)?,
            origin: r.get(1)?,
            destination: r.get(2)?,
            customer_phone: r.get(3)?,
            fare_paid_by: r.get(4)?,
            driver_name: r.get(5)?,
            taxi_plate: r.get(6)?,
            eta_minutes: r.get(7)?,
            booked_at: UnixTime(r.get(8)?),
            ends_at: UnixTime(r.get(9)?),
        })
    })?
    .collect()
}

/// Every driver, with whether they are free at `now`.
pub fn drivers(conn: &Connection, now: i64) -> Result<Vec<DriverView>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT d.name, v.plate, v.model, d.busy_until FROM drivers d \
         JOIN vehicles v ON v.id = d.vehicle_id ORDER BY d.id",
    )?
    .query_map([], |r| {
        let busy_until: Option<i64> = r.get(3)?;
        let busy = busy_until.filter(|&t| t > now);
        Ok(DriverView {
            name: r.get(0)?,
            taxi_plate: r.get(1)?,
            model: r.get(2)?,
            free: busy.is_none(),
            busy_until: busy.map(UnixTime),
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIP: &[u8] = br#"{"origin": "Acme Coffee, 1 Market Square", "destination": "14 Orchard Row, Linden Vale", "customer_phone": "+15550100201", "fare_paid_by": "Acme Coffee"}"#;

    #[test]
    fn trips_take_free_drivers_until_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_795_548_840;
        let mut conn = crate::db::open(&dir.path().join("t.db"), ServiceKind::Taxi, now).unwrap();
        let settings = Settings {
            trip_seconds: 600,
            ..Settings::default()
        };
        let mut plates = Vec::new();
        for _ in FLEET {
            let b = write(&mut conn, &settings, "trips", TRIP, now).unwrap();
            assert!((3..=12).contains(&b["eta_minutes"].as_i64().unwrap()));
            plates.push(b["taxi_plate"].as_str().unwrap().to_owned());
        }
        plates.sort();
        plates.dedup();
        assert_eq!(plates.len(), FLEET.len(), "each driver once");
        assert!(drivers(&conn, now).unwrap().iter().all(|d| !d.free));
        let err = write(&mut conn, &settings, "trips", TRIP, now).unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("no free driver"), "{err}");
        // Once the first trips end, drivers are free again.
        assert!(write(&mut conn, &settings, "trips", TRIP, now + 600).is_ok());
        assert_eq!(
            recent_trips(&conn, 100).unwrap().len(),
            PAST_TRIPS.len() + FLEET.len() + 1
        );
    }

    #[test]
    fn malformed_trips_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::db::open(&dir.path().join("t.db"), ServiceKind::Taxi, 0).unwrap();
        let s = Settings::default();
        for (payload, needle) in [
            (&br#"{"origin": "a"}"#[..], "missing field `destination`"),
            (br#"{"origin": 7, "destination": "d", "customer_phone": "+123", "fare_paid_by": "x"}"#, "invalid type"),
            (br#"{"origin": "o", "destination": "d", "customer_phone": "SECRET", "fare_paid_by": "x"}"#, "customer_phone"),
            (b"SECRET", "not JSON"),
        ] {
            let err = write(&mut conn, &s, "trips", payload, 0).unwrap_err();
            assert_eq!(err.status(), 400);
            let m = err.to_string();
            assert!(m.contains(needle) && !m.contains("SECRET"), "{needle}: {m}");
        }
        assert_eq!(
            write(&mut conn, &s, "trips/1", TRIP, 0)
                .unwrap_err()
                .status(),
            404
        );
    }
}
