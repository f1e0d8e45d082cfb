//! The messaging provider: messages and the customers' replies. Attested
//! write `messages` delivers a message at once, and the simulated customer
//! answers it as configured (`ACCEPT`, `DECLINE`, or not at all); attested
//! read `replies/<phone>` gives the answer to the latest message to that phone.

use attestable_data::encoding::UnixTime;
use attestable_data::policy::Op;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::business::{self, BusinessError, check_phone, check_text};
use crate::config::Settings;
use crate::db::{DbError, SqlContext};
use crate::kind::ServiceKind;

const SCHEMA: &str = "
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX messages_phone ON messages(phone, id);
CREATE TABLE replies (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    reply TEXT NOT NULL CHECK (reply IN ('ACCEPT', 'DECLINE')),
    at INTEGER NOT NULL
);
";

/// Earlier traffic: (phone, text, reply, days ago).
const HISTORY: &[(&str, &str, Option<&str>, i64)] = &[
    (
        "+15550100311",
        "Your order is ready for collection.",
        None,
        6,
    ),
    (
        "+15550100312",
        "A taxi is on its way. Reply ACCEPT to confirm.",
        Some("ACCEPT"),
        3,
    ),
    (
        "+15550100313",
        "A taxi is on its way. Reply ACCEPT to confirm.",
        Some("DECLINE"),
        1,
    ),
];

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Creates the tables and the sample history.
pub fn create(tx: &Transaction<'_>, now: i64) -> Result<(), DbError> {
    tx.execute_batch(SCHEMA).context("messaging schema")?;
    for (phone, text, reply, days_ago) in HISTORY {
        let at = now - days_ago * 86_400;
        tx.execute(
            "INSERT INTO messages (phone, text, sent_at, delivered_at) VALUES (?1, ?2, ?3, ?3)",
            params![phone, text, at],
        )
        .context("sample messages")?;
        if let Some(reply) = reply {
            tx.execute(
                "INSERT INTO replies (message_id, reply, at) VALUES (?1, ?2, ?3)",
                params![tx.last_insert_rowid(), reply, at + 40],
            )
            .context("sample replies")?;
        }
    }
    Ok(())
}

/// The payload of a `messages` write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Who gets it.
    pub phone: String,
    /// What it says.
    pub text: String,
}

/// The answer to a `replies/<phone>` read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// `ACCEPT`, `DECLINE`, or `null` when the customer has not answered.
    pub reply: Option<String>,
    /// When they answered.
    pub at: Option<UnixTime>,
}

/// Attested write.
pub fn write(
    conn: &mut Connection,
    settings: &Settings,
    resource: &str,
    payload: &[u8],
    now: i64,
) -> Result<serde_json::Value, BusinessError> {
    if resource != "messages" {
        return Err(business::unknown(
            ServiceKind::Messaging,
            Op::Write,
            resource,
        ));
    }
    let message: NewMessage = business::parse_payload("messages", payload)?;
    check_phone("messages phone", &message.phone).map_err(BusinessError::Invalid)?;
    check_text("messages text", &message.text, MAX_TEXT_CHARS).map_err(BusinessError::Invalid)?;
    let tx = conn.transaction()?;
    // Delivery is instant; the simulated customer answers on delivery.
    tx.execute(
        "INSERT INTO messages (phone, text, sent_at, delivered_at) VALUES (?1, ?2, ?3, ?3)",
        params![message.phone, message.text, now],
    )?;
    let message_id = tx.last_insert_rowid();
    if let Some(answer) = settings.customer_reply.answer() {
        tx.execute(
            "INSERT INTO replies (message_id, reply, at) VALUES (?1, ?2, ?3)",
            params![message_id, answer, now],
        )?;
    }
    tx.commit()?;
    Ok(serde_json::json!({ "message_id": message_id }))
}

