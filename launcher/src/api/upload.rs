//! Receiving an uploaded C source: multipart field `file`, streamed into the
//! store's staging folder while it is checked. A rejected upload leaves
//! nothing behind: the staging file goes when its writer is dropped.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartRejection;
use axum::http::StatusCode;
use programs_db::{FileStore, StagedBlob, StagedWriter};

/// Longest accepted file name, in bytes.
const MAX_NAME_LEN: usize = 255;

/// The body limit of an upload route: room for the file at its limit, for
/// multipart framing, and for draining an oversized file so the client reads
/// our 413 instead of a reset connection.
pub fn body_limit(max_file: u64) -> usize {
    (max_file.saturating_mul(2).saturating_add(1024 * 1024)).min(usize::MAX as u64) as usize
}

#[derive(Debug)]
pub struct Upload {
    pub name: String,
    pub blob: StagedBlob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadError {
    /// No multipart field named `file`.
    NoFilePart,
    /// The `file` field has no file name.
    NoFileName,
    BadName(String),
    TooLarge {
        limit: u64,
    },
    Empty,
    NotUtf8 {
        offset: u64,
    },
    Nul {
        offset: u64,
    },
    DuplicateFile,
    /// The request is not well-formed multipart.
    Multipart {
        status: StatusCode,
        message: String,
    },
    Store(String),
    /// The data folder's disk is full.
    DiskFull(String),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::NoFilePart => f.write_str("no multipart field named \"file\""),
            UploadError::NoFileName => f.write_str("the \"file\" field has no file name"),
            UploadError::BadName(reason) => write!(f, "bad file name: {reason}"),
            UploadError::TooLarge { limit } => {
                write!(
                    f,
                    "the file is larger than the upload limit of {limit} bytes"
                )
            }
            UploadError::Empty => f.write_str("the file is empty"),
            UploadError::NotUtf8 { offset } => {
                write!(f, "the file is not valid UTF-8 (at byte {offset})")
            }
            UploadError::Nul { offset } => {
                write!(f, "the file contains a NUL byte (at byte {offset})")
            }
            UploadError::DuplicateFile => f.write_str("more than one \"file\" field"),
            UploadError::Multipart { message, .. } => {
                write!(f, "malformed multipart body: {message}")
            }
            UploadError::Store(message) | UploadError::DiskFull(message) => {
                write!(f, "storing the upload: {message}")
            }
        }
    }
}

impl UploadError {
    pub fn status(&self) -> StatusCode {
        match self {
            UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Multipart { status, .. } => *status,
            UploadError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            UploadError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Checks an upload's file name: a base name of `[A-Za-z0-9._+-]`, not
/// starting with `.` or `-` (which a compiler would read as an option),
/// ending in `.c`, at most 255 bytes. Returns the name to store.
pub fn validate_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("the name is empty".into());
    }
    if raw.contains('/') || raw.contains('\\') {
        return Err(format!(
            "{raw:?} contains a folder separator; expected a base name such as \"hello.c\""
        ));
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} bytes long; at most {MAX_NAME_LEN} allowed",
            raw.len()
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(format!(
            "{raw:?} contains {bad:?}; allowed are letters, digits and . _ - +"
        ));
    }
    if raw.starts_with('.') || raw.starts_with('-') {
        return Err(format!("{raw:?} may not start with '.' or '-'"));
    }
    match raw.strip_suffix(".c") {
        Some(stem) if !stem.is_empty() => Ok(raw.to_owned()),
        _ => Err(format!(
            "{raw:?} is not a C source; the name must end in \".c\""
        )),
    }
}

/// Turns the extractor's rejection into an upload error.
pub fn rejection(rejection: MultipartRejection) -> UploadError {
    UploadError::Multipart {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}

/// Reads the multipart body, staging the `file` field. Other fields are
/// ignored; a second `file` field is an error.
pub async fn receive(
    mut multipart: Multipart,
    files: &FileStore,
    limit: u64,
) -> Result<Upload, UploadError> {
    let mut upload: Option<Upload> = None;
    let mut oversized = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(multipart_error(err, limit)),
        };
        if field.name() != Some("file") {
            continue;
        }
        if upload.is_some() || oversized {
            return Err(UploadError::DuplicateFile);
        }
        let Some(raw_name) = field.file_name().map(str::to_owned) else {
            return Err(UploadError::NoFileName);
        };
        if raw_name.is_empty() {
            return Err(UploadError::NoFileName);
        }
        let name = validate_name(&raw_name).map_err(UploadError::BadName)?;
        let mut writer = files.stage().map_err(store_error)?;
        let mut check = SourceCheck::default();
        let mut field = field;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(err) => return Err(multipart_error(err, limit)),
            };
            if oversized || writer.size() + chunk.len() as u64 > limit {
                // Keep reading, so the client finishes sending and sees our answer.
                oversized = true;
                continue;
            }
            check.feed(&chunk)?;
            writer.write_chunk(&chunk).map_err(store_error)?;
        }
        if oversized {
            continue;
        }
        check.finish()?;
        if writer.size() == 0 {
            return Err(UploadError::Empty);
        }
        let blob = finish(writer).await?;
        upload = Some(Upload { name, blob });
    }
    if oversized {
        return Err(UploadError::TooLarge { limit });
    }
    upload.ok_or(UploadError::NoFilePart)
}

