//! `launcher serve`: start-up, serving, and orderly shutdown.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use attestable_data::https;
use attestable_data::pki::write_atomic;
use programs_db::Db;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, App};
use crate::broker::Registry;
use crate::channel::hello::Certifier;
use crate::channel::run::Channels;
use crate::compartment::{Choice, Compartment, select};
use crate::config::Config;
use crate::paths::DataDir;
use crate::pki::{Attestation, ensure_attestation};
use crate::records::Records;
use crate::supervisor::Supervisor;
use crate::tls::{self, ServerNames};
use crate::toolchain::{Anchor, Builder, BuilderParts, Sdk};
use attestable_data::token::BearerToken;

/// Time live runs get to be stopped and recorded at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub config: Option<PathBuf>,
    pub camb_compat: bool,
    /// The platform's compartment (with the layers allowed degraded), or none.
    pub compartment: Choice,
}

/// Refuses addresses beyond loopback unless configured, and the token-less
/// CAMB routes anywhere but loopback.
pub fn check_listen(listen: SocketAddr, config: &Config, camb_compat: bool) -> anyhow::Result<()> {
    let loopback = listen.ip().is_loopback();
    if camb_compat && !loopback {
        bail!(
            "--camb-compat serves the CAMB routes without a token, so it is allowed only on a \
             loopback address (127.0.0.1 or ::1); {listen} is not one"
        );
    }
    if !loopback && !config.server.allow_non_loopback {
        bail!(
            "refusing to listen on {listen}: not a loopback address; set \
             `allow_non_loopback = true` in the [server] section of the configuration to allow it"
        );
    }
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(options: ServeOptions) -> anyhow::Result<()> {
    let config = Config::load(options.config.as_deref())?;
    check_listen(options.listen, &config, options.camb_compat)?;
    DataDir::new(&options.data)
        .create()
        .with_context(|| format!("creating the data folder {}", options.data.display()))?;
    // Absolute from here on: builds and runs work in folders under it, with
    // the compiler and the program started elsewhere.
    let data = DataDir::new(
        std::fs::canonicalize(&options.data)
            .with_context(|| format!("resolving the data folder {}", options.data.display()))?,
    );
    let _lock = DataLock::acquire(&data.lock_file())?;
    remove_if_present(&data.addr_file())?;

    let names = ServerNames::for_listen(
        options.listen.ip(),
        &config.server.tls_dns_names,
        &config.server.tls_ip_addresses,
    );
    let pki = tls::ensure_with_root(&data, &names, config.pki.operator_root()?)?;
    let attestation = Arc::new(Attestation::new(
        &data,
        &pki.root,
        ensure_attestation(&data, &pki.root, config.pki.attestation_days)?,
    ));
    attestation.clone().watch();
    let token = BearerToken::load_or_create(&data.api_token(), "API token")?;

    let mut db = Db::open(data.root())?;
    let recovery = db.recover()?;
    if recovery != Default::default() {
        tracing::warn!(
            interrupted_runs = ?recovery.interrupted_runs,
            interrupted_builds = ?recovery.interrupted_builds,
            orphan_files = recovery.orphan_files,
            stray_files = recovery.stray_files,
            "recovered from an unclean stop"
        );
    }
    let cleared = data.clear_work_dirs()?;
    if cleared > 0 {
        tracing::warn!(folders = cleared, "removed leftover work folders");
    }
    let records = Records::new(db);

    let platform = crate::platform::probe().context("probing the platform")?;
    let compartment = start_compartment(&options.compartment, &config, &data)?;
    let described = compartment.describe();
    let sdk = Sdk::install(&data.sdk_dir()).context("installing the C SDK in the data folder")?;
    let default_anchor = match &config.builds.services_anchor {
        Some(path) => Anchor::load(path).context("[builds] services_anchor")?,
        None => Anchor::none(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let builder = Arc::new(Builder::new(BuilderParts {
        records: records.clone(),
        compartment: compartment.clone(),
        data: data.clone(),
        config: config.builds.clone(),
        profiles: config.profiles(),
        default_profile: config.default_profile(),
        shutdown: shutdown_rx.clone(),
        sdk,
        default_anchor,
    }));
    let registry = Arc::new(Registry::new(
        config.broker.clone(),
        &config.services,
        records.call(|db| db.services()).await?,
    )?);
    let certifier = Arc::new(Certifier::new(
        records.clone(),
        attestation.clone(),
        platform.clone(),
        described.clone(),
    ));
    let channels = Arc::new(Channels::new(
        records.clone(),
        certifier,
        registry.clone(),
        config.channel.clone(),
        config.runs.output_limit_bytes,
    ));
    let supervisor = Supervisor::new(
        records.clone(),
        compartment.clone(),
        data.clone(),
        config.runs.max_concurrent,
        config.runs.max_queued,
        config.runs.output_limit_bytes,
        channels,
    );
    let app = Arc::new(App {
        records,
        builder,
        supervisor: supervisor.clone(),
        token,
        camb_compat: options.camb_compat,
        root_pem: String::from_utf8_lossy(&pki.root_pem).into_owned(),
        attestation,
        registry,
        platform: crate::platform::PlatformFacts::from(&platform),
        compartment: described,
        config,
    });
    let router = api::router(app);
    let acceptor = https::tls_acceptor(&pki.chain, &pki.key)?;

    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let addr = listener.local_addr()?;
    write_atomic(&data.addr_file(), addr.to_string().as_bytes(), 0o644)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on https://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, data = %data.root().display(), camb_compat = options.camb_compat, "serving");

    tokio::spawn(forward_signals(shutdown_tx));
    let mut server = tokio::spawn(https::serve(
        listener,
        acceptor,
        router,
        https::ServeOptions::default(),
        until_true(shutdown_rx.clone()),
    ));
    let mut stopping = shutdown_rx.clone();
    let early = tokio::select! {
        _ = stopping.wait_for(|stop| *stop) => None,
        result = &mut server => Some(result),
    };
    tracing::info!("shutting down");
    supervisor.shutdown(SHUTDOWN_GRACE).await;
    let served = match early {
        Some(result) => result,
        None => server.await,
    };
    remove_if_present(&data.addr_file())?;
    served.context("the server task failed")??;
    tracing::info!("stopped");
    Ok(())
}

/// Chooses and probes the compartment, and says loudly what it found: an
/// insecure or degraded compartment is logged as a warning, a refusing one
/// as an error (the daemon still serves, and refuses builds and runs).
fn start_compartment(
    choice: &Choice,
    config: &Config,
    data: &DataDir,
) -> anyhow::Result<Arc<dyn Compartment>> {
    let compartment = select(choice, &config.compartment)?;
    let described = compartment.describe();
    if described.insecure {
        tracing::warn!(
            backend = %described.backend,
            "--insecure-no-compartment: programs run without a compartment and are not \
             isolated from this host; every run records insecure: true"
        );
        return Ok(compartment);
    }
    check_run_limits(&config.runs)?;
    check_sandbox_reach(data.root())?;
    for layer in &described.layers {
        tracing::info!(backend = %described.backend, layer = %layer.name, status = ?layer.status, detail = %layer.detail, "compartment layer");
    }
    if !described.degraded.is_empty() {
        tracing::warn!(degraded = ?described.degraded, "running with compartment layers switched off (--allow-degraded)");
    }
    if let Some(refusal) = compartment.refusal() {
        tracing::error!("builds and runs are refused: {refusal}");
    }
    Ok(compartment)
}

/// The configured run limits must be ones the sandbox accepts.
fn check_run_limits(runs: &crate::config::RunConfig) -> anyhow::Result<()> {
    let set = |v: u64| (v != 0).then_some(v);
    let limits = crate::compartment::Limits {
        address_space_bytes: set(runs.limits.address_space_bytes),
        cpu_seconds: Some(u64::from(runs.max_time_limit_s) + 1),
        open_files: set(runs.limits.open_files),
        processes: set(runs.limits.processes),
        file_size_bytes: set(runs.limits.file_size_bytes),
        wall_seconds: runs.max_time_limit_s.into(),
    };
    crate::compartment::sandboxed::sandbox_limits(&limits)
        .validate()
        .context("[runs.limits] (or runs.max_time_limit_s)")
}

/// A root launcher runs sandboxes as uid 65534, which must be able to reach
/// the run and build folders inside the data folder: every folder above it
/// must let others search it.
fn check_sandbox_reach(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let id = launcher_sandbox::DEFAULT_OUTER_ID;
    let root = fs::canonicalize(root).with_context(|| format!("{}", root.display()))?;
    for dir in root.ancestors() {
        let meta = fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
        let bits = if meta.uid() == id {
            meta.mode() >> 6
        } else if meta.gid() == id {
            meta.mode() >> 3
        } else {
            meta.mode()
        };
        if bits & 0o1 == 0 {
            bail!(
                "the sandbox's user (uid {id}) cannot reach the data folder {}: {} is mode {:o} \
                 (owner {}, group {}) and does not let others search it; make it searchable \
                 (chmod o+x {}) or choose another data folder",
                root.display(),
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                dir.display()
            );
        }
    }
    Ok(())
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn forward_signals(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the launcher with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stop requested");
    let _ = tx.send(true);
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// An exclusive `flock` on `<data>/launcher.lock`, held while serving: two
/// daemons on one data folder would corrupt each other's runs.
struct DataLock(#[allow(dead_code)] fs::File);

impl DataLock {
    fn acquire(path: &Path) -> anyhow::Result<Self> {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // A launcher killed a moment ago may still hold the lock through a
        // child it forked that has not reached exec yet (the lock's open
        // file is shared across fork until exec closes it); such a child
        // dies with it (PR_SET_PDEATHSIG). So while the recorded holder is
        // dead, wait a little for the lock; a live holder is refused at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // SAFETY: plain syscall on a descriptor we own.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = fs::read_to_string(path).unwrap_or_default();
            let holder = holder.trim();
            let holder_alive = holder.parse::<libc::pid_t>().is_ok_and(process_alive);
            if holder_alive || std::time::Instant::now() >= deadline {
                bail!(
                    "another launcher (pid {holder}) is using the data folder {}",
                    path.parent().unwrap_or(path).display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Self(file))
    }
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // `/proc/<pid>/stat`: "pid (comm) S …"; Z is a zombie. Without /proc
    // (FreeBSD), a process that answers signal 0 counts as alive.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_checked() {
        let config = Config::default();
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let lo6: SocketAddr = "[::1]:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(check_listen(lo, &config, false).is_ok());
        assert!(check_listen(lo6, &config, true).is_ok());
        let err = check_listen(any, &config, false).unwrap_err().to_string();
        assert!(err.contains("allow_non_loopback"), "{err}");
        let open = Config::parse("[server]\nallow_non_loopback = true\n", "t").unwrap();
        assert!(check_listen(any, &open, false).is_ok());
        let err = check_listen(any, &open, true).unwrap_err().to_string();
        assert!(err.contains("--camb-compat"), "{err}");
    }

    #[test]
    fn the_data_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher.lock");
        let held = DataLock::acquire(&path).unwrap();
        let err = DataLock::acquire(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        DataLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_launcher_is_waited_for() {
        // The holder recorded in the file has exited, but the lock is still
        // held (as by its child between fork and exec) for a moment.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher.lock");
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        let straggler = fs::File::create(&path).unwrap();
        // SAFETY: plain syscall on a descriptor we own.
        assert_eq!(
            unsafe { libc::flock(straggler.as_raw_fd(), libc::LOCK_EX) },
            0
        );
        fs::write(&path, format!("{dead}\n")).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(straggler);
        });
        let lock = DataLock::acquire(&path).unwrap();
        release.join().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!process_alive(dead as libc::pid_t));
        assert!(process_alive(std::process::id() as libc::pid_t));
    }
}
