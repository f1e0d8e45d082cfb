//! The launcher's upload path (`launcher::api::upload::receive`, what
//! `POST /v1/programs` runs) on a multipart body from the fuzzer, delivered in
//! chunks of a size the fuzzer picks, staged into a real `FileStore`.
//!
//! Input: `mode | chunk | rest`. Mode even: `rest` is the whole body under a
//! fixed boundary (the multipart parser and the checks). Mode odd: `rest` is
//! `name_len | name | contents`, wrapped in a well-formed body, and the
//! outcome must be exactly what the documented rules say: a `.c` base name of
//! `[A-Za-z0-9._+-]` not starting with `.` or `-`, at most 255 bytes;
//! non-empty UTF-8 contents without NUL, at most the limit.

#![no_main]

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart};
use axum::http::{Request, header};
use launcher::api::upload::{UploadError, receive, validate_name};
use libfuzzer_sys::fuzz_target;
use programs_db::FileStore;

const BOUNDARY: &str = "fuzz-boundary-7c1f";
/// Small, so that the size limit is reached often.
const LIMIT: u64 = 512;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    files: FileStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Staging fsyncs each accepted file: keep it in memory when we can.
        let dir = tempfile::Builder::new()
            .prefix("fuzz-upload-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary folder");
        let files = FileStore::open(dir.path().join("store")).expect("a file store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Fixture {
            runtime,
            files,
            _dir: dir,
        }
    })
}

/// What the documented rules say about a file named `name` holding
/// `contents`: accepted, or the reasons it may be refused for. Where a file
/// breaks two rules, which one is reported first depends on how the body
/// arrives in chunks, so either is right.
fn expected(name: &str, contents: &[u8]) -> Result<(), Vec<&'static str>> {
    if validate_name(name).is_err() {
        return Err(vec!["name"]);
    }
    let mut why = Vec::new();
    if contents.len() as u64 > LIMIT {
        why.push("size");
    }
    if contents.is_empty() {
        why.push("empty");
    }
    if contents.contains(&0) {
        why.push("nul");
    }
    if std::str::from_utf8(contents).is_err() {
        why.push("utf8");
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

fn kind(err: &UploadError) -> &'static str {
    match err {
        UploadError::BadName(_) => "name",
        UploadError::TooLarge { .. } => "size",
        UploadError::Empty => "empty",
        UploadError::Nul { .. } => "nul",
        UploadError::NotUtf8 { .. } => "utf8",
        _ => "other",
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk % 64) + 1;
    let (body, spec) = if mode % 2 == 0 {
        (rest.to_vec(), None)
    } else {
        let Some((&len, rest)) = rest.split_first() else {
            return;
        };
        let (name, contents) = rest.split_at(usize::from(len).min(rest.len()));
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: text/x-c\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(contents);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        // The outcome is predictable only when the name and contents cannot
        // change the body's structure.
        let plain_name = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        let plain_contents = !contents
            .windows(BOUNDARY.len())
            .any(|w| w == BOUNDARY.as_bytes());
        let spec = (plain_name && !name.is_empty() && plain_contents)
            .then(|| expected(name, contents).map(|()| (name.to_owned(), contents.to_vec())));
        (body, spec)
    };

    let f = fixture();
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/programs")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .expect("a request");
    f.runtime.block_on(async {
        let multipart = Multipart::from_request(request, &())
            .await
            .expect("the content type is multipart");
        let outcome = receive(multipart, &f.files, LIMIT).await;
        match (&outcome, &spec) {
            (Ok(upload), _) => {
                // Whatever the body, an accepted upload obeys every rule.
                assert_eq!(validate_name(&upload.name).as_deref(), Ok(upload.name.as_str()));
                let stored = std::fs::read(upload.blob.path()).expect("the staged file");
                assert_eq!(stored.len() as u64, upload.blob.size());
                assert!(!stored.is_empty() && stored.len() as u64 <= LIMIT);
                assert!(!stored.contains(&0));
                assert!(std::str::from_utf8(&stored).is_ok());
                if let Some(spec) = &spec {
                    let (name, contents) = spec.as_ref().expect("accepted what the rules refuse");
                    assert_eq!(&upload.name, name);
                    assert_eq!(&stored, contents);
                }
            }
            (Err(err), Some(spec)) => {
                assert!(!err.to_string().is_empty());
                match spec {
                    Ok(_) => panic!("refused what the rules accept: {err}"),
                    Err(why) => assert!(
                        why.contains(&kind(err)),
                        "refused for another reason than {why:?}: {err}"
                    ),
                }
            }
            (Err(err), None) => assert!(!err.to_string().is_empty()),
        }
    });
    // Accepted or not, nothing is left in staging once the upload is dropped.
});
