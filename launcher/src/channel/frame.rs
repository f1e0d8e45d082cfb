//! The frame codec of the compartment channel (`docs/PROTOCOL.md`, "Frames"):
//!
//! ```text
//! frame   = type:u8 | length:u32 (big-endian) | payload[length]
//! payload = corr:u32 then the type's fields (u32, u8, bytes, str), nothing after the last
//! ```
//!
//! Decoding never panics and never trusts a length: a header announcing more
//! than the maximum is [`FrameError::Oversized`] before any payload is read,
//! and a field running past the end, bytes left over or a `str` that is not
//! UTF-8 is [`FrameError::Malformed`]. A complete frame of an unknown type is
//! [`Decoded::Unknown`], which the session answers with `ERROR` and goes on.

use std::fmt;

/// Bytes of a frame header: type and length.
pub const HEADER_LEN: usize = 5;

/// The default maximum payload, 16 MiB (both sides enforce theirs).
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// The frame types of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Hello = 0x01,
    Read = 0x02,
    Write = 0x03,
    ServiceCert = 0x04,
    Log = 0x05,
    Cert = 0x81,
    Data = 0x82,
    Ack = 0x83,
    Nack = 0xE1,
    Error = 0xEE,
}

impl FrameType {
    /// The type of a code, if it is one of the protocol's.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::Hello,
            0x02 => Self::Read,
            0x03 => Self::Write,
            0x04 => Self::ServiceCert,
            0x05 => Self::Log,
            0x81 => Self::Cert,
            0x82 => Self::Data,
            0x83 => Self::Ack,
            0xE1 => Self::Nack,
            0xEE => Self::Error,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The name PROTOCOL.md uses, e.g. `SERVICE_CERT`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::ServiceCert => "SERVICE_CERT",
            Self::Log => "LOG",
            Self::Cert => "CERT",
            Self::Data => "DATA",
            Self::Ack => "ACK",
            Self::Nack => "NACK",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02x})", self.name(), self.code())
    }
}

/// A frame's content after its correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        csr: Vec<u8>,
        sdk_version: String,
        cheri_bounds: String,
    },
    Read {
        service: String,
        resource: String,
        request: Vec<u8>,
    },
    Write {
        service: String,
        resource: String,
        request: Vec<u8>,
    },
    ServiceCert {
        service: String,
    },
    Log {
        level: u8,
        text: String,
    },
    Cert {
        chain_pem: String,
    },
    Data {
        response: Vec<u8>,
    },
    Ack {
        response: Vec<u8>,
    },
    Nack {
        code: String,
        reason: String,
    },
    Error {
        reason: String,
    },
}

impl Message {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Message::Hello { .. } => FrameType::Hello,
            Message::Read { .. } => FrameType::Read,
            Message::Write { .. } => FrameType::Write,
            Message::ServiceCert { .. } => FrameType::ServiceCert,
            Message::Log { .. } => FrameType::Log,
            Message::Cert { .. } => FrameType::Cert,
            Message::Data { .. } => FrameType::Data,
            Message::Ack { .. } => FrameType::Ack,
            Message::Nack { .. } => FrameType::Nack,
            Message::Error { .. } => FrameType::Error,
        }
    }
}

/// One frame: a correlation id and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub corr: u32,
    pub message: Message,
}

/// What a complete frame decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// A type this protocol does not define. `corr` is read from the payload
    /// when it has at least 4 bytes, else 0.
    Unknown {
        code: u8,
        corr: u32,
    },
}

/// A frame that ends the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "oversized frame: the header of a frame of type 0x{code:02x} announces {announced} bytes; \
         expected at most {max}"
    )]
    Oversized { code: u8, announced: u32, max: u32 },
    #[error("malformed {frame_type} frame: {reason}")]
    Malformed {
        frame_type: FrameType,
        reason: String,
    },
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub code: u8,
    pub length: u32,
}

/// Reads a header and checks its length against `max`.
pub fn parse_header(bytes: &[u8; HEADER_LEN], max: u32) -> Result<Header, FrameError> {
    let code = bytes[0];
    let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if length > max {
        return Err(FrameError::Oversized {
            code,
            announced: length,
            max,
        });
    }
    Ok(Header { code, length })
}