/// Attested read.
pub fn read(
    conn: &Connection,
    resource: &str,
    payload: &[u8],
) -> Result<serde_json::Value, BusinessError> {
    let phone = match resource.split_once('/') {
        Some(("replies", phone)) => phone,
        _ => {
            return Err(business::unknown(
                ServiceKind::Messaging,
                Op::Read,
                resource,
            ));
        }
    };
    check_phone("replies/<phone>", phone)
        .map_err(|e| BusinessError::UnknownResource(format!("{e}; expected replies/<phone>")))?;
    business::check_read_parameters(payload)?;
    let reply = latest_reply(conn, phone)?;
    Ok(serde_json::to_value(reply).expect("a reply serializes"))
}

fn latest_reply(conn: &Connection, phone: &str) -> Result<Reply, rusqlite::Error> {
    let row = conn
        .prepare_cached(
            "SELECT r.reply, r.at FROM messages m LEFT JOIN replies r ON r.message_id = m.id \
             WHERE m.phone = ?1 ORDER BY m.id DESC LIMIT 1",
        )?
        .query_row([phone], |r| {
            Ok(Reply {
                reply: r.get(0)?,
                at: r.get::<_, Option<i64>>(1)?.map(UnixTime),
            })
        })
        .optional()?;
    Ok(row.unwrap_or(Reply {
        reply: None,
        at: None,
    }))
}

/// A message in the operator's view.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// The message's id.
    pub message_id: i64,
    /// Recipient.
    pub phone: String,
    /// Text.
    pub text: String,
    /// Sent.
    pub sent_at: UnixTime,
    /// Delivered.
    pub delivered_at: Option<UnixTime>,
    /// The customer's answer.
    pub reply: Option<String>,
    /// When they answered.
    pub replied_at: Option<UnixTime>,
}

/// The newest `limit` messages with their replies, newest first.
pub fn recent_messages(conn: &Connection, limit: u32) -> Result<Vec<MessageView>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT m.id, m.phone, m.text, m.sent_at, m.delivered_at, r.reply, r.at FROM messages m \
         LEFT JOIN replies r ON r.message_id = m.id ORDER BY m.id DESC LIMIT ?1",
    )?
    .query_map([limit], |r| {
        Ok(MessageView {
            message_id: r.get(0)?,
            phone: r.get(1)?,
            text: r.get(2)?,
            sent_at: UnixTime(r.get(3)?),
            delivered_at: r.get::<_, Option<i64>>(4)?.map(UnixTime),
            reply: r.get(5)?,
            replied_at: r.get::<_, Option<i64>>(6)?.map(UnixTime),
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomerReply;

    #[test]
    fn the_simulated_customer_answers_the_latest_message_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_795_548_840;
        let mut conn =
            crate::db::open(&dir.path().join("m.db"), ServiceKind::Messaging, now).unwrap();
        let phone = "+15550100201";
        let unanswered = read(&conn, &format!("replies/{phone}"), b"").unwrap();
        assert_eq!(unanswered, serde_json::json!({"reply": null, "at": null}));

        let msg =
            format!(r#"{{"phone": "{phone}", "text": "Taxi KTX4R17 (Rosa) is on its way."}}"#);
        for (mode, expected) in [
            (CustomerReply::Accept, serde_json::json!("ACCEPT")),
            (CustomerReply::Decline, serde_json::json!("DECLINE")),
            (CustomerReply::None, serde_json::Value::Null),
        ] {
            let settings = Settings {
                customer_reply: mode,
                ..Settings::default()
            };
            let sent = write(&mut conn, &settings, "messages", msg.as_bytes(), now).unwrap();
            assert!(sent["message_id"].as_i64().unwrap() > HISTORY.len() as i64);
            let reply = read(&conn, &format!("replies/{phone}"), b"").unwrap();
            assert_eq!(reply["reply"], expected, "{mode}");
        }
        assert_eq!(
            recent_messages(&conn, 100).unwrap().len(),
            HISTORY.len() + 3
        );
        for bad in ["replies", "replies/+1/2", "replies/SECRET", "messages"] {
            let err = read(&conn, bad, b"").unwrap_err();
            assert_eq!(err.status(), 404, "{bad}");
            assert!(!err.to_string().contains("SECRET"));
        }
    }
}
