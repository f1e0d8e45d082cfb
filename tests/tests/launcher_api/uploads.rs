//! Upload rules; a rejected upload leaves no file and no row behind.

use std::path::Path;

use attestable_tests::{Launcher, LauncherOptions, expect, files_under};
use serde_json::json;

/// Nothing stored: no programs, no blobs, no staging files.
async fn assert_nothing_stored(launcher: &Launcher) {
    assert_eq!(launcher.get("/v1/programs", 200).await, json!([]));
    let store = launcher.data_dir().join("store");
    let files = files_under(&store);
    assert!(files.is_empty(), "left behind: {files:?}");
}

fn source_of_size(size: usize) -> Vec<u8> {
    let mut text = b"int main(void) { return 0; }\n".to_vec();
    text.resize(size, b' ');
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_are_413_and_leave_nothing() {
    let launcher = Launcher::start_with(LauncherOptions {
        config: Some("[uploads]\nmax_bytes = 4096\n".into()),
        ..Default::default()
    });
    let body = expect(launcher.upload("big.c", source_of_size(4097)).await, 413).await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("4096"),
        "{body}"
    );
    assert_nothing_stored(&launcher).await;
    // Far over the limit too.
    let body = expect(
        launcher.upload("huge.c", source_of_size(512 * 1024)).await,
        413,
    )
    .await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_nothing_stored(&launcher).await;
    // Exactly at the limit is fine.
    launcher.upload_ok("fits.c", source_of_size(4096)).await;
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_is_16_mib() {
    let launcher = Launcher::start();
    let limit = 16 * 1024 * 1024;
    let body = expect(
        launcher.upload("big.c", source_of_size(limit + 1)).await,
        413,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16777216"),
        "{body}"
    );
    assert_nothing_stored(&launcher).await;
    let program = launcher.upload_ok("max.c", source_of_size(limit)).await;
    assert_eq!(program["size"], limit);
    launcher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_contents_are_400() {
    let launcher = Launcher::start();
    let ok = b"int main(void) { return 0; }\n".to_vec();
    for (name, why) in [
        ("../x.c", "folder separator"),
        ("/etc/x.c", "folder separator"),
        ("dir/x.c", "folder separator"),
        ("x.txt", "must end in"),
        ("x", "must end in"),
        (".c", "may not start"),
        ("-o.c", "may not start"),
        ("a b.c", "contains ' '"),
    ] {
        let body = expect(launcher.upload(name, ok.clone()).await, 400).await;
        assert_eq!(body["error"]["code"], "invalid_upload", "{name}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{name}: {message}");
    }
    for (contents, why) in [
        (
            b"int main(void) { return 0; }\xff\n".to_vec(),
            "not valid UTF-8 (at byte 28)",
        ),
        (b"int main(void) {\0}".to_vec(), "NUL byte (at byte 16)"),
        (Vec::new(), "empty"),
    ] {
        let body = expect(launcher.upload("x.c", contents).await, 400).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }
    // No `file` field, no file name, two files, not multipart.
    let c = launcher.client();
    let url = launcher.url("/v1/programs");
    let other = reqwest::multipart::Form::new().text("other", "x");
    let body = expect(c.post(&url).multipart(other).send().await.unwrap(), 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no multipart field named \"file\"")
    );
    let nameless =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(ok.clone()));
    let body = expect(c.post(&url).multipart(nameless).send().await.unwrap(), 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no file name")
    );
    let two = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(ok.clone()).file_name("a.c"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(ok.clone()).file_name("b.c"),
        );
    let body = expect(c.post(&url).multipart(two).send().await.unwrap(), 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than one")
    );
    let plain = c
        .post(&url)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    let body = expect(plain, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart"),
        "{body}"
    );
    assert_nothing_stored(&launcher).await;
    assert!(
        !Path::new(&launcher.data_dir().join("store/tmp"))
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
    launcher.stop();
}
