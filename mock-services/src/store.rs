//! The store: customers, products and sales. Attested read `sales/last`;
//! the operator adds sales (`POST /api/sales`), which starts the case study.

use attestable_data::encoding::UnixTime;
use attestable_data::policy::Op;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::business::{self, BusinessError, check_phone, check_text};
use crate::db::{DbError, SqlContext};
use crate::kind::ServiceKind;
use crate::money::Cents;

/// The currency of every sale.
pub const CURRENCY: &str = "USD";

const SCHEMA: &str = "
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE sales (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    currency TEXT NOT NULL,
    date INTEGER NOT NULL
);
CREATE TABLE sale_items (
    sale_id INTEGER NOT NULL REFERENCES sales(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (sale_id, product_id)
);
";

/// (name, phone, address)
const CUSTOMERS: &[(&str, &str, &str)] = &[
    ("Marta Quill", "+15550100201", "14 Orchard Row, Linden Vale"),
    ("Tomas Brandt", "+15550100202", "3 Ferry Steps, Old Quay"),
    (
        "Ines Calloway",
        "+15550100203",
        "27 Beacon Hill Road, Northmere",
    ),
    (
        "Oskar Lindqvist",
        "+15550100204",
        "9 Weaver's Yard, Eastbrook",
    ),
];

/// (name, price)
const PRODUCTS: &[(&str, &str)] = &[
    ("Espresso machine", "129.90"),
    ("Burr grinder", "89.00"),
    ("Coffee beans, 1 kg", "24.50"),
    ("Milk frother", "39.90"),
    ("Gooseneck kettle", "75.00"),
    ("Mug set", "19.90"),
];

type SampleSale = (i64, i64, &'static [(i64, i64)]);

/// (customer, days ago, [(product, quantity)]): totals 49.00, 218.90, 150.00
/// (exactly the threshold: no ride), 39.80, and last 177.90 (above it).
const SALES: &[SampleSale] = &[
    (2, 9, &[(3, 2)]),
    (3, 7, &[(1, 1), (2, 1)]),
    (1, 5, &[(5, 2)]),
    (4, 2, &[(6, 2)]),
    (1, 0, &[(2, 1), (4, 1), (3, 2)]),
];

/// Creates the tables and the sample data.
pub fn create(tx: &Transaction<'_>, now: i64) -> Result<(), DbError> {
    tx.execute_batch(SCHEMA).context("store schema")?;
    for (name, phone, address) in CUSTOMERS {
        tx.execute(
            "INSERT INTO customers (name, phone, address, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, phone, address, now - 30 * 86_400],
        )
        .context("sample customers")?;
    }
    for (name, price) in PRODUCTS {
        let price: Cents = price.parse().expect("sample prices are well formed");
        tx.execute(
            "INSERT INTO products (name, price_cents) VALUES (?1, ?2)",
            params![name, price.0],
        )
        .context("sample products")?;
    }
    for (i, (customer, days_ago, items)) in SALES.iter().enumerate() {
        let items: Vec<NewItem> = items
            .iter()
            .map(|&(product_id, quantity)| NewItem {
                product_id,
                quantity: quantity as u32,
            })
            .collect();
        let total =
            items_total(tx, &items).map_err(|e| DbError::Seed(format!("sample sale {i}: {e}")))?;
        // Spread the sales over the day so that the order is the ids' order.
        insert_sale(
            tx,
            *customer,
            total,
            now - days_ago * 86_400 - 60 + i as i64,
            &items,
        )
        .context("sample sales")?;
    }
    Ok(())
}

/// A sale as the integration process reads it (`sales/last`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sale {
    /// The sale's id.
    pub sale_id: i64,
    /// Its total.
    pub total: Cents,
    /// Always [`CURRENCY`].
    pub currency: String,
    /// When it was made.
    pub date: UnixTime,
    /// Who bought.
    pub customer: Customer,
}

/// A customer as a sale names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Full name.
    pub name: String,
    /// Phone, `+` and digits.
    pub phone: String,
    /// Street address (where the taxi goes).
    pub address: String,
}

/// A sale in the operator's view: the sale, the customer's id and the items.
#[derive(Debug, Clone, Serialize)]
pub struct SaleView {
    /// The sale.
    #[serde(flatten)]
    pub sale: Sale,
    /// The customer's id.
    pub customer_id: i64,
    /// What was bought.
    pub items: Vec<ItemView>,
}

/// One line of a sale.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    /// The product's id.
    pub product_id: i64,
    /// Its name.
    pub product: String,
    /// How many.
    pub quantity: i64,
    /// Price of one.
    pub unit_price: Cents,
}

