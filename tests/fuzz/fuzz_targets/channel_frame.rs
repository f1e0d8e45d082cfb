//! The fd-3 frame decoder (`launcher::channel::frame`) on whatever a program
//! might write: a stream of frames decoded the way the session reads them,
//! each complete frame re-encoded to the very bytes it came from, and a
//! `HELLO`'s CSR and CHERI bounds put through the checks the launcher makes.

#![no_main]

use attestable_data::certificate::check_csr;
use attestable_data::evidence::parse_cheri_bounds;
use launcher::channel::frame::{self, Decoded, FrameError, HEADER_LEN, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the frame limit, so that limits near real frame
    // sizes are exercised as well as the 16 MiB default.
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let max = match pick % 4 {
        0 => frame::DEFAULT_MAX_FRAME,
        1 => 0,
        2 => 64,
        _ => u32::from(pick),
    };
    loop {
        match frame::decode(rest, max) {
            Ok(None) => {
                // Only a prefix of a frame is left: the header, if complete,
                // must be within the limit and announce more than is there.
                if let Some(header) = rest.first_chunk::<HEADER_LEN>() {
                    let header = frame::parse_header(header, max).expect("decode accepted it");
                    assert!(HEADER_LEN + header.length as usize > rest.len());
                }
                break;
            }
            Ok(Some((decoded, used))) => {
                assert!(used >= HEADER_LEN && used <= rest.len());
                let bytes = &rest[..used];
                assert!((used - HEADER_LEN) as u32 <= max, "a frame over the limit decoded");
                match decoded {
                    Decoded::Frame(frame) => {
                        assert_eq!(frame.message.frame_type().code(), bytes[0]);
                        assert_eq!(frame::payload_len(&frame.message), used - HEADER_LEN);
                        let again = frame::encode(&frame).expect("a decoded frame encodes");
                        assert_eq!(again, bytes, "encode(decode(x)) != x");
                        if let Message::Hello { csr, cheri_bounds, .. } = &frame.message {
                            let _ = check_csr(csr);
                            let _ = parse_cheri_bounds(cheri_bounds);
                        }
                    }
                    Decoded::Unknown { code, corr } => {
                        assert!(frame::FrameType::from_code(code).is_none());
                        let payload = &bytes[HEADER_LEN..];
                        let expected = payload
                            .first_chunk::<4>()
                            .map_or(0, |c| u32::from_be_bytes(*c));
                        assert_eq!(corr, expected);
                    }
                }
                rest = &rest[used..];
            }
            Err(FrameError::Oversized { announced, max: m, .. }) => {
                assert!(announced > m && m == max);
                break;
            }
            Err(FrameError::Malformed { frame_type, reason }) => {
                assert_eq!(frame_type.code(), rest[0]);
                assert!(!reason.is_empty());
                break;
            }
        }
    }
});
