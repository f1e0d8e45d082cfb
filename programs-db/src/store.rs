//! Content-addressed file store for sources and executables.
//!
//! Layout under the store root:
//!
//! ```text
//! sha256/ab/ab12…ef   one file per distinct content, named by its SHA-256
//! tmp/                files being written; anything here after a crash is garbage
//! ```
//!
//! A blob is first *staged*: written to `tmp/`, hashed on the way, and synced.
//! [`crate::Db`] then *commits* it (renames it into `sha256/`, syncs the folder)
//! in the same critical section as the row that refers to it, and removes it
//! when the last such row goes. A staged blob that is never committed removes
//! its temporary file when dropped.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openssl::sha::Sha256;

use crate::error::{DbError, Result, io_error};

/// A SHA-256 digest as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Validates `hex`: exactly 64 lowercase hex digits.
    pub fn parse(hex: &str) -> Result<Self> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(DbError::Invalid(format!(
                "not a SHA-256 digest (expected 64 lowercase hex digits): {hex:?}"
            )))
        }
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(hex::encode(digest))
    }

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_digest(openssl::sha::sha256(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a digest column, failing the row on a malformed value.
pub(crate) fn sha_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Sha256Hex> {
    let text: String = row.get(idx)?;
    Sha256Hex::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Like [`sha_column`] for a nullable column.
pub(crate) fn opt_sha_column(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<Sha256Hex>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(text) => Sha256Hex::parse(&text).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

/// What a blob is; decides its file mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Source,
    Executable,
}

impl BlobKind {
    fn mode(self) -> u32 {
        match self {
            BlobKind::Source => 0o444,
            BlobKind::Executable => 0o555,
        }
    }
}

/// The store folder. Cheap to clone; staging needs no lock, committing and
/// removing happen only through [`crate::Db`].
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creating, mode 0700) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let store = Self { root: root.into() };
        for dir in [store.root.clone(), store.blobs_dir(), store.tmp_dir()] {
            create_private_dir(&dir)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the blob with digest `sha` lives (whether or not it exists).
    pub fn path(&self, sha: &Sha256Hex) -> PathBuf {
        self.blobs_dir().join(&sha.0[..2]).join(&sha.0)
    }

    pub fn contains(&self, sha: &Sha256Hex) -> bool {
        self.path(sha).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, sha: &Sha256Hex) -> Result<File> {
        let path = self.path(sha);
        File::open(&path).map_err(io_error("opening a stored file", path))
    }

    /// Reads a whole blob.
    pub fn read(&self, sha: &Sha256Hex) -> Result<Vec<u8>> {
        let path = self.path(sha);
        fs::read(&path).map_err(io_error("reading a stored file", path))
    }

    /// Starts writing a new blob into `tmp/`.
    pub fn stage(&self) -> Result<StagedWriter> {
        let mut nonce = [0u8; 12];
        openssl::rand::rand_bytes(&mut nonce)
            .map_err(|e| DbError::Invalid(format!("random temporary name: {e}")))?;
        let path = self.tmp_dir().join(format!("stage-{}", hex::encode(nonce)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("creating a staging file", &path))?;
        Ok(StagedWriter {
            guard: TempGuard(Some(path)),
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stages `bytes` in one go.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<StagedBlob> {
        let mut writer = self.stage()?;
        writer.write_chunk(bytes)?;
        writer.finish()
    }

    /// Stages a copy of the file at `path`.
    pub fn stage_file(&self, path: &Path) -> Result<StagedBlob> {
        let mut source = File::open(path).map_err(io_error("opening a file to store", path))?;
        let mut writer = self.stage()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("reading a file to store", path)(e)),
            };
            writer.write_chunk(&buf[..n])?;
        }
        writer.finish()
    }

    /// Moves a staged blob to its final name. Content already stored under
    /// that digest is kept and the staged copy discarded.
    pub(crate) fn commit(&self, mut blob: StagedBlob, kind: BlobKind) -> Result<()> {
        let Some(tmp) = blob.guard.0.take() else {
            return Err(DbError::Invalid("staged blob already committed".into()));
        };
        let dest = self.path(&blob.sha256);
        if dest.is_file() {
            let _ = fs::remove_file(&tmp);
            return Ok(());
        }
        let result = (|| {
            let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
            create_private_dir(&dir)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(kind.mode()))
                .map_err(io_error("setting a stored file's mode", &tmp))?;
            fs::rename(&tmp, &dest).map_err(io_error("moving a file into the store", &dest))?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes a blob; `Ok(false)` if it was not there.
    pub(crate) fn remove(&self, sha: &Sha256Hex) -> Result<bool> {
        let path = self.path(sha);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    // An empty fan-out folder is harmless; remove it when we can.
                    let _ = fs::remove_dir(dir);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("removing a stored file", path)(e)),
        }
    }

    /// Every stored digest, plus paths under `sha256/` that are not blobs.
    pub(crate) fn scan(&self) -> Result<(Vec<Sha256Hex>, Vec<PathBuf>)> {
        let mut blobs = Vec::new();
        let mut strays = Vec::new();
        let top = self.blobs_dir();
        for fan in read_dir(&top)? {
            let fan_path = fan.path();
            if !fan_path.is_dir() {
                strays.push(fan_path);
                continue;
            }
            for entry in read_dir(&fan_path)? {
                let path = entry.path();
                let name = entry.file_name();
                match name.to_str().map(Sha256Hex::parse) {
                    Some(Ok(sha)) if path.is_file() && self.path(&sha) == path => blobs.push(sha),
                    _ => strays.push(path),
                }
            }
        }
        Ok((blobs, strays))
    }

    /// Removes every staged file: only safe when nothing is being staged,
    /// i.e. at start-up. Returns how many were removed.
    pub(crate) fn clear_staging(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in read_dir(&self.tmp_dir())? {
            let path = entry.path();
            let result = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(io_error("removing a staging file", &path))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Writes a blob into `tmp/`, hashing as it goes.
pub struct StagedWriter {
    guard: TempGuard,
    file: File,
    hasher: Sha256,
    size: u64,
}

impl fmt::Debug for StagedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedWriter")
            .field("path", &self.guard.path())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl StagedWriter {
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.guard.path().to_path_buf();
        self.file
            .write_all(bytes)
            .map_err(io_error("writing a staging file", path))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Syncs the file to disk and returns the staged blob.
    pub fn finish(self) -> Result<StagedBlob> {
        let path = self.guard.path().to_path_buf();
        self.file
            .sync_all()
            .map_err(io_error("syncing a staging file", path))?;
        Ok(StagedBlob {
            sha256: Sha256Hex::from_digest(self.hasher.finish()),
            size: self.size,
            guard: self.guard,
        })
    }
}

/// A complete, synced blob waiting in `tmp/` to be committed.
#[derive(Debug)]
pub struct StagedBlob {
    sha256: Sha256Hex,
    size: u64,
    guard: TempGuard,
}

impl StagedBlob {
    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The staging file, for reading it back before committing.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }
}

/// Removes the temporary file it names when dropped, unless taken.
#[derive(Debug)]
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_error("creating a store folder", dir)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing a store folder", dir))
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(io_error("listing a store folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn digest_parsing_is_strict() {
        let ok = "a".repeat(64);
        assert!(Sha256Hex::parse(&ok).is_ok());
        assert!(Sha256Hex::parse(&"A".repeat(64)).is_err());
        assert!(Sha256Hex::parse(&"a".repeat(63)).is_err());
        assert!(Sha256Hex::parse(&format!("../{}", "a".repeat(61))).is_err());
        assert_eq!(
            Sha256Hex::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn staged_blob_commits_with_mode_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("store")).unwrap();
        let blob = store.stage_bytes(b"int main(void){return 0;}\n").unwrap();
        let sha = blob.sha256().clone();
        assert_eq!(blob.size(), 26);
        store.commit(blob, BlobKind::Source).unwrap();
        let path = store.path(&sha);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(store.read(&sha).unwrap(), b"int main(void){return 0;}\n");
        // Same content again: kept once, staging folder empty.
        let again = store.stage_bytes(b"int main(void){return 0;}\n").unwrap();
        store.commit(again, BlobKind::Source).unwrap();
        assert!(names(&store.tmp_dir()).is_empty());
        let (blobs, strays) = store.scan().unwrap();
        assert_eq!(blobs, vec![sha.clone()]);
        assert!(strays.is_empty());
        assert!(store.remove(&sha).unwrap());
        assert!(!store.remove(&sha).unwrap());
    }

    #[test]
    fn dropped_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let mut writer = store.stage().unwrap();
        writer.write_chunk(b"partial").unwrap();
        assert_eq!(names(&store.tmp_dir()).len(), 1);
        drop(writer);
        assert!(names(&store.tmp_dir()).is_empty());
        let blob = store.stage_bytes(b"x").unwrap();
        drop(blob);
        assert!(names(&store.tmp_dir()).is_empty());
    }

    #[test]
    fn scan_reports_strays_and_clear_staging_empties_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        fs::create_dir_all(store.blobs_dir().join("zz")).unwrap();
        fs::write(store.blobs_dir().join("zz").join("junk"), b"").unwrap();
        fs::write(store.tmp_dir().join("stage-left-by-crash"), b"").unwrap();
        let (blobs, strays) = store.scan().unwrap();
        assert!(blobs.is_empty());
        assert_eq!(strays.len(), 1);
        assert_eq!(store.clear_staging().unwrap(), 1);
        assert!(names(&store.tmp_dir()).is_empty());
    }
}