/// Attested read.
pub fn read(
    conn: &Connection,
    resource: &str,
    payload: &[u8],
) -> Result<serde_json::Value, BusinessError> {
    if resource != "sales/last" {
        return Err(business::unknown(ServiceKind::Store, Op::Read, resource));
    }
    business::check_read_parameters(payload)?;
    // One cached statement, and no items: the answer is the sale alone (this
    // is every brokered read's query; see docs/PERFORMANCE.md).
    let last = conn
        .prepare_cached(&format!("{SALE_HEAD} ORDER BY s.id DESC LIMIT 1"))?
        .query_row([], sale_head)
        .optional()?
        .ok_or_else(|| {
            BusinessError::UnknownResource("sales/last: the store has no sale yet".into())
        })?;
    Ok(serde_json::to_value(&last.sale).expect("a sale serializes"))
}

/// A sale and its customer, without the items ([`sale_head`] reads a row).
const SALE_HEAD: &str = "SELECT s.id, s.total_cents, s.currency, s.date, c.id, c.name, c.phone, \
                         c.address FROM sales s JOIN customers c ON c.id = s.customer_id";

fn sale_head(r: &rusqlite::Row<'_>) -> Result<SaleView, rusqlite::Error> {
    Ok(SaleView {
        sale: Sale {
            sale_id: r.get(0)?,
            total: Cents(r.get(1)?),
            currency: r.get(2)?,
            date: UnixTime(r.get(3)?),
            customer: Customer {
                name: r.get(5)?,
                phone: r.get(6)?,
                address: r.get(7)?,
            },
        },
        customer_id: r.get(4)?,
        items: Vec::new(),
    })
}

