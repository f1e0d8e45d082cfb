//! Confined compiles, the SDK and trust anchor in every build, and
//! reproducible executables.

use attestable_tests::{expect, workspace_root};
use programs_db::Sha256Hex;
use serde_json::{Value, json};

use super::{BEHAVES, built, hostile, start};

/// Builds `program` with `body`, expecting `status`.
async fn build(
    launcher: &attestable_tests::Launcher,
    program: i64,
    body: Value,
    status: u16,
) -> Value {
    expect(launcher.build_with(program, body).await, status).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_includes_fail_to_compile_without_leaking_a_byte() {
    let launcher = start("", &[]);
    let data = launcher.data_dir();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let token = launcher.token().to_owned();

    let mut cases = vec![(
        "include_passwd.c".to_owned(),
        hostile("include_passwd.c"),
        "/etc/passwd".to_owned(),
    )];
    // The launcher's own token and database, named the way the README's
    // `-DSECRET_PATH=…` does.
    for secret in ["api-token", "launcher.db"] {
        let path = data.join(secret).display().to_string();
        let mut source = format!("#define SECRET_PATH \"{path}\"\n").into_bytes();
        source.extend(hostile("include_secret.c"));
        cases.push((
            format!("include_{}.c", secret.replace(['-', '.'], "_")),
            source,
            path,
        ));
    }
    for (name, source, path) in cases {
        let program = launcher.upload_ok(&name, source).await["id"]
            .as_i64()
            .unwrap();
        let body = build(&launcher, program, json!({}), 422).await;
        assert_eq!(body["error"]["code"], "compile_failed", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        let log = body["build"]["log"].as_str().unwrap();
        assert!(
            message.contains(&format!("{path}: Permission denied")),
            "{name}: the log names the permission error: {message}"
        );
        for text in [message, log] {
            assert!(!text.contains(&token), "{name} leaked the token");
            assert!(
                !text.contains("SQLite format"),
                "{name} leaked the database"
            );
            for line in passwd.lines().filter(|l| l.len() > 8) {
                assert!(!text.contains(line), "{name} leaked /etc/passwd: {line}");
            }
        }
        assert_eq!(body["build"]["status"], "failed");
    }
    // Nothing was left behind by the failed builds.
    assert_eq!(std::fs::read_dir(data.join("builds")).unwrap().count(), 0);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_compile_in_the_sdk_and_anchor_and_are_reproducible() {
    let first = start("", &[]);
    let anchor_pem = String::from_utf8(first.root_pem().to_vec()).unwrap();
    let sdk = {
        let root = workspace_root().join("integration-process");
        let mut both = std::fs::read(root.join("attestable.h")).unwrap();
        both.extend(std::fs::read(root.join("attestable.c")).unwrap());
        Sha256Hex::of(&both).to_string()
    };

    // Twice the same program without an anchor: the same bytes.
    let (program, plain) = built(&first, "behaves.c", BEHAVES.as_bytes().to_vec()).await;
    assert_eq!(plain["sdk_sha256"], sdk.as_str(), "{plain}");
    assert_eq!(plain["services_anchor_sha256"], Value::Null);
    let again = build(&first, program, json!({}), 201).await;
    assert_eq!(again["executable_sha256"], plain["executable_sha256"]);
    assert_ne!(
        again["argv"], plain["argv"],
        "each build has its own folder, and the argv says so"
    );
    let argv: Vec<&str> = again["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.iter().any(|a| a.ends_with("/attestable.c")),
        "{argv:?}"
    );
    assert!(
        argv.iter().any(|a| a.ends_with("/attestable_anchor.c")),
        "{argv:?}"
    );
    assert!(
        argv.iter().any(|a| a.starts_with("-ffile-prefix-map=")),
        "{argv:?}"
    );

    // With an anchor: recorded, and part of the executable.
    let anchored = build(
        &first,
        program,
        json!({"services_anchor_pem": anchor_pem}),
        201,
    )
    .await;
    assert_eq!(
        anchored["services_anchor_sha256"],
        Sha256Hex::of(anchor_pem.as_bytes()).as_str()
    );
    assert_ne!(anchored["executable_sha256"], plain["executable_sha256"]);

    // Anything but certificates is refused, saying why.
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    let body = build(&first, program, json!({"services_anchor_pem": key}), 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("found a PRIVATE KEY block"),
        "{body}"
    );

    // Another launcher, another data folder, the anchor from its
    // configuration: the very same executables.
    let dir = tempfile::tempdir().unwrap();
    let anchor_file = dir.path().join("services-ca.pem");
    std::fs::write(&anchor_file, &anchor_pem).unwrap();
    let second = start(
        &format!("services_anchor = \"{}\"\n", anchor_file.display()),
        &[],
    );
    let (other, default_anchored) = built(&second, "behaves.c", BEHAVES.as_bytes().to_vec()).await;
    assert_eq!(
        default_anchored["services_anchor_sha256"],
        anchored["services_anchor_sha256"]
    );
    assert_eq!(
        default_anchored["executable_sha256"], anchored["executable_sha256"],
        "same source, SDK, anchor and profile: same executable"
    );
    let without = build(&second, other, json!({"services_anchor_pem": null}), 201).await;
    assert_eq!(
        without["services_anchor_sha256"], anchored["services_anchor_sha256"],
        "null means the default"
    );
    first.stop();
    second.stop();
}