async fn finish(writer: StagedWriter) -> Result<StagedBlob, UploadError> {
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| UploadError::Store(e.to_string()))?
        .map_err(store_error)
}

fn store_error(err: programs_db::DbError) -> UploadError {
    if err.is_disk_full() {
        UploadError::DiskFull(err.to_string())
    } else {
        UploadError::Store(err.to_string())
    }
}

fn multipart_error(err: axum::extract::multipart::MultipartError, limit: u64) -> UploadError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UploadError::TooLarge { limit }
    } else {
        UploadError::Multipart {
            status: StatusCode::BAD_REQUEST,
            message: err.body_text(),
        }
    }
}

/// Incremental check of "valid UTF-8 without NUL bytes" over chunks.
#[derive(Debug, Default)]
struct SourceCheck {
    /// Bytes of a UTF-8 sequence split across chunks.
    carry: Vec<u8>,
    /// Bytes checked so far (excluding `carry`).
    offset: u64,
}

impl SourceCheck {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if let Some(pos) = chunk.iter().position(|&b| b == 0) {
            return Err(UploadError::Nul {
                offset: self.offset + self.carry.len() as u64 + pos as u64,
            });
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        match std::str::from_utf8(&data) {
            Ok(_) => self.offset += data.len() as u64,
            Err(e) if e.error_len().is_none() => {
                // An incomplete sequence at the end: wait for the next chunk.
                let valid = e.valid_up_to();
                self.offset += valid as u64;
                self.carry = data[valid..].to_vec();
            }
            Err(e) => {
                return Err(UploadError::NotUtf8 {
                    offset: self.offset + e.valid_up_to() as u64,
                });
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), UploadError> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(UploadError::NotUtf8 {
                offset: self.offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_c_base_names() {
        assert_eq!(validate_name("hello.c").unwrap(), "hello.c");
        assert_eq!(validate_name("a-b_c+1.v2.c").unwrap(), "a-b_c+1.v2.c");
        for (bad, why) in [
            ("../x.c", "folder separator"),
            ("dir/x.c", "folder separator"),
            ("..\\x.c", "folder separator"),
            ("x.txt", "must end in"),
            (".c", "may not start"),
            ("c", "must end in"),
            ("x.c.exe", "must end in"),
            (".hidden.c", "may not start"),
            ("-o.c", "may not start"),
            ("sp ace.c", "contains ' '"),
            ("é.c", "contains 'é'"),
            ("", "empty"),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(validate_name(&format!("{}.c", "a".repeat(254))).is_err());
        assert!(validate_name(&format!("{}.c", "a".repeat(253))).is_ok());
    }

    #[test]
    fn utf8_split_across_chunks_is_fine() {
        let text = "int main(void) { puts(\"héllo → ✓\"); }".as_bytes();
        for split in 0..text.len() {
            let mut check = SourceCheck::default();
            check.feed(&text[..split]).unwrap();
            check.feed(&text[split..]).unwrap();
            check.finish().unwrap();
        }
    }

    #[test]
    fn invalid_utf8_and_nul_are_located() {
        let mut check = SourceCheck::default();
        check.feed(b"abc").unwrap();
        assert_eq!(
            check.feed(b"de\xfff"),
            Err(UploadError::NotUtf8 { offset: 5 })
        );
        let mut check = SourceCheck::default();
        check.feed(b"abc").unwrap();
        assert_eq!(check.feed(b"d\0"), Err(UploadError::Nul { offset: 4 }));
        let mut check = SourceCheck::default();
        check.feed(b"ab\xc3").unwrap();
        assert_eq!(check.finish(), Err(UploadError::NotUtf8 { offset: 2 }));
    }
}
