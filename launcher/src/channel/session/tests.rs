//! The session against a program played by the test over a real socketpair.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::*;
use crate::channel::frame::{DEFAULT_MAX_FRAME, decode};

const WAIT: Duration = Duration::from_secs(20);

/// Answers at once, except `READ` of service `slow`, which waits for `release`.
#[derive(Default)]
struct Fake {
    hellos: AtomicUsize,
    started: AtomicUsize,
    release: Notify,
}

impl Handler for Fake {
    async fn hello(&self, hello: Hello) -> Result<Arc<str>, Nack> {
        self.hellos.fetch_add(1, Ordering::SeqCst);
        if hello.csr == b"bad" {
            return Err(Nack::new(NackCode::BadCsr, "CSR does not parse"));
        }
        Ok(Arc::from("CHAIN"))
    }

    async fn read(&self, chain: Arc<str>, call: ServiceCall) -> Result<Vec<u8>, Nack> {
        assert_eq!(&*chain, "CHAIN");
        self.started.fetch_add(1, Ordering::SeqCst);
        if call.service == "slow" {
            self.release.notified().await;
        }
        match call.service.as_str() {
            "huge" => return Ok(vec![0; 60 * 1024]),
            "too-large" => return Ok(vec![0; 70 * 1024]),
            _ => {}
        }
        let mut out = call.collection.into_bytes();
        out.extend_from_slice(&call.request);
        Ok(out)
    }

    async fn write(&self, _chain: Arc<str>, call: ServiceCall) -> Result<Vec<u8>, Nack> {
        if call.service == "denied" {
            return Err(Nack::new(NackCode::ServiceDenied, "proof"));
        }
        Ok(Vec::new())
    }

    async fn service_cert(&self, service: String) -> Result<String, Nack> {
        Ok(format!("CERT {service}"))
    }
}

