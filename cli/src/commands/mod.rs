//! One module per command group. Each command returns the process's exit
//! status; errors go up to `main`, which prints them.
//!
//! The connection is resolved on first use, so commands that work offline
//! (`completions`, `cert verify`, `cert show --file`) never need a launcher,
//! and a command that starts its own launcher first (the case study's
//! `demo`) can resolve it afterwards.

pub mod build;
pub mod cert;
pub mod platform;
pub mod programs;
pub mod run;
pub mod runs;
pub mod services;

use clap::CommandFactory;

use crate::args::{Cli, Command, ConnectionArgs};
use crate::client::Api;
use crate::connection::{self, Environment};
use crate::error::Result;

/// What every command may use.
pub struct Ctx {
    args: ConnectionArgs,
    /// `--json`: machine-readable output.
    pub json: bool,
    api: Option<Api>,
}

impl Ctx {
    pub fn new(args: ConnectionArgs, json: bool) -> Self {
        Self {
            args,
            json,
            api: None,
        }
    }

    /// The launcher's API, resolving the connection on first use. A failed
    /// resolution is not kept: the menu retries on the next action.
    pub fn api(&mut self) -> Result<&Api> {
        if self.api.is_none() {
            let conn = connection::resolve(&self.args, &Environment::from_process())?;
            self.api = Some(Api::new(conn)?);
        }
        Ok(self.api.as_ref().expect("just set"))
    }
}

pub fn dispatch(ctx: &mut Ctx, command: Command) -> Result<u8> {
    use crate::args::{CertCommand, ProgramsCommand, RunsCommand, ServicesCommand};
    match command {
        Command::Programs(ProgramsCommand::List) => programs::list(ctx),
        Command::Programs(ProgramsCommand::Upload { file }) => programs::upload(ctx, &file),
        Command::Programs(ProgramsCommand::Show { id }) => programs::show(ctx, id),
        Command::Programs(ProgramsCommand::Delete { id }) => programs::delete(ctx, id),
        Command::Build(args) => build::build(ctx, &args),
        Command::Run(args) => run::run(ctx, args),
        Command::Runs(RunsCommand::List { program }) => runs::list(ctx, program),
        Command::Runs(RunsCommand::Show { id }) => runs::show(ctx, id),
        Command::Runs(RunsCommand::Cancel { id }) => runs::cancel(ctx, id),
        Command::Cert(CertCommand::Show { run, file, pem }) => {
            cert::show(ctx, run, file.as_deref(), pem)
        }
        Command::Cert(CertCommand::Verify {
            policy,
            cert,
            resource,
            op,
            service,
        }) => cert::verify(ctx, &policy, &cert, resource.as_deref(), op, &service),
        Command::Services(ServicesCommand::List) => services::list(ctx),
        Command::Services(ServicesCommand::Add { id, url, ca }) => {
            services::add(ctx, &id, &url, &ca)
        }
        Command::Services(ServicesCommand::Remove { id }) => services::remove(ctx, &id),
        Command::Platform => platform::show(ctx),
        Command::Menu => crate::menu::run(ctx, std::io::stdin().lock()),
        Command::Demo(args) => crate::demo::run(args, ctx.json),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "attestable", &mut std::io::stdout());
            Ok(0)
        }
    }
}