/// Decodes the payload of a frame of type `code`.
pub fn decode_payload(code: u8, payload: &[u8]) -> Result<Decoded, FrameError> {
    let Some(frame_type) = FrameType::from_code(code) else {
        let corr = match payload {
            [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => 0,
        };
        return Ok(Decoded::Unknown { code, corr });
    };
    let mut r = Reader {
        rest: payload,
        frame_type,
    };
    let corr = r.u32("corr")?;
    let message = match frame_type {
        FrameType::Hello => Message::Hello {
            csr: r.bytes("csr")?,
            sdk_version: r.str("sdk_version")?,
            cheri_bounds: r.str("cheri_bounds")?,
        },
        FrameType::Read => Message::Read {
            service: r.str("service")?,
            resource: r.str("resource")?,
            request: r.bytes("request")?,
        },
        FrameType::Write => Message::Write {
            service: r.str("service")?,
            resource: r.str("resource")?,
            request: r.bytes("request")?,
        },
        FrameType::ServiceCert => Message::ServiceCert {
            service: r.str("service")?,
        },
        FrameType::Log => Message::Log {
            level: r.u8("level")?,
            text: r.str("text")?,
        },
        FrameType::Cert => Message::Cert {
            chain_pem: r.str("chain_pem")?,
        },
        FrameType::Data => Message::Data {
            response: r.bytes("response")?,
        },
        FrameType::Ack => Message::Ack {
            response: r.bytes("response")?,
        },
        FrameType::Nack => Message::Nack {
            code: r.str("code")?,
            reason: r.str("reason")?,
        },
        FrameType::Error => Message::Error {
            reason: r.str("reason")?,
        },
    };
    r.finish()?;
    Ok(Decoded::Frame(Frame { corr, message }))
}

/// Decodes the first frame in `buf`: `Ok(None)` when `buf` holds only part
/// of one (wait for more bytes), else the frame and the bytes it took.
pub fn decode(buf: &[u8], max: u32) -> Result<Option<(Decoded, usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = parse_header(header, max)?;
    let end = HEADER_LEN + header.length as usize;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(header.code, payload)?, end)))
}

/// The payload length of a frame, for checking it against the maximum
/// before encoding: `corr` and every field with its length prefix.
pub fn payload_len(message: &Message) -> usize {
    let var = |n: usize| 4 + n;
    4 + match message {
        Message::Hello {
            csr,
            sdk_version,
            cheri_bounds,
        } => var(csr.len()) + var(sdk_version.len()) + var(cheri_bounds.len()),
        Message::Read {
            service,
            resource,
            request,
        }
        | Message::Write {
            service,
            resource,
            request,
        } => var(service.len()) + var(resource.len()) + var(request.len()),
        Message::ServiceCert { service } => var(service.len()),
        Message::Log { text, .. } => 1 + var(text.len()),
        Message::Cert { chain_pem } => var(chain_pem.len()),
        Message::Data { response } | Message::Ack { response } => var(response.len()),
        Message::Nack { code, reason } => var(code.len()) + var(reason.len()),
        Message::Error { reason } => var(reason.len()),
    }
}

/// Encodes a frame. The caller keeps payloads within the maximum (see
/// [`payload_len`]); a field or payload over 4 GiB cannot be framed at all.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameTooLarge> {
    let len = payload_len(&frame.message);
    let length = u32::try_from(len).map_err(|_| FrameTooLarge(len))?;
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.push(frame.message.frame_type().code());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&frame.corr.to_be_bytes());
    // Every field is shorter than the whole payload, which fits in a u32.
    let var = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    match &frame.message {
        Message::Hello {
            csr,
            sdk_version,
            cheri_bounds,
        } => {
            var(&mut out, csr);
            var(&mut out, sdk_version.as_bytes());
            var(&mut out, cheri_bounds.as_bytes());
        }
        Message::Read {
            service,
            resource,
            request,
        }
        | Message::Write {
            service,
            resource,
            request,
        } => {
            var(&mut out, service.as_bytes());
            var(&mut out, resource.as_bytes());
            var(&mut out, request);
        }
        Message::ServiceCert { service } => var(&mut out, service.as_bytes()),
        Message::Log { level, text } => {
            out.push(*level);
            var(&mut out, text.as_bytes());
        }
        Message::Cert { chain_pem } => var(&mut out, chain_pem.as_bytes()),
        Message::Data { response } | Message::Ack { response } => var(&mut out, response),
        Message::Nack { code, reason } => {
            var(&mut out, code.as_bytes());
            var(&mut out, reason.as_bytes());
        }
        Message::Error { reason } => var(&mut out, reason.as_bytes()),
    }
    Ok(out)
}

/// A payload that does not fit a frame's 32-bit length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payload of {0} bytes does not fit in a frame")]
pub struct FrameTooLarge(pub usize);

/// Reads fields off a payload, naming the field that does not fit.
struct Reader<'a> {
    rest: &'a [u8],
    frame_type: FrameType,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: String) -> FrameError {
        FrameError::Malformed {
            frame_type: self.frame_type,
            reason,
        }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(self.malformed(format!(
                "field {field} needs {n} bytes, {} remain",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, field: &str) -> Result<u32, FrameError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u8(&mut self, field: &str) -> Result<u8, FrameError> {
        Ok(self.take(1, field)?[0])
    }

    fn bytes(&mut self, field: &str) -> Result<Vec<u8>, FrameError> {
        let len = self.u32(&format!("{field} (length)"))? as usize;
        Ok(self.take(len, field)?.to_vec())
    }

    fn str(&mut self, field: &str) -> Result<String, FrameError> {
        let bytes = self.bytes(field)?;
        String::from_utf8(bytes).map_err(|e| {
            self.malformed(format!(
                "field {field} is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    fn finish(self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(format!(
                "{} bytes left over after the last field",
                self.rest.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests;
