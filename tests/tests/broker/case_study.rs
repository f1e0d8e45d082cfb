//! Against the case study's real services (`mock-services`): the store's
//! last sale read and a taxi booked for its customer, through the launcher.

use std::time::{Duration, Instant};

use attestable_tests::channel_programs::{build, field, line, run_id, run_to_end};
use attestable_tests::mock::{MockServices, SERVICES};
use attestable_tests::{Launcher, sha256_hex};

use crate::common::assert_nowhere;

/// Waits until every service has put in force a policy with allow rules.
fn wait_for_policies(mock: &MockServices) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = mock.log();
        let loaded = SERVICES.iter().all(|s| {
            log.lines().any(|l| {
                l.contains("policy reloaded")
                    && l.contains(&format!("service={s}"))
                    && !l.contains("allow_rules=0")
            })
        });
        if loaded {
            return;
        }
        assert!(Instant::now() < deadline, "policies not reloaded:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_sale_is_read_and_a_trip_booked_end_to_end() {
    let launcher = Launcher::start();
    let mock = MockServices::start();
    let root = launcher.data_dir().join("pki/root.pem");
    mock.policy(&[
        "trust-root",
        "--service",
        "all",
        "--ca",
        root.to_str().unwrap(),
    ]);
    let ca = mock.services_ca_pem();
    for service in SERVICES {
        launcher
            .register_service(service, &mock.base_url(service), &ca)
            .await;
    }
    let (program, build) = build(&launcher, "sdk_client.c", Some(&ca)).await;
    let exe = build["executable_sha256"].as_str().unwrap();
    mock.policy(&["allow", "--service", "all", "--sha256", exe]);
    wait_for_policies(&mock);

    let run = run_to_end(
        &launcher,
        program,
        &[
            "read:store:sales/last:customer.name,customer.phone,customer.address,total",
            "write:taxi:trips:trip",
        ],
    )
    .await;
    assert_eq!(run["status"], "exited", "{run}\n{}", mock.log());
    assert_eq!(run["exit_code"], 0, "{run}");

    // What the program decrypted is what the services hold.
    let sales = mock.operator_get("store", "/api/sales?limit=1").await;
    let sale = &sales["sales"][0];
    let customer = &sale["customer"];
    let read = line(&run, "1 read store ok");
    for (key, value) in [
        ("customer.name", &customer["name"]),
        ("customer.phone", &customer["phone"]),
        ("customer.address", &customer["address"]),
        ("total", &sale["total"]),
    ] {
        let value = value.as_str().unwrap_or_else(|| panic!("{key} in {sale}"));
        assert_eq!(field(read, key), sha256_hex(value.as_bytes()), "{key}");
    }
    let trips = mock.operator_get("taxi", "/api/trips?limit=1").await;
    let trip = &trips["trips"][0];
    assert_eq!(trip["customer_phone"], customer["phone"], "{trip}");
    assert_eq!(trip["destination"], customer["address"], "{trip}");
    let booked = line(&run, "2 write taxi ok");
    for key in ["taxi_plate", "driver_name"] {
        let value = trip[key].as_str().unwrap();
        assert_eq!(field(booked, key), sha256_hex(value.as_bytes()), "{key}");
    }

    let calls = launcher
        .get(&format!("/v1/runs/{}/calls", run_id(&run)), 200)
        .await;
    let summary: Vec<String> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c["service"], c["op"], c["resource"], c["outcome"]
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#""store" "service_cert" "" "ok""#,
            r#""store" "read" "sales" "ok""#,
            r#""taxi" "service_cert" "" "ok""#,
            r#""taxi" "write" "trips" "ok""#,
        ]
    );

    let secrets: Vec<Vec<u8>> = [
        &customer["name"],
        &customer["phone"],
        &customer["address"],
        &trip["driver_name"],
        &trip["taxi_plate"],
    ]
    .iter()
    .map(|v| v.as_str().unwrap().as_bytes().to_vec())
    .collect();
    // The search finds these bytes where they are: in the services' databases.
    let control = attestable_tests::files_containing(mock.data_dir(), &secrets);
    assert!(
        control.iter().any(|(_, i)| *i == 1),
        "the customer's phone is in the store's database: {control:?}"
    );
    assert_nowhere(&launcher.data_dir(), &launcher.log(), &secrets);
    launcher.stop();
    mock.stop();
}
