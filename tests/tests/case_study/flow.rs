//! The case study as designed: a sale above 150.00 books a trip and
//! messages the customer; at or below it nothing happens; a customer who
//! declines is never recorded as accepting.

use attestable_tests::mock::MockOptions;

use crate::{CaseStudy, integration_source, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_above_150_books_a_trip_and_messages_the_customer() {
    let cs = CaseStudy::start(MockOptions::default()).await;
    let (program, exe) = cs.build(integration_source()).await;
    cs.approve(&exe);
    let before = cs.counts();
    let sale = cs.new_sale(2, "189.90").await;
    let customer = &sale["customer"];
    let (phone, address) = (
        customer["phone"].as_str().unwrap(),
        customer["address"].as_str().unwrap(),
    );

    let run = cs.run(program, &[]).await;
    assert_eq!(run["status"], "exited", "{}", output(&run));
    assert_eq!(run["exit_code"], 0, "{}", output(&run));
    assert_eq!(run["executable_sha256"], exe.as_str());
    let stdout = run["stdout"].as_str().unwrap();
    let sale_id = sale["sale_id"].as_i64().unwrap();
    assert!(
        stdout.contains(&format!(
            "step 2: read the last sale from the store: sale {sale_id}, total 189.90 USD"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("step 3: 189.90 is above 150.00"),
        "{stdout}"
    );

    // The taxi's database: one new trip, from the store to this customer.
    let taxi = cs.db("taxi");
    let (trip_id, origin, destination, trip_phone, paid_by, plate, driver): (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = taxi
        .query_row(
            "SELECT t.id, t.origin, t.destination, t.customer_phone, t.fare_paid_by, v.plate, d.name \
             FROM trips t JOIN vehicles v ON v.id = t.vehicle_id JOIN drivers d ON d.id = t.driver_id \
             ORDER BY t.id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .expect("a trip row");
    assert_eq!(
        (
            origin.as_str(),
            destination.as_str(),
            trip_phone.as_str(),
            paid_by.as_str()
        ),
        ("Acme Store", address, phone, "Acme Store")
    );
    assert!(
        stdout.contains(&format!(
            "step 4: booked trip {trip_id} with the taxi service: taxi {plate}"
        )),
        "{stdout}"
    );

    // The messaging database: the message to this customer names the taxi
    // and the driver, and the customer's reply to it is ACCEPT.
    let messaging = cs.db("messaging");
    let (message_id, text, reply): (i64, String, Option<String>) = messaging
        .query_row(
            "SELECT m.id, m.text, r.reply FROM messages m LEFT JOIN replies r ON r.message_id = m.id \
             WHERE m.phone = ?1 ORDER BY m.id DESC LIMIT 1",
            [phone],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a message row");
    assert!(text.contains(&plate) && text.contains(&driver), "{text}");
    assert_eq!(reply.as_deref(), Some("ACCEPT"));
    assert!(
        stdout.contains(&format!(
            "step 5: messaged the customer (message {message_id})"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("step 6: read the customer's reply: ACCEPT"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "outcome: ride booked for sale {sale_id} (trip {trip_id}, taxi {plate}); the customer accepted"
        )),
        "{stdout}"
    );
    let after = cs.counts();
    assert_eq!(
        (after.trips, after.messages, after.accepted),
        (before.trips + 1, before.messages + 1, before.accepted + 1)
    );

    // The launcher's view: a certificate, and every call relayed and answered.
    let id = run["id"].as_i64().unwrap();
    let chain = cs
        .launcher
        .client()
        .get(cs.launcher.url(&format!("/v1/runs/{id}/certificate")))
        .send()
        .await
        .unwrap();
    assert_eq!(chain.status(), 200);
    let calls: Vec<String> = cs
        .calls(&run)
        .await
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c["service"].as_str().unwrap(),
                c["op"].as_str().unwrap(),
                c["resource"].as_str().unwrap(),
                c["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            "store service_cert  ok",
            "store read sales ok",
            "taxi service_cert  ok",
            "taxi write trips ok",
            "messaging service_cert  ok",
            "messaging write messages ok",
            "messaging read replies ok",
        ]
    );
    cs.assert_no_plaintext();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_of_exactly_150_books_nothing() {
    let cs = CaseStudy::start(MockOptions::default()).await;
    let (program, exe) = cs.build(integration_source()).await;
    cs.approve(&exe);
    let sale = cs.new_sale(3, "150.00").await;
    let before = cs.counts();

    let run = cs.run(program, &[]).await;
    assert_eq!(run["exit_code"], 0, "{}", output(&run));
    let stdout = run["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("step 3: 150.00 is not above 150.00: no ride is booked"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "outcome: no ride booked: sale {} totals 150.00 USD, not above 150.00",
            sale["sale_id"]
        )),
        "{stdout}"
    );
    assert_eq!(cs.counts(), before, "no trip, no message");
    let ops: Vec<String> = cs
        .calls(&run)
        .await
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["service"].as_str().unwrap(),
                c["op"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ops,
        ["store service_cert", "store read"],
        "only the store was asked"
    );
    cs.assert_no_plaintext();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_who_declines_is_not_recorded_as_accepting() {
    let cs = CaseStudy::start(MockOptions {
        customer_reply: Some("decline".into()),
        ..Default::default()
    })
    .await;
    let (program, exe) = cs.build(integration_source()).await;
    cs.approve(&exe);
    let sale = cs.new_sale(4, "212.40").await;
    let phone = sale["customer"]["phone"].as_str().unwrap().to_owned();
    let before = cs.counts();

    let run = cs.run(program, &[]).await;
    assert_eq!(run["exit_code"], 0, "{}", output(&run));
    let stdout = run["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("step 6: read the customer's reply: DECLINE"),
        "{stdout}"
    );
    assert!(stdout.contains("; the customer declined\n"), "{stdout}");
    assert!(!stdout.contains("accepted"), "{stdout}");

    let after = cs.counts();
    assert_eq!(
        after.messages,
        before.messages + 1,
        "the customer was messaged"
    );
    assert_eq!(
        after.accepted, before.accepted,
        "no acceptance was recorded"
    );
    let (to, reply): (String, Option<String>) = cs
        .db("messaging")
        .query_row(
            "SELECT m.phone, r.reply FROM messages m LEFT JOIN replies r ON r.message_id = m.id \
             ORDER BY m.id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the newest message");
    assert_eq!(to, phone, "the newest message went to the sale's customer");
    let replies: Vec<String> = reply.into_iter().collect();
    assert_eq!(replies, ["DECLINE"]);
    cs.assert_no_plaintext();
}
