//! Starting and stopping one service: the embeddable entry point.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use attestable_data::attested::{ServiceIdentity, ServiceVerifier};
use attestable_data::https;
use attestable_data::pki::{unix_now, write_atomic};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServiceConfig;
use crate::datadir::{DataDir, FileLock};
use crate::decisions::DecisionLog;
use crate::http::{self, Service};
use crate::identity;
use crate::kind::ServiceKind;
use crate::policy_watch::{self, PolicyWatch};
use attestable_data::token::BearerToken;

/// A service that is serving. Stop it with [`RunningService::stop`]; dropping
/// it stops it too, without waiting.
#[derive(Debug)]
pub struct RunningService {
    kind: ServiceKind,
    addr: SocketAddr,
    addr_file: PathBuf,
    watch: Arc<PolicyWatch>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _lock: FileLock,
}

/// Starts `kind` as `config` says: sets up the data folder at first start
/// (CA, keys, token, database, empty policy), binds, writes `<service>.addr`,
/// and serves until stopped. Needs a Tokio runtime.
pub async fn start(kind: ServiceKind, config: ServiceConfig) -> anyhow::Result<RunningService> {
    config.check_listen(kind)?;
    config.settings.validate()?;
    let data = DataDir::new(&config.data);
    data.create()
        .with_context(|| format!("creating the data folder {}", data.root().display()))?;
    let lock = data.lock_service(kind)?;
    let addr_file = data.addr_file(kind);
    match std::fs::remove_file(&addr_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", addr_file.display())),
    }

    let (keys, token) = {
        let _setup = data.lock_setup()?;
        let ca = identity::ensure_services_ca(&data)?;
        let keys = identity::ensure_service_keys(&data, kind, &ca)?;
        (
            keys,
            BearerToken::load_or_create(&data.operator_token(), "operator token")?,
        )
    };
    let policy_path = data.policy(kind);
    let (policy, loaded) = policy_watch::load_or_create(&policy_path, kind.name())?;
    let verifier = Arc::new(ServiceVerifier::new(
        ServiceIdentity {
            name: kind.name().to_owned(),
            key: keys.key.clone(),
            certificate: keys.certificate.clone(),
        },
        policy,
    ));
    let watch = Arc::new(PolicyWatch::new(policy_path, verifier.clone(), loaded));
    let conn = crate::db::open(&data.database(kind), kind, unix_now())
        .with_context(|| format!("opening the {kind} database"))?;
    let service = Arc::new(Service {
        kind,
        verifier,
        db: Mutex::new(conn),
        log: DecisionLog::open(&data.decisions_log(kind))?,
        token,
        chain_pem: keys.chain_pem()?,
        settings: config.settings.clone(),
    });

    let acceptor = https::tls_acceptor(&keys.chain, &keys.key)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("{kind}: listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    write_atomic(&addr_file, addr.to_string().as_bytes(), 0o644)?;

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(poll_policy(
        watch.clone(),
        config.policy_poll,
        stopped.clone(),
    ));
    let server = tokio::spawn(https::serve(
        listener,
        acceptor,
        http::router(service),
        https::ServeOptions::default(),
        until_stopped(stopped),
    ));
    tracing::info!(service = kind.name(), %addr, data = %data.root().display(), "serving");
    Ok(RunningService {
        kind,
        addr,
        addr_file,
        watch,
        stop,
        server: Some(server),
        _lock: lock,
    })
}

impl RunningService {
    /// Which service.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The policy watcher, to reload from elsewhere (a signal handler).
    pub fn policy_watch(&self) -> Arc<PolicyWatch> {
        self.watch.clone()
    }

    /// Reloads the policy file now (what SIGHUP does); false when it did not
    /// load and the previous policy stays.
    pub fn reload_policy(&self, why: &str) -> bool {
        self.watch.reload(why).is_ok()
    }

    /// Waits until the server ends by itself (it only does on an error).
    pub async fn failed(&mut self) -> anyhow::Error {
        let Some(server) = self.server.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = server.await;
        // A finished task must not be awaited again by `stop`.
        self.server = None;
        match outcome {
            Ok(Ok(())) => anyhow::anyhow!("{} stopped serving", self.kind),
            Ok(Err(e)) => anyhow::Error::new(e).context(format!("{} server", self.kind)),
            Err(e) => anyhow::Error::new(e).context(format!("{} server task", self.kind)),
        }
    }

    /// Stops accepting, lets live connections finish, removes `<service>.addr`.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server
                .await
                .with_context(|| format!("{} server task", self.kind))?
                .with_context(|| format!("{} server", self.kind))?;
        }
        remove_addr(&self.addr_file);
        tracing::info!(service = self.kind.name(), "stopped");
        Ok(())
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if self.server.is_some() {
            remove_addr(&self.addr_file);
        }
    }
}

fn remove_addr(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the address file");
    }
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn poll_policy(
    watch: Arc<PolicyWatch>,
    every: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    return;
                }
            }
            _ = ticks.tick() => {
                let w = watch.clone();
                // A stat per tick; a load only when the file changed.
                let _ = tokio::task::spawn_blocking(move || w.poll()).await;
            }
        }
    }
}
