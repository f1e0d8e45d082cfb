//! The command line: every subcommand, flag and example (`--help`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  attestable programs upload hello.c          upload a C source
  attestable build 1                          compile program 1
  attestable run 1 --arg world                run its latest build, following the output
  attestable run 1 --detach                   start it and return at once
  attestable cert show 7                      the certificate of run 7, decoded
  attestable cert verify --policy store/policy.toml run-7.pem --resource sales/last --op read
  attestable --json runs list                 machine-readable output
  attestable                                  the interactive menu (on a terminal)

Connection (before the command; first found wins): --url, --token-file and --ca; ATTESTABLE_URL,
ATTESTABLE_TOKEN_FILE and ATTESTABLE_CA; the config file (--config, ATTESTABLE_CONFIG,
default $XDG_CONFIG_HOME/attestable/config.toml); then a launcher data folder: --data DIR
(ATTESTABLE_DATA), else ./attestable-demo/launcher, else $XDG_DATA_HOME/attestable-launcher.";

/// `attestable`: upload, compile and run C programs in the attestable
/// launcher's compartments, and check their certificates.
#[derive(Debug, Parser)]
#[command(
    name = "attestable",
    version,
    about = "Upload, compile and run programs on an attestable launcher; inspect and verify their certificates",
    after_help = EXAMPLES,
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Print machine-readable JSON (the launcher's JSON, or the object the README documents).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the launcher is and how to trust and authenticate to it. These
/// come before the command (`attestable --data DIR runs list`): `services
/// add` has its own `--url` and `--ca`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// The launcher's URL, e.g. https://127.0.0.1:5000.
    #[arg(long, env = "ATTESTABLE_URL", value_name = "URL")]
    pub url: Option<String>,

    /// File holding the API token (a launcher's <data>/api-token).
    #[arg(long, env = "ATTESTABLE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The root certificate to trust for the launcher's HTTPS (its <data>/pki/root.pem).
    #[arg(long, env = "ATTESTABLE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// A local launcher's data folder: URL, token and CA are read from it.
    #[arg(long, env = "ATTESTABLE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Configuration file (TOML keys: url, token_file, ca, data).
    #[arg(long, env = "ATTESTABLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Uploaded programs: list, upload, show, delete.
    #[command(subcommand)]
    Programs(ProgramsCommand),

    /// Compile a program (waits for the compiler; shows its diagnostics on failure).
    #[command(after_help = "Examples:\n  attestable build 1\n  \
                            attestable build 1 --profile host --services-anchor services-ca.pem")]
    Build(BuildArgs),

    /// Run a program and follow it live; exits with the program's exit code.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),

    /// Runs: list, show, cancel.
    #[command(subcommand)]
    Runs(RunsCommand),

    /// Run certificates: show them decoded, verify them against a policy offline.
    #[command(subcommand)]
    Cert(CertCommand),

    /// The services the launcher brokers calls to.
    #[command(subcommand)]
    Services(ServicesCommand),

    /// What the launcher runs on: CPU, memory, compartment and its layers, toolchains.
    Platform,

    /// The interactive menu of the CAMB launcher's CLI (also: no arguments on a terminal).
    Menu,

    /// Play the case study on loopback: services, launcher, program, approval, run, outcome.
    Demo(crate::demo::DemoArgs),

    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  attestable completions bash > ~/.local/share/bash-completion/completions/attestable\n  \
                            attestable completions zsh > ~/.zfunc/_attestable"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

const RUN_HELP: &str = "\
Exit status: the program's exit code; 128+N when signal N ended it; 124 when it reached its
time limit; 130 when cancelled; 123 when the launcher shut down during the run; 125 on a
protocol error on its channel; 126 when the launcher could not start it; 1 when this command
itself failed (e.g. the launcher is unreachable).

Examples:
  attestable run 1
  attestable run 1 --arg one --arg 'two words' --time-limit 10
  attestable run 1 -- one 'two words'
  attestable run 1 --build 3 --detach";

#[derive(Debug, Subcommand)]
pub enum ProgramsCommand {
    /// List programs with their latest build and run (CAMB style).
    List,
    /// Upload a C source file.
    #[command(after_help = "Example:\n  attestable programs upload integration_process.c")]
    Upload {
        /// The `.c` file.
        file: PathBuf,
    },
    /// A program with its builds and runs.
    Show {
        /// Program id.
        #[arg(value_parser = id_parser())]
        id: i64,
    },
    /// Delete a program with its builds and runs.
    Delete {
        /// Program id.
        #[arg(value_parser = id_parser())]
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Program id.
    #[arg(value_parser = id_parser())]
    pub program_id: i64,
    /// Toolchain profile (see `attestable platform`); default: the launcher's.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// PEM file of the services' CA, compiled into the program as its trust anchor.
    #[arg(long, value_name = "FILE")]
    pub services_anchor: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Program id.
    #[arg(value_parser = id_parser())]
    pub program_id: i64,
    /// Run this build (default: the program's latest successful build).
    #[arg(long, value_name = "ID", value_parser = id_parser())]
    pub build: Option<i64>,
    /// An argument for the program (repeatable; kept in order).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Wall-clock limit in seconds (default and maximum: the launcher's).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..))]
    pub time_limit: Option<u32>,
    /// Return once the run is queued instead of following it.
    #[arg(long)]
    pub detach: bool,
    /// More arguments for the program, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub rest: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, oldest first.
    List {
        /// Only runs of this program.
        #[arg(long, value_name = "ID", value_parser = id_parser())]
        program: Option<i64>,
    },
    /// A run with its output.
    Show {
        /// Run id.
        #[arg(value_parser = id_parser())]
        id: i64,
    },
    /// Cancel a queued or running run.
    Cancel {
        /// Run id.
        #[arg(value_parser = id_parser())]
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// A run's certificate, decoded: measurement, platform, compartment, validity, chain.
    #[command(after_help = "Examples:\n  attestable cert show 7\n  \
                            attestable cert show 7 --pem > run-7.pem\n  \
                            attestable cert show --file run-7.pem")]
    Show {
        /// Run id (fetched from the launcher).
        #[arg(value_parser = id_parser(), required_unless_present = "file", conflicts_with = "file")]
        run: Option<i64>,
        /// Decode a PEM chain from a file instead (`-`: standard input); no launcher needed.
        #[arg(long, value_name = "PEM")]
        file: Option<PathBuf>,
        /// Print the PEM chain (run certificate, intermediate, root) instead.
        #[arg(long)]
        pem: bool,
    },
    /// Decide about a certificate chain as a service would, offline, with the proof.
    #[command(after_help = "\
Exit status: 0 allowed, 1 denied, 2 no decision (unreadable policy or certificate).

Examples:
  attestable cert verify --policy store/policy.toml run-7.pem
  attestable cert verify --policy store/policy.toml run-7.pem --service store --resource sales/last --op read")]
    Verify {
        /// The service's trust policy (TOML).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// PEM chain, run certificate first (`-`: standard input).
        cert: PathBuf,
        /// Also decide about this resource (e.g. sales/last).
        #[arg(long, value_name = "R", requires = "op")]
        resource: Option<String>,
        /// The operation on the resource.
        #[arg(long, value_enum, requires = "resource")]
        op: Option<OpArg>,
        /// The deciding service's name, as proofs show it.
        #[arg(long, value_name = "NAME", default_value = "service")]
        service: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpArg {
    Read,
    Write,
}

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// The registered services.
    List,
    /// Register (or replace) a service.
    #[command(
        after_help = "Example:\n  attestable services add store --url https://127.0.0.1:8000 --ca services-ca.pem"
    )]
    Add {
        /// The id programs name it with (a-z, 0-9, -).
        id: String,
        /// Its base URL.
        #[arg(long, value_name = "URL")]
        url: String,
        /// PEM file of the CA its TLS certificate must chain to.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
    },
    /// Remove a service.
    Remove {
        /// Service id.
        id: String,
    },
}

fn id_parser() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(1..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_arguments_keep_their_order_and_hyphens() {
        let cli = Cli::try_parse_from([
            "attestable",
            "run",
            "4",
            "--arg",
            "-v",
            "--arg",
            "two words",
            "--",
            "rest",
            "--x",
        ])
        .unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!("not a run");
        };
        assert_eq!(run.args, ["-v", "two words"]);
        assert_eq!(run.rest, ["rest", "--x"]);
    }

    #[test]
    fn services_add_has_its_own_url_and_ca() {
        let cli = Cli::try_parse_from([
            "attestable",
            "--url",
            "https://127.0.0.1:5000",
            "--ca",
            "root.pem",
            "services",
            "add",
            "store",
            "--url",
            "https://127.0.0.1:8000",
            "--ca",
            "services-ca.pem",
        ])
        .unwrap();
        assert_eq!(
            cli.connection.url.as_deref(),
            Some("https://127.0.0.1:5000")
        );
        assert_eq!(cli.connection.ca, Some(PathBuf::from("root.pem")));
        let Some(Command::Services(ServicesCommand::Add { url, ca, .. })) = cli.command else {
            panic!("not services add");
        };
        assert_eq!(url, "https://127.0.0.1:8000");
        assert_eq!(ca, PathBuf::from("services-ca.pem"));
    }

    #[test]
    fn ids_are_positive() {
        assert!(Cli::try_parse_from(["attestable", "runs", "show", "0"]).is_err());
        assert!(Cli::try_parse_from(["attestable", "runs", "show", "x"]).is_err());
        assert!(Cli::try_parse_from(["attestable", "run", "1", "--time-limit", "0"]).is_err());
    }

    #[test]
    fn resource_and_op_go_together() {
        let base = [
            "attestable",
            "cert",
            "verify",
            "--policy",
            "p.toml",
            "c.pem",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            Cli::try_parse_from(v)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["--resource", "sales/last"]).is_err());
        assert!(with(&["--op", "read"]).is_err());
        assert!(with(&["--resource", "sales/last", "--op", "read"]).is_ok());
    }
}
