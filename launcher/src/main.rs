//! `launcher`: the attestable launcher daemon.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
        } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(run(ServeOptions {
                    data,
                    listen,
                    config,
                    camb_compat,
                }))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("launcher: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
