//! Shared fixtures: the hostile C programs, compiled once per test binary
//! with the host compiler (unconfined: they are the test's own tools), and
//! helpers to run them confined and capture what they print.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use launcher_sandbox::{
    LayerName, LayerStatus, MeasuredExecutable, SandboxSpec, SandboxedChild, Termination,
};

/// `tests/programs/hostile` at the workspace root.
pub fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs/hostile")
}

/// Where fixtures are built: cargo's scratch folder for integration tests,
/// which outlives the test run (no leak in /tmp) and is shared by the test
/// binaries (hence the atomic rename below).
fn build_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-programs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `tests/programs/hostile/<name>.c` (once per test binary) and
/// returns the path of the executable.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = hostile_dir().join(format!("{name}.c"));
    let out = build_dir().join(name);
    let tmp = build_dir().join(format!("{name}.{}.tmp", std::process::id()));
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling {} failed", src.display());
    std::fs::rename(&tmp, &out).unwrap();
    built.insert(name.to_owned(), out.clone());
    out
}

/// A temp folder the sandbox's uid (65534 when root) can traverse, with an
/// empty working folder inside.
pub struct Area {
    pub dir: tempfile::TempDir,
    pub work: PathBuf,
}

impl Area {
    pub fn new() -> Area {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        Area { dir, work }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fake launcher data folder: a token and a database, readable by
    /// anyone as far as Unix permissions go, so that only the sandbox can
    /// keep them out of reach.
    pub fn fake_data(&self) -> (PathBuf, PathBuf) {
        let data = self.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let token = data.join("api-token");
        let db = data.join("launcher.db");
        std::fs::write(&token, "SECRET-TOKEN-5f3c9a0e12b4478c9d0e6a1b2c3d4e5f\n").unwrap();
        std::fs::write(&db, "SQLite format 3\0SECRET-DATABASE-ROW\n").unwrap();
        for f in [&token, &db] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        (token, db)
    }
}

/// A pipe whose read end is drained on a thread.
pub struct Capture {
    pub write: OwnedFd,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

pub fn capture() -> Capture {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let reader = std::thread::spawn(move || {
        let mut f = File::from(r);
        let mut out = Vec::new();
        let _ = f.read_to_end(&mut out);
        out
    });
    Capture { write: w, reader }
}

impl Capture {
    /// Closes our write end, then returns everything written once every
    /// other write end (the child's, its descendants') is closed too.
    pub fn text(self) -> String {
        drop(self.write);
        String::from_utf8_lossy(&self.reader.join().unwrap()).into_owned()
    }
}

/// What a confined run produced.
#[derive(Debug)]
pub struct RunResult {
    pub termination: Termination,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    pub fn blocked(&self) -> bool {
        self.stdout.contains("BLOCKED") && !self.stdout.contains("ESCAPED")
    }
}

/// A run spec for fixture `name` with `args`, stdout/stderr captured.
pub fn run_spec(name: &str, area: &Area, args: &[OsString]) -> (SandboxSpec, Capture, Capture) {
    let exe = Arc::new(MeasuredExecutable::open(fixture(name)).unwrap());
    let out = capture();
    let err = capture();
    let spec = SandboxSpec::run(exe, &area.work)
        .args(args.iter().cloned())
        .stdout(out.write.try_clone().unwrap())
        .stderr(err.write.try_clone().unwrap());
    (spec, out, err)
}

/// Spawns `spec` and waits for it; `out`/`err` must be the captures whose
/// write ends the spec holds.
pub fn finish(child: &mut SandboxedChild, out: Capture, err: Capture) -> RunResult {
    let termination = child.wait_blocking().unwrap();
    RunResult {
        termination,
        stdout: out.text(),
        stderr: err.text(),
    }
}

/// Runs fixture `name` confined by every layer and waits for it.
pub fn run(name: &str, area: &Area, args: &[&str]) -> (RunResult, SandboxedChild) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (spec, out, err) = run_spec(name, area, &args);
    let mut child = launcher_sandbox::spawn(spec).unwrap();
    let result = finish(&mut child, out, err);
    (result, child)
}

/// Fails the test, naming the layer and the reason, if this machine cannot
/// provide every layer: these tests prove containment and must not quietly
/// pass on a machine where it is missing.
pub fn require_all_layers() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let layers = launcher_sandbox::probe();
        for l in &layers {
            assert_eq!(
                l.status,
                LayerStatus::Active,
                "this test needs every sandbox layer; {l}"
            );
        }
    });
}

pub fn layer_status(child: &SandboxedChild, name: LayerName) -> LayerStatus {
    child
        .layers()
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.status)
        .expect("layer reported")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
