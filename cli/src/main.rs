//! `attestable`: the command line for the attestable launcher.
//!
//! Talks to the launcher only over its HTTP API; certificate decoding and
//! policy decisions (`cert show --file`, `cert verify`) run offline with
//! `attestable-data`. Module map: `args` (the command line), `connection`
//! (finding the launcher), `client` (HTTP and its errors), `commands/*` (one
//! module per command group), `follow` (live run output), `menu`,
//! `certinfo` (decoding chains), `views` (the API's JSON shapes).

mod args;
mod certinfo;
mod client;
mod commands;
mod connection;
mod demo;
mod error;
mod follow;
mod format;
mod menu;
mod views;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::commands::Ctx;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`attestable runs list | head`) instead of failing to print.
    // SAFETY: setting a signal disposition at start-up, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };

    let cli = Cli::parse();
    let command = match cli.command {
        Some(command) => command,
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => Command::Menu,
        None => {
            let _ = Cli::command().write_long_help(&mut std::io::stderr());
            eprintln!(
                "\nattestable: no command given (the menu needs a terminal; `attestable menu` reads piped input)"
            );
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    let mut ctx = Ctx::new(cli.connection, json);
    match commands::dispatch(&mut ctx, command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            if json {
                let _ = writeln!(stderr, "{}", err.to_json());
            } else {
                let _ = writeln!(stderr, "attestable: error: {err}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
