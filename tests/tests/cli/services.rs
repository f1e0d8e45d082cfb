//! `services list|add|remove` against the launcher's `/v1/services`.

use attestable_data::pki::CertificateAuthority;
use attestable_tests::Launcher;

use crate::{Env, expect};

#[test]
fn services_are_added_listed_and_removed() {
    let env = Env::new();
    let launcher = Launcher::start();
    let cli = || env.cli(&launcher);
    let ca = CertificateAuthority::create_root("services CA", Some("case study"), 2).unwrap();
    let ca_file = env.file("services-ca.pem", ca.certificate().to_pem().unwrap());
    let ca_file = ca_file.to_str().unwrap();

    let before = expect(cli(), &["--json", "services", "list"], 0).json();
    let known = before.as_array().expect("a list of services").len();

    let out = expect(
        cli(),
        &[
            "services",
            "add",
            "store",
            "--url",
            "https://127.0.0.1:8000",
            "--ca",
            ca_file,
        ],
        0,
    );
    assert_eq!(
        out.stdout,
        "Registered service store at https://127.0.0.1:8000.\n"
    );
    let added = expect(
        cli(),
        &[
            "--json",
            "services",
            "add",
            "taxi",
            "--url",
            "https://127.0.0.1:8001",
            "--ca",
            ca_file,
        ],
        0,
    )
    .json();
    assert_eq!(added["id"], "taxi", "{added}");

    let list = expect(cli(), &["services", "list"], 0).stdout;
    assert!(
        list.contains("store") && list.contains("https://127.0.0.1:8000"),
        "{list}"
    );
    assert!(
        list.contains("CA \"O=case study, CN=services CA\""),
        "{list}"
    );
    let list = expect(cli(), &["--json", "services", "list"], 0).json();
    assert_eq!(list.as_array().unwrap().len(), known + 2, "{list}");

    let out = expect(cli(), &["services", "remove", "store"], 0);
    assert_eq!(out.stdout, "Removed service store.\n");
    let out = expect(cli(), &["--json", "services", "remove", "taxi"], 0);
    assert_eq!(out.json(), serde_json::json!({"removed": "taxi"}));
    let out = expect(cli(), &["services", "remove", "taxi"], 1);
    assert!(out.stderr.contains("taxi"), "{}", out.stderr);

    // Checked before anything is sent.
    let out = expect(
        cli(),
        &[
            "services",
            "add",
            "../runs",
            "--url",
            "https://x",
            "--ca",
            ca_file,
        ],
        1,
    );
    assert!(
        out.stderr.contains("expected 1 to 64 characters"),
        "{}",
        out.stderr
    );
    let not_pem = env.file("not.pem", "hello");
    let out = expect(
        cli(),
        &[
            "services",
            "add",
            "x",
            "--url",
            "https://x",
            "--ca",
            not_pem.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        out.stderr.contains("holds no PEM certificate"),
        "{}",
        out.stderr
    );
}
