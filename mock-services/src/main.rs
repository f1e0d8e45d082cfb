//! `mock-services`: run the case study's services, and edit their policies.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use attestable_data::encoding::Sha256Hex;
use attestable_data::policy::{Op, ResourcePattern};
use clap::{Args, Parser, Subcommand};
use mock_services::datadir::DataDir;
use mock_services::policy_cli::{self, AllowRequest, SetRequest, Target};
use mock_services::{CustomerReply, ServiceConfig, ServiceKind, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "mock-services",
    version,
    about = "The case study's store, taxi and messaging services, which release data only to attested programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the store (default 127.0.0.1:8000) until SIGTERM or SIGINT.
    Store(ServeArgs),
    /// Serve the taxi company (default 127.0.0.1:8001).
    Taxi(ServeArgs),
    /// Serve the messaging provider (default 127.0.0.1:9000).
    Messaging(ServeArgs),
    /// Serve all three in one process.
    All(ServeArgs),
    /// Show or edit the services' trust policies (running services reload them).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data folder (created if absent): CA, keys, databases, policies, token.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The store's address; port 0 picks a free one (see <data>/store.addr).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8000")]
    store_listen: SocketAddr,
    /// The taxi service's address.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8001")]
    taxi_listen: SocketAddr,
    /// The messaging service's address.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9000")]
    messaging_listen: SocketAddr,
    /// Allow addresses beyond loopback.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Settings file (default <data>/config.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What the simulated customer answers to a delivered message.
    #[arg(long, value_name = "accept|decline|none")]
    customer_reply: Option<CustomerReply>,
    /// How long a taxi driver stays busy after being assigned, in seconds.
    #[arg(long, value_name = "SECONDS")]
    trip_seconds: Option<u64>,
    /// How often the policy files are checked for changes (SIGHUP reloads at once).
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    policy_poll_ms: u64,
}

impl ServeArgs {
    fn listen(&self, kind: ServiceKind) -> SocketAddr {
        match kind {
            ServiceKind::Store => self.store_listen,
            ServiceKind::Taxi => self.taxi_listen,
            ServiceKind::Messaging => self.messaging_listen,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Allow a program (its executable's SHA-256); without --resource/--op it
    /// gets what the case study needs of each service.
    Allow {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// store, taxi, messaging or all.
        #[arg(long, value_name = "NAME")]
        service: Target,
        /// The executable's SHA-256 (64 hex digits).
        #[arg(long, value_name = "HEX")]
        sha256: String,
        /// A resource: exact path, "prefix/*" or "*" (repeatable).
        #[arg(long, value_name = "R")]
        resource: Vec<ResourcePattern>,
        /// read or write (repeatable).
        #[arg(long, value_name = "read|write")]
        op: Vec<Op>,
        /// The rule's name, shown in proofs.
        #[arg(long, default_value = "operator approval")]
        name: String,
    },
    /// Remove every allow rule naming an executable.
    Revoke {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "NAME")]
        service: Target,
        #[arg(long, value_name = "HEX")]
        sha256: String,
    },
    /// Trust a launcher's root certificate (e.g. <launcher data>/pki/root.pem).
    TrustRoot {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "NAME")]
        service: Target,
        /// PEM file with the one root certificate.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The name proofs give it (default: its common name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Change top-level settings.
    Set {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "NAME")]
        service: Target,
        /// Accept runs without a compartment (launcher --insecure-no-compartment).
        #[arg(long, value_name = "true|false")]
        allow_insecure: Option<bool>,
        /// Standard layers a run may lack (comma-separated; replaces the list).
        #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
        allow_degraded: Option<Vec<String>>,
        /// Empty the list of layers a run may lack.
        #[arg(long, conflicts_with = "allow_degraded")]
        no_degraded: bool,
        /// Oldest run certificate accepted, seconds since the run started.
        #[arg(long, value_name = "SECONDS")]
        max_certificate_age: Option<u64>,
        /// Largest difference between a request's timestamp and now, seconds.
        #[arg(long, value_name = "SECONDS")]
        timestamp_skew: Option<u64>,
    },
    /// Show the policies.
    Show {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "NAME", default_value = "all")]
        service: Target,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Store(args) => serve(vec![ServiceKind::Store], args),
        Command::Taxi(args) => serve(vec![ServiceKind::Taxi], args),
        Command::Messaging(args) => serve(vec![ServiceKind::Messaging], args),
        Command::All(args) => serve(ServiceKind::ALL.to_vec(), args),
        Command::Policy(command) => policy(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mock-services: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn sha256(text: &str) -> anyhow::Result<Sha256Hex> {
    text.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|e| anyhow::anyhow!("--sha256: {e}"))
}

fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    let report = match command {
        PolicyCommand::Allow {
            data,
            service,
            sha256: hash,
            resource,
            op,
            name,
        } => policy_cli::allow(
            &DataDir::new(data),
            service,
            &AllowRequest {
                sha256: sha256(&hash)?,
                resources: resource,
                ops: op,
                name,
            },
        )?,
        PolicyCommand::Revoke {
            data,
            service,
            sha256: hash,
        } => policy_cli::revoke(&DataDir::new(data), service, sha256(&hash)?)?,
        PolicyCommand::TrustRoot {
            data,
            service,
            ca,
            name,
        } => policy_cli::trust_root(&DataDir::new(data), service, &ca, name.as_deref())?,
        PolicyCommand::Set {
            data,
            service,
            allow_insecure,
            allow_degraded,
            no_degraded,
            max_certificate_age,
            timestamp_skew,
        } => policy_cli::set(
            &DataDir::new(data),
            service,
            &SetRequest {
                allow_insecure,
                allow_degraded: if no_degraded {
                    Some(Vec::new())
                } else {
                    allow_degraded
                },
                max_certificate_age_s: max_certificate_age,
                timestamp_skew_s: timestamp_skew,
            },
        )?,
        PolicyCommand::Show { data, service } => policy_cli::show(&DataDir::new(data), service)?,
    };
    print!("{report}");
    Ok(())
}

fn serve(kinds: Vec<ServiceKind>, args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref(), &DataDir::new(&args.data).config())?;
    if let Some(reply) = args.customer_reply {
        settings.customer_reply = reply;
    }
    if let Some(secs) = args.trip_seconds {
        settings.trip_seconds = secs;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // Before anything is printed: whoever reads "listening" may signal at once.
        let signals = Signals::install()?;
        let mut running = Vec::new();
        for kind in kinds {
            let config = ServiceConfig {
                data: args.data.clone(),
                listen: args.listen(kind),
                allow_non_loopback: args.allow_non_loopback,
                settings: settings.clone(),
                policy_poll: Duration::from_millis(args.policy_poll_ms),
            };
            let service = mock_services::start(kind, config).await?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{kind} listening on https://{}", service.addr())?;
            stdout.flush()?;
            running.push(service);
        }
        let failure = wait_for_stop(signals, &mut running).await;
        for service in running {
            service.stop().await?;
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    })
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }
}

/// Until SIGTERM or SIGINT (reloading policies on SIGHUP), or until a
/// service fails; returns that failure.
async fn wait_for_stop(
    mut signals: Signals,
    running: &mut [mock_services::RunningService],
) -> Option<anyhow::Error> {
    let watches: Vec<_> = running.iter().map(|s| s.policy_watch()).collect();
    let mut failures: Vec<Pin<Box<dyn Future<Output = anyhow::Error> + Send + '_>>> = running
        .iter_mut()
        .map(|s| Box::pin(s.failed()) as Pin<Box<dyn Future<Output = _> + Send>>)
        .collect();
    let mut first_failure = std::future::poll_fn(|cx| {
        for f in failures.iter_mut() {
            if let Poll::Ready(err) = f.as_mut().poll(cx) {
                return Poll::Ready(err);
            }
        }
        Poll::Pending
    });
    loop {
        tokio::select! {
            _ = signals.term.recv() => {
                tracing::info!(signal = "SIGTERM", "stop requested");
                return None;
            }
            _ = signals.int.recv() => {
                tracing::info!(signal = "SIGINT", "stop requested");
                return None;
            }
            _ = signals.hup.recv() => {
                for watch in &watches {
                    let w = watch.clone();
                    let _ = tokio::task::spawn_blocking(move || w.reload("SIGHUP")).await;
                }
            }
            err = &mut first_failure => return Some(err),
        }
    }
}
