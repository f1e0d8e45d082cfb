use super::*;
use proptest::prelude::*;

const VECTORS: &str = include_str!("../../../../docs/vectors/channel-frames.txt");

/// The fields of a frame as the vector file writes them: integers in
/// decimal, `str` and `bytes` as hex.
fn fields(frame: &Frame) -> Vec<(String, String)> {
    let h = |b: &[u8]| hex::encode(b);
    let mut out = vec![
        (
            "type".to_owned(),
            format!("{:02x}", frame.message.frame_type().code()),
        ),
        ("corr".to_owned(), frame.corr.to_string()),
    ];
    let rest: Vec<(&str, String)> = match &frame.message {
        Message::Hello {
            csr,
            sdk_version,
            cheri_bounds,
        } => vec![
            ("csr", h(csr)),
            ("sdk_version", h(sdk_version.as_bytes())),
            ("cheri_bounds", h(cheri_bounds.as_bytes())),
        ],
        Message::Read {
            service,
            resource,
            request,
        }
        | Message::Write {
            service,
            resource,
            request,
        } => vec![
            ("service", h(service.as_bytes())),
            ("resource", h(resource.as_bytes())),
            ("request", h(request)),
        ],
        Message::ServiceCert { service } => vec![("service", h(service.as_bytes()))],
        Message::Log { level, text } => {
            vec![("level", level.to_string()), ("text", h(text.as_bytes()))]
        }
        Message::Cert { chain_pem } => vec![("chain_pem", h(chain_pem.as_bytes()))],
        Message::Data { response } | Message::Ack { response } => {
            vec![("response", h(response))]
        }
        Message::Nack { code, reason } => vec![
            ("code", h(code.as_bytes())),
            ("reason", h(reason.as_bytes())),
        ],
        Message::Error { reason } => vec![("reason", h(reason.as_bytes()))],
    };
    out.extend(rest.into_iter().map(|(k, v)| (k.to_owned(), v)));
    out
}

/// Builds the frame the vector's fields describe (the inverse of [`fields`]).
fn frame_from_fields(words: &[(String, String)]) -> Frame {
    let get = |k: &str| {
        words
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("vector lacks {k}"))
    };
    let bytes = |k: &str| hex::decode(get(k)).unwrap();
    let text = |k: &str| String::from_utf8(bytes(k)).unwrap();
    let code = u8::from_str_radix(&get("type"), 16).unwrap();
    let message = match FrameType::from_code(code).unwrap() {
        FrameType::Hello => Message::Hello {
            csr: bytes("csr"),
            sdk_version: text("sdk_version"),
            cheri_bounds: text("cheri_bounds"),
        },
        FrameType::Read => Message::Read {
            service: text("service"),
            resource: text("resource"),
            request: bytes("request"),
        },
        FrameType::Write => Message::Write {
            service: text("service"),
            resource: text("resource"),
            request: bytes("request"),
        },
        FrameType::ServiceCert => Message::ServiceCert {
            service: text("service"),
        },
        FrameType::Log => Message::Log {
            level: get("level").parse().unwrap(),
            text: text("text"),
        },
        FrameType::Cert => Message::Cert {
            chain_pem: text("chain_pem"),
        },
        FrameType::Data => Message::Data {
            response: bytes("response"),
        },
        FrameType::Ack => Message::Ack {
            response: bytes("response"),
        },
        FrameType::Nack => Message::Nack {
            code: text("code"),
            reason: text("reason"),
        },
        FrameType::Error => Message::Error {
            reason: text("reason"),
        },
    };
    Frame {
        corr: get("corr").parse().unwrap(),
        message,
    }
}