struct Program {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Program {
    async fn send(&mut self, corr: u32, message: Message) {
        let bytes = encode(&Frame { corr, message }).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((decoded, used)) = decode(&self.buf, DEFAULT_MAX_FRAME).unwrap() {
                    self.buf.drain(..used);
                    match decoded {
                        Decoded::Frame(frame) => return frame,
                        other => panic!("launcher sent {other:?}"),
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the launcher closed the channel");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("no answer from the launcher")
    }

    async fn hello(&mut self) {
        self.send(
            1,
            Message::Hello {
                csr: b"csr".to_vec(),
                sdk_version: "test".into(),
                cheri_bounds: String::new(),
            },
        )
        .await;
        let answer = self.recv().await;
        assert_eq!(
            answer.message,
            Message::Cert {
                chain_pem: "CHAIN".into()
            }
        );
    }
}

fn start(handler: Arc<Fake>, max_in_flight: usize) -> (Session, Program) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let session = Session::start(
        ours,
        handler,
        SessionConfig {
            max_frame: MIN_FRAME,
            max_in_flight,
            log_limit: 128,
        },
    );
    (
        session,
        Program {
            stream: theirs,
            buf: Vec::new(),
        },
    )
}

const MIN_FRAME: u32 = crate::channel::MIN_MAX_FRAME;

fn read(service: &str, resource: &str) -> Message {
    Message::Read {
        service: service.into(),
        resource: resource.into(),
        request: b"!".to_vec(),
    }
}

fn nack_code(frame: &Frame) -> &str {
    match &frame.message {
        Message::Nack { code, .. } => code,
        other => panic!("expected NACK, got {other:?}"),
    }
}

#[tokio::test]
async fn hello_first_and_once() {
    let fake = Arc::new(Fake::default());
    let (session, mut program) = start(fake.clone(), 4);
    program.send(5, read("store", "sales")).await;
    let answer = program.recv().await;
    assert_eq!((answer.corr, nack_code(&answer)), (5, "hello_required"));
    program
        .send(
            1,
            Message::Hello {
                csr: b"bad".to_vec(),
                sdk_version: String::new(),
                cheri_bounds: String::new(),
            },
        )
        .await;
    assert_eq!(nack_code(&program.recv().await), "bad_csr");
    program.hello().await;
    program
        .send(
            2,
            Message::Hello {
                csr: b"csr".to_vec(),
                sdk_version: String::new(),
                cheri_bounds: String::new(),
            },
        )
        .await;
    let again = program.recv().await;
    assert_eq!((again.corr, nack_code(&again)), (2, "already_certified"));
    assert_eq!(fake.hellos.load(Ordering::SeqCst), 2);
    program.send(3, read("store", "sales")).await;
    assert_eq!(
        program.recv().await,
        Frame {
            corr: 3,
            message: Message::Data {
                response: b"sales!".to_vec()
            }
        }
    );
    program
        .send(
            4,
            Message::ServiceCert {
                service: "taxi".into(),
            },
        )
        .await;
    assert_eq!(
        program.recv().await.message,
        Message::Cert {
            chain_pem: "CERT taxi".into()
        }
    );
    program
        .send(
            6,
            Message::Write {
                service: "denied".into(),
                resource: "trips".into(),
                request: vec![],
            },
        )
        .await;
    let denied = program.recv().await;
    assert_eq!(
        denied.message,
        Message::Nack {
            code: "service_denied".into(),
            reason: "proof".into()
        }
    );
    session.finish(WAIT).await;
}

#[tokio::test]
async fn ids_services_and_collections_are_checked() {
    let (session, mut program) = start(Arc::new(Fake::default()), 4);
    program.hello().await;
    program.send(0, read("store", "sales")).await;
    assert_eq!(nack_code(&program.recv().await), "invalid_correlation_id");
    program.send(7, read("Store!", "sales")).await;
    assert_eq!(nack_code(&program.recv().await), "unknown_service");
    for bad in ["replies/+5555", "", "..", "a b"] {
        program.send(8, read("store", bad)).await;
        let answer = program.recv().await;
        assert_eq!(nack_code(&answer), "bad_request", "{bad:?}");
        if let Message::Nack { reason, .. } = &answer.message {
            assert!(!reason.contains("5555"), "the path is not echoed: {reason}");
        }
    }
    session.finish(WAIT).await;
}

#[tokio::test]
async fn unknown_and_misdirected_frames_get_error_and_the_channel_goes_on() {
    let (session, mut program) = start(Arc::new(Fake::default()), 4);
    program
        .raw(&hex::decode("42000000050000000578").unwrap())
        .await;
    let error = program.recv().await;
    assert_eq!(error.corr, 5);
    assert!(matches!(&error.message, Message::Error { reason } if reason.contains("0x42")));
    program.raw(&[0x7f, 0, 0, 0, 0]).await;
    assert_eq!(program.recv().await.corr, 0);
    program.send(9, Message::Data { response: vec![] }).await;
    let error = program.recv().await;
    assert!(
        matches!(&error.message, Message::Error { reason } if reason.contains("DATA (0x82)")),
        "{error:?}"
    );
    program.hello().await;
    session.finish(WAIT).await;
}

#[tokio::test]
async fn a_malformed_frame_is_a_protocol_error() {
    let (mut session, mut program) = start(Arc::new(Fake::default()), 4);
    program.hello().await;
    program
        .raw(&hex::decode("020000000d000000010000006373746f7265").unwrap())
        .await;
    let reason = tokio::time::timeout(WAIT, session.protocol_error())
        .await
        .unwrap();
    assert!(reason.contains("malformed READ (0x02) frame"), "{reason}");
    session.finish(WAIT).await;
}

#[tokio::test]
async fn an_oversized_header_is_a_protocol_error_before_any_payload() {
    let (mut session, mut program) = start(Arc::new(Fake::default()), 4);
    let mut header = vec![0x03];
    header.extend_from_slice(&(MIN_FRAME + 1).to_be_bytes());
    program.raw(&header).await;
    let reason = tokio::time::timeout(WAIT, session.protocol_error())
        .await
        .unwrap();
    assert!(reason.contains("oversized"), "{reason}");
    assert!(
        reason.contains(&format!("expected at most {MIN_FRAME}")),
        "{reason}"
    );
    session.finish(WAIT).await;
}

#[tokio::test]
async fn answers_come_out_of_order_and_in_flight_ids_are_unique() {
    let fake = Arc::new(Fake::default());
    let (session, mut program) = start(fake.clone(), 4);
    program.hello().await;
    program.send(10, read("slow", "sales")).await;
    program.send(10, read("store", "sales")).await;
    let dup = program.recv().await;
    assert_eq!((dup.corr, nack_code(&dup)), (10, "invalid_correlation_id"));
    program.send(11, read("store", "other")).await;
    let fast = program.recv().await;
    assert_eq!(fast.corr, 11, "the later request overtakes the slow one");
    fake.release.notify_one();
    let slow = program.recv().await;
    assert_eq!(slow.corr, 10);
    // Its id is free again.
    program.send(10, read("store", "again")).await;
    assert_eq!(program.recv().await.corr, 10);
    session.finish(WAIT).await;
}

#[tokio::test]
async fn at_most_max_in_flight_then_the_channel_is_not_read() {
    let fake = Arc::new(Fake::default());
    let (session, mut program) = start(fake.clone(), 3);
    program.hello().await;
    for corr in 100..110 {
        program.send(corr, read("slow", "sales")).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while fake.started.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first 3 never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Give the session every chance to read more than it may.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.started.load(Ordering::SeqCst), 3);
    for answered in 1..=10 {
        fake.release.notify_one();
        program.recv().await;
        let started = fake.started.load(Ordering::SeqCst);
        assert!(
            started <= answered + 3,
            "{started} started after {answered} answers"
        );
    }
    session.finish(WAIT).await;
}

#[tokio::test]
async fn a_program_that_never_reads_blocks_only_itself() {
    let fake = Arc::new(Fake::default());
    let (session, mut program) = start(fake.clone(), 2);
    program.hello().await;
    // Large answers fill the socket buffers; the program reads none of them.
    for corr in 1000..1050 {
        program.send(corr, read("huge", "sales")).await;
    }
    // Time for the launcher to do all it can (waiting, not a timing assertion).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = fake.started.load(Ordering::SeqCst);
    assert!(
        started < 50,
        "{started} of 50 requests started although no answer was read: no backpressure"
    );
    // The launcher can still end the session.
    let log = tokio::time::timeout(WAIT, session.finish(WAIT))
        .await
        .unwrap();
    assert!(log.bytes.is_empty());
    drop(program);
}

#[tokio::test]
async fn log_lines_are_kept_with_their_level_and_bounded() {
    let (session, mut program) = start(Arc::new(Fake::default()), 2);
    program
        .send(
            0,
            Message::Log {
                level: 2,
                text: "reading the sale".into(),
            },
        )
        .await;
    program
        .send(
            0,
            Message::Log {
                level: 9,
                text: "odd".into(),
            },
        )
        .await;
    program
        .send(
            0,
            Message::Error {
                reason: "gave up".into(),
            },
        )
        .await;
    program
        .send(
            0,
            Message::Log {
                level: 0,
                text: "x".repeat(100),
            },
        )
        .await;
    // A request after the LOGs proves they were read.
    program.hello().await;
    let log = session.finish(WAIT).await;
    let text = String::from_utf8_lossy(&log.bytes);
    assert!(
        text.starts_with("[info] reading the sale\n[level 9] odd\n"),
        "{text}"
    );
    assert!(text.contains("the program sent ERROR: gave up"), "{text}");
    assert_eq!(log.bytes.len(), 128);
    assert!(log.truncated);
}

#[tokio::test]
async fn an_answer_too_large_for_a_frame_becomes_a_nack() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let session = Session::start(
        ours,
        Arc::new(Fake::default()),
        SessionConfig {
            max_frame: MIN_FRAME,
            max_in_flight: 2,
            log_limit: 0,
        },
    );
    let mut program = Program {
        stream: theirs,
        buf: Vec::new(),
    };
    program.hello().await;
    program.send(3, read("too-large", "sales")).await;
    let answer = program.recv().await;
    assert_eq!(nack_code(&answer), "service_error");
    session.finish(WAIT).await;
}

#[tokio::test]
async fn a_closed_channel_ends_the_session_quietly() {
    let (mut session, mut program) = start(Arc::new(Fake::default()), 2);
    program.hello().await;
    // Half a frame, then the program goes away: not a protocol error.
    program.raw(&[0x02, 0, 0, 0, 9, 0]).await;
    drop(program);
    let fatal = tokio::time::timeout(Duration::from_millis(300), session.protocol_error()).await;
    assert!(fatal.is_err());
    session.finish(WAIT).await;
}