fn sale(conn: &Connection, id: i64) -> Result<Option<SaleView>, rusqlite::Error> {
    let head = conn
        .prepare_cached(&format!("{SALE_HEAD} WHERE s.id = ?1"))?
        .query_row([id], sale_head)
        .optional()?;
    let Some(mut view) = head else {
        return Ok(None);
    };
    view.items = conn
        .prepare_cached(
            "SELECT i.product_id, p.name, i.quantity, i.unit_price_cents FROM sale_items i \
             JOIN products p ON p.id = i.product_id WHERE i.sale_id = ?1 ORDER BY i.product_id",
        )?
        .query_map([id], |r| {
            Ok(ItemView {
                product_id: r.get(0)?,
                product: r.get(1)?,
                quantity: r.get(2)?,
                unit_price: Cents(r.get(3)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(view))
}

/// The newest `limit` sales, newest first.
pub fn recent_sales(conn: &Connection, limit: u32) -> Result<Vec<SaleView>, rusqlite::Error> {
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM sales ORDER BY id DESC LIMIT ?1")?
        .query_map([limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut sales = Vec::with_capacity(ids.len());
    for id in ids {
        sales.extend(sale(conn, id)?);
    }
    Ok(sales)
}

/// The body of `POST /api/sales`: a customer by id or a new one, a total,
/// and optionally the items (whose sum must then be the total).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// An existing customer…
    #[serde(default)]
    pub customer_id: Option<i64>,
    /// …or a new one.
    #[serde(default)]
    pub customer: Option<Customer>,
    /// The total, `"189.90"`.
    pub total: Cents,
    /// What was bought.
    #[serde(default)]
    pub items: Vec<NewItem>,
}

/// One line of a new sale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// The product.
    pub product_id: i64,
    /// How many (1 to 1000).
    pub quantity: u32,
}

/// Why a new sale was refused (400 unless the database failed).
#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    /// The body does not describe a sale.
    #[error("{0}")]
    Invalid(String),
    /// SQLite failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// Records a new sale (it becomes `sales/last`).
pub fn add_sale(conn: &mut Connection, new: &NewSale, now: i64) -> Result<SaleView, SaleError> {
    let bad = |m: String| SaleError::Invalid(m);
    if new.items.len() > 100 {
        return Err(bad(format!(
            "items: expected at most 100, found {}",
            new.items.len()
        )));
    }
    let tx = conn.transaction()?;
    let customer_id = match (&new.customer_id, &new.customer) {
        (Some(id), None) => {
            let exists: Option<i64> = tx
                .query_row("SELECT id FROM customers WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            exists.ok_or_else(|| bad(format!("customer_id: no customer {id}")))?
        }
        (None, Some(c)) => {
            check_text("customer.name", &c.name, 100).map_err(bad)?;
            check_phone("customer.phone", &c.phone).map_err(bad)?;
            check_text("customer.address", &c.address, 200).map_err(bad)?;
            tx.execute(
                "INSERT INTO customers (name, phone, address, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![c.name, c.phone, c.address, now],
            )?;
            tx.last_insert_rowid()
        }
        _ => {
            return Err(bad(
                "expected exactly one of customer_id or customer {name, phone, address}".into(),
            ));
        }
    };
    if !new.items.is_empty() {
        let sum = items_total(&tx, &new.items)?;
        if sum != new.total {
            return Err(bad(format!(
                "total: expected the items' sum {sum}, found {}",
                new.total
            )));
        }
    }
    let id = insert_sale(&tx, customer_id, new.total, now, &new.items)?;
    tx.commit()?;
    // Committed just above: not finding it is the database's failure.
    sale(conn, id)?.ok_or(SaleError::Database(rusqlite::Error::QueryReturnedNoRows))
}

/// The items' sum; a database failure is not the client's, so it stays one.
fn items_total(conn: &Connection, items: &[NewItem]) -> Result<Cents, SaleError> {
    let bad = |m: String| SaleError::Invalid(m);
    let mut sum = 0i64;
    let mut seen = Vec::new();
    for item in items {
        if !(1..=1000).contains(&item.quantity) {
            return Err(bad(format!(
                "items: quantity expected 1 to 1000, found {}",
                item.quantity
            )));
        }
        if seen.contains(&item.product_id) {
            return Err(bad(format!(
                "items: product {} listed twice; give its quantity once",
                item.product_id
            )));
        }
        seen.push(item.product_id);
        let price: i64 = conn
            .prepare_cached("SELECT price_cents FROM products WHERE id = ?1")?
            .query_row([item.product_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| bad(format!("items: no product {}", item.product_id)))?;
        sum += price * i64::from(item.quantity);
    }
    Ok(Cents(sum))
}

fn insert_sale(
    tx: &Connection,
    customer_id: i64,
    total: Cents,
    date: i64,
    items: &[NewItem],
) -> Result<i64, rusqlite::Error> {
    tx.execute(
        "INSERT INTO sales (customer_id, total_cents, currency, date) VALUES (?1, ?2, ?3, ?4)",
        params![customer_id, total.0, CURRENCY, date],
    )?;
    let id = tx.last_insert_rowid();
    for item in items {
        tx.execute(
            "INSERT INTO sale_items (sale_id, product_id, quantity, unit_price_cents) \
             SELECT ?1, id, ?3, price_cents FROM products WHERE id = ?2",
            params![id, item.product_id, item.quantity],
        )?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::RIDE_THRESHOLD;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn =
            crate::db::open(&dir.path().join("s.db"), ServiceKind::Store, 1_795_548_840).unwrap();
        (dir, conn)
    }

    #[test]
    fn sample_sales_straddle_the_threshold_and_the_last_is_above() {
        let (_dir, conn) = db();
        let sales = recent_sales(&conn, 100).unwrap();
        assert_eq!(sales.len(), SALES.len());
        assert!(sales[0].sale.total > RIDE_THRESHOLD, "{:?}", sales[0]);
        assert!(sales.iter().any(|s| s.sale.total < RIDE_THRESHOLD));
        assert!(sales.iter().any(|s| s.sale.total == RIDE_THRESHOLD));
        let last = read(&conn, "sales/last", b"").unwrap();
        assert_eq!(last["sale_id"], sales[0].sale.sale_id);
        assert_eq!(last["total"], "177.90");
        assert_eq!(last["currency"], "USD");
        let keys: Vec<&String> = last.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["currency", "customer", "date", "sale_id", "total"]);
        assert!(matches!(
            read(&conn, "sales/1", b""),
            Err(BusinessError::UnknownResource(_))
        ));
    }

    #[test]
    fn new_sales_become_the_last_and_are_checked() {
        let (_dir, mut conn) = db();
        let new: NewSale = serde_json::from_str(
            r#"{"customer": {"name": "Ada Byrne", "phone": "+15550100299", "address": "1 Mill Lane"}, "total": "120.00"}"#,
        )
        .unwrap();
        let view = add_sale(&mut conn, &new, 1_795_549_000).unwrap();
        assert_eq!(view.sale.total, Cents(120 * 100));
        let last = read(&conn, "sales/last", b"{}").unwrap();
        assert_eq!(last["customer"]["name"], "Ada Byrne");
        assert_eq!(last["total"], "120.00");

        let with_items: NewSale = serde_json::from_str(
            r#"{"customer_id": 2, "total": "49.00", "items": [{"product_id": 3, "quantity": 2}]}"#,
        )
        .unwrap();
        assert_eq!(add_sale(&mut conn, &with_items, 0).unwrap().items.len(), 1);

        for (body, needle) in [
            (r#"{"total": "10.00"}"#, "exactly one of"),
            (r#"{"customer_id": 99, "total": "10.00"}"#, "no customer 99"),
            (
                r#"{"customer_id": 1, "total": "10.00", "items": [{"product_id": 3, "quantity": 2}]}"#,
                "expected the items' sum 49.00",
            ),
            (
                r#"{"customer_id": 1, "total": "10.00", "items": [{"product_id": 42, "quantity": 1}]}"#,
                "no product 42",
            ),
            (
                r#"{"customer": {"name": "A", "phone": "12", "address": "x"}, "total": "1.00"}"#,
                "customer.phone",
            ),
        ] {
            let new: NewSale = serde_json::from_str(body).unwrap();
            let err = add_sale(&mut conn, &new, 0).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert_eq!(recent_sales(&conn, 100).unwrap().len(), SALES.len() + 2);
    }
}