#[test]
fn every_protocol_vector() {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for line in VECTORS.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (name, verdict, frame_hex) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let words: Vec<(String, String)> = parts
            .map(|w| {
                let (k, v) = w.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let bytes = hex::decode(frame_hex).unwrap();
        let result = decode(&bytes, DEFAULT_MAX_FRAME);
        *seen.entry(verdict).or_default() += 1;
        match verdict {
            "ok" => {
                let (decoded, used) = result.unwrap().unwrap_or_else(|| panic!("{name}"));
                assert_eq!(used, bytes.len(), "{name}");
                let Decoded::Frame(frame) = decoded else {
                    panic!("{name}: {decoded:?}")
                };
                assert_eq!(fields(&frame), words, "{name}");
                let rebuilt = frame_from_fields(&words);
                assert_eq!(encode(&rebuilt).unwrap(), bytes, "{name}: encoding");
                assert_eq!(
                    payload_len(&rebuilt.message) + HEADER_LEN,
                    bytes.len(),
                    "{name}"
                );
            }
            "unknown" => {
                let corr: u32 = words[0].1.parse().unwrap();
                let (decoded, used) = result.unwrap().unwrap();
                assert_eq!(used, bytes.len(), "{name}");
                assert_eq!(
                    decoded,
                    Decoded::Unknown {
                        code: bytes[0],
                        corr
                    },
                    "{name}"
                );
            }
            "malformed" => {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, FrameError::Malformed { .. }),
                    "{name}: {err:?}"
                );
            }
            "oversized" => {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, FrameError::Oversized { .. }),
                    "{name}: {err:?}"
                );
                assert!(err.to_string().contains("expected at most 16777216"));
            }
            "incomplete" => assert_eq!(result, Ok(None), "{name}"),
            other => panic!("{name}: unknown verdict {other}"),
        }
    }
    for verdict in ["ok", "unknown", "malformed", "oversized", "incomplete"] {
        assert!(
            seen.get(verdict).copied().unwrap_or(0) > 0,
            "no {verdict} vectors"
        );
    }
}

#[test]
fn malformed_frames_name_the_field() {
    let err = decode(
        &hex::decode("020000000d000000010000006373746f7265").unwrap(),
        DEFAULT_MAX_FRAME,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed READ (0x02) frame: field service needs 99 bytes, 5 remain"
    );
    let err = decode(
        &hex::decode("050000000b000000000200000002c328").unwrap(),
        DEFAULT_MAX_FRAME,
    )
    .unwrap_err();
    assert!(err.to_string().contains("field text is not UTF-8"), "{err}");
}

#[test]
fn the_maximum_is_configurable() {
    let frame = encode(&Frame {
        corr: 1,
        message: Message::ServiceCert {
            service: "store".into(),
        },
    })
    .unwrap();
    let len = (frame.len() - HEADER_LEN) as u32;
    assert!(decode(&frame, len).unwrap().is_some());
    let err = decode(&frame, len - 1).unwrap_err();
    assert_eq!(
        err,
        FrameError::Oversized {
            code: 4,
            announced: len,
            max: len - 1
        }
    );
}

fn arb_message() -> impl Strategy<Value = Message> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    let text = || ".{0,24}";
    prop_oneof![
        (bytes(), text(), text()).prop_map(|(csr, sdk_version, cheri_bounds)| Message::Hello {
            csr,
            sdk_version,
            cheri_bounds
        }),
        (text(), text(), bytes()).prop_map(|(service, resource, request)| Message::Read {
            service,
            resource,
            request
        }),
        (text(), text(), bytes()).prop_map(|(service, resource, request)| Message::Write {
            service,
            resource,
            request
        }),
        text().prop_map(|service| Message::ServiceCert { service }),
        (any::<u8>(), text()).prop_map(|(level, text)| Message::Log { level, text }),
        text().prop_map(|chain_pem| Message::Cert { chain_pem }),
        bytes().prop_map(|response| Message::Data { response }),
        bytes().prop_map(|response| Message::Ack { response }),
        (text(), text()).prop_map(|(code, reason)| Message::Nack { code, reason }),
        text().prop_map(|reason| Message::Error { reason }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), max in 0u32..512) {
        // Whatever the verdict, a frame that decodes says how much it used,
        // and never more than it was given.
        if let Ok(Some((_, used))) = decode(&bytes, max) {
            prop_assert!(used <= bytes.len());
            prop_assert!(used >= HEADER_LEN);
        }
    }

    #[test]
    fn encode_then_decode_is_identity(corr in any::<u32>(), message in arb_message(), trailing in proptest::collection::vec(any::<u8>(), 0..8)) {
        let frame = Frame { corr, message };
        let mut bytes = encode(&frame).unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&trailing);
        let (decoded, used) = decode(&bytes, DEFAULT_MAX_FRAME).unwrap().unwrap();
        prop_assert_eq!(used, len);
        prop_assert_eq!(decoded, Decoded::Frame(frame));
        // Every strict prefix is incomplete, never an error or a frame.
        for cut in [0, 1, HEADER_LEN, len - 1] {
            prop_assert_eq!(decode(&bytes[..cut.min(len - 1)], DEFAULT_MAX_FRAME), Ok(None));
        }
    }
}
