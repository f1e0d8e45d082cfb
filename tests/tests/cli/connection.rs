//! Finding the launcher (flags, variables, config file, data folders) and
//! the messages when it cannot be reached, trusted, or does not know an id.

use attestable_data::pki::CertificateAuthority;
use attestable_tests::Launcher;

use crate::{Env, expect};

#[test]
fn every_way_of_naming_the_launcher_works() {
    let env = Env::new();
    let launcher = Launcher::start();
    let data = launcher.data_dir();
    let url = launcher.url("");
    let token = data.join("api-token");
    let ca = data.join("pki/root.pem");

    // Flags.
    let mut cmd = env.bare();
    cmd.args(["--url", &url, "--token-file", token.to_str().unwrap()])
        .args(["--ca", ca.to_str().unwrap()]);
    expect(cmd, &["programs", "list"], 0);

    // Environment variables.
    let mut cmd = env.bare();
    cmd.env("ATTESTABLE_URL", launcher.addr().to_string())
        .env("ATTESTABLE_TOKEN_FILE", &token)
        .env("ATTESTABLE_CA", &ca);
    expect(cmd, &["programs", "list"], 0);
    let mut cmd = env.bare();
    cmd.env("ATTESTABLE_DATA", &data);
    expect(cmd, &["programs", "list"], 0);

    // A config file, given and at its default place; relative paths are
    // relative to the file.
    std::fs::copy(&token, env.path().join("config/token")).unwrap();
    std::fs::copy(&ca, env.path().join("config/root.pem")).unwrap();
    let config = format!("url = \"{url}\"\ntoken_file = \"token\"\nca = \"root.pem\"\n");
    let file = env.file("config/attestable.toml", &config);
    let mut cmd = env.bare();
    cmd.arg("--config").arg(&file);
    expect(cmd, &["programs", "list"], 0);
    std::fs::create_dir_all(env.path().join("config/attestable")).unwrap();
    std::fs::copy(&token, env.path().join("config/attestable/token")).unwrap();
    std::fs::copy(&ca, env.path().join("config/attestable/root.pem")).unwrap();
    env.file("config/attestable/config.toml", &config);
    expect(env.bare(), &["programs", "list"], 0);
    std::fs::remove_file(env.path().join("config/attestable/config.toml")).unwrap();

    // The default data folders: $XDG_DATA_HOME/attestable-launcher, and
    // ./attestable-demo/launcher before it.
    std::os::unix::fs::symlink(&data, env.path().join("data/attestable-launcher")).unwrap();
    expect(env.bare(), &["programs", "list"], 0);
    std::fs::create_dir_all(env.cwd().join("attestable-demo")).unwrap();
    std::os::unix::fs::symlink(&data, env.cwd().join("attestable-demo/launcher")).unwrap();
    expect(env.bare(), &["programs", "list"], 0);
}

#[test]
fn failures_say_what_failed_and_what_to_do() {
    let env = Env::new();

    // Nothing configured, no data folder.
    let out = expect(env.bare(), &["programs", "list"], 1);
    assert!(out.stderr.contains("no launcher found"), "{}", out.stderr);
    assert!(
        out.stderr.contains("attestable-demo/launcher")
            && out.stderr.contains("launcher serve --data"),
        "{}",
        out.stderr
    );

    let launcher = Launcher::start();
    let data = launcher.data_dir();

    // Unknown ids, in text and JSON.
    for (args, needle) in [
        (&["programs", "show", "99"][..], "program 99 not found"),
        (&["programs", "delete", "99"], "program 99 not found"),
        (&["build", "99"], "program 99 not found"),
        (&["run", "99"], "program 99 not found"),
        (&["runs", "show", "99"], "run 99 not found"),
        (&["runs", "cancel", "99"], "run 99 not found"),
    ] {
        let out = expect(env.cli(&launcher), args, 1);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("`attestable "),
            "{args:?}: {}",
            out.stderr
        );
    }
    let mut cmd = env.cli(&launcher);
    cmd.arg("--json");
    let error = expect(cmd, &["runs", "show", "99"], 1).json_error();
    assert_eq!(error["error"]["code"], "not_found");

    // A wrong token names the file it came from.
    let bad = env.file("wrong-token", "0123456789abcdef\n");
    let mut cmd = env.cli(&launcher);
    cmd.arg("--token-file").arg(&bad);
    let out = expect(cmd, &["programs", "list"], 1);
    assert!(
        out.stderr.contains("rejected the API token"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(bad.to_str().unwrap()), "{}", out.stderr);

    // A CA that did not issue the launcher's certificate: a TLS error naming the file.
    let other = CertificateAuthority::create_root("someone else", None, 1).unwrap();
    let other_pem = env.file("other-root.pem", other.certificate().to_pem().unwrap());
    let mut cmd = env.cli(&launcher);
    cmd.arg("--ca").arg(&other_pem);
    let out = expect(cmd, &["programs", "list"], 1);
    assert!(
        out.stderr.contains("TLS with the launcher at"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("certificate verify failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(other_pem.to_str().unwrap()),
        "{}",
        out.stderr
    );
    let mut cmd = env.cli(&launcher);
    cmd.args(["--json", "--ca"]).arg(&other_pem);
    assert_eq!(
        expect(cmd, &["platform"], 1).json_error()["error"]["code"],
        "tls"
    );

    // The launcher goes away: its data folder no longer has an address…
    let addr = launcher.addr();
    let token = data.join("api-token");
    let ca = data.join("pki/root.pem");
    let kept = launcher.stop();
    let data = kept.path().join("data");
    let mut cmd = env.bare();
    cmd.arg("--data").arg(&data);
    let out = expect(cmd, &["programs", "list"], 1);
    assert!(out.stderr.contains("is not running"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("launcher serve --data {}", data.display())),
        "{}",
        out.stderr
    );
    // …and its address refuses connections.
    let mut cmd = env.bare();
    cmd.args(["--url", &format!("https://{addr}")])
        .arg("--token-file")
        .arg(&token)
        .arg("--ca")
        .arg(&ca);
    let out = expect(cmd, &["programs", "list"], 1);
    assert!(
        out.stderr.contains(&format!(
            "cannot connect to the launcher at https://{addr}: connection refused"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("launcher serve --data"),
        "{}",
        out.stderr
    );
    // Offline commands need no launcher.
    expect(env.bare(), &["completions", "bash"], 0);
}
