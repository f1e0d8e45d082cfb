//! `launcher`: the attestable launcher daemon.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use launcher::compartment::Choice;
use launcher::serve::{ServeOptions, run};

#[derive(Debug, Parser)]
#[command(name = "launcher", version, about = "The attestable launcher daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTPS API until SIGTERM or SIGINT.
    Serve {
        /// Data folder (created if absent): database, store, keys, token.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free port (see <data>/launcher.addr).
        #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        /// TOML configuration; built-in defaults otherwise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also serve the CAMB launcher's routes, without a token (loopback only).
        #[arg(long)]
        camb_compat: bool,
        /// Run without these compartment layers when the machine lacks them
        /// (each is switched off and recorded in every run and certificate).
        #[arg(long, value_name = "LAYER[,LAYER]", value_delimiter = ',')]
        allow_degraded: Vec<String>,
        /// Run programs without any compartment (recorded as insecure in every
        /// run and certificate; default service policies reject them).
        #[arg(long, conflicts_with = "allow_degraded")]
        insecure_no_compartment: bool,
    },
    /// Manage the launcher's keys and certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Replace the attestation intermediate that signs run certificates (a
    /// running daemon picks it up by itself; earlier certificates stay valid).
    RotateAttestation {
        /// The launcher's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The launcher's configuration, if it names an operator root ([pki]).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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
        Command::Serve {
            data,
            listen,
            config,
            camb_compat,
            allow_degraded,
            insecure_no_compartment,
        } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(run(ServeOptions {
                    data,
                    listen,
                    config,
                    camb_compat,
                    compartment: if insecure_no_compartment {
                        Choice::Insecure
                    } else {
                        Choice::Native { allow_degraded }
                    },
                }))
            }),
        Command::Pki(PkiCommand::RotateAttestation { data, config }) => {
            launcher::pki::rotate_command(&data, config.as_deref()).map(|message| {
                println!("{message}");
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("launcher: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
