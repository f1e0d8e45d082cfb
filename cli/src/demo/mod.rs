//! `attestable demo`: the case study end to end on loopback, in one command.
//!
//! 1. checks the prerequisites (a C compiler, OpenSSL 3's headers and
//!    libcrypto) and 2. builds `launcher` and `mock-services` beside this
//!    executable (`bins`); 3. uses a kept data folder (`launcher/`,
//!    `services/`, their logs); 4. starts the services and the launcher on
//!    ephemeral ports, stops at once if a compartment layer is missing
//!    (`prereq`), registers the services and posts a new sale; 5. uploads and
//!    compiles `integration_process.c` (embedded here) with the services CA as
//!    its anchor, shows the measurement and approves it in the services'
//!    policies with the operator's commands (`services`); 6. runs it live
//!    (`live`) and shows its certificate, the outcome the services recorded
//!    and the brokered calls (`report`); 7. stops everything it started,
//!    whatever happened (`procs`).

mod bins;
mod live;
mod prereq;
mod procs;
mod report;
mod services;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use self::bins::Binaries;
use self::procs::{Kind, Supervisor};
use self::services::{Operator, PolicyCommand, SERVICES};
use crate::client::{Api, Subject};
use crate::connection::Connection;
use crate::error::{CliError, Result};
use crate::format::{duration_ms, short};
use crate::views::{Build, Platform, Program, Run, RunSummary, parse};

/// The case study's program, as shipped in `integration-process/`.
const PROGRAM_NAME: &str = "integration_process.c";
const PROGRAM: &str = include_str!("../../../integration-process/integration_process.c");

/// Longest wait for a daemon to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a booked driver stays busy in the demo (the services' default is
/// 120 s): five drivers, so five demos within this time still find a taxi.
const TRIP_SECONDS: &str = "30";

const HELP: &str = "\
Plays the case study on loopback: starts the store, taxi and messaging services and a launcher,
uploads integration_process.c, compiles it, approves its measurement in the services' policies,
runs it in its compartment, and shows its certificate, what the services recorded and the
brokered calls. Everything it starts is stopped at the end, on errors and on Ctrl-C; the data
folder is kept and reused.

Examples:
  cargo run --release --bin attestable -- demo
  attestable demo --customer-reply decline
  attestable demo --sale-total 99.00                 no ride: not above 150.00
  attestable demo --bin-dir target/debug --data /tmp/demo";

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct DemoArgs {
    /// Data folder, kept and reused: launcher/ and services/ inside, with their logs.
    #[arg(long, value_name = "DIR", default_value = "attestable-demo")]
    pub data: PathBuf,

    /// Use the launcher and mock-services binaries in DIR instead of building them.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Run without these compartment layers when the machine lacks them (recorded in every
    /// run and certificate; the demo makes the services' policies accept it).
    #[arg(long, value_name = "LAYER[,LAYER]", value_delimiter = ',')]
    pub allow_degraded: Vec<String>,

    /// Run the program without any compartment (recorded as insecure; the demo makes the
    /// services' policies accept it).
    #[arg(long, conflicts_with = "allow_degraded")]
    pub insecure_no_compartment: bool,

    /// What the simulated customer answers the message about the taxi.
    #[arg(long, value_name = "REPLY", value_parser = ["accept", "decline", "none"], default_value = "accept")]
    pub customer_reply: String,

    /// The new sale's total, with two decimals; a ride is booked when it is above 150.00.
    #[arg(long, value_name = "AMOUNT", default_value = "189.90", value_parser = parse_total)]
    pub sale_total: String,
}

fn parse_total(s: &str) -> std::result::Result<String, String> {
    let (whole, cents) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && whole.len() <= 10 && cents.len() == 2 && digits(cents) {
        Ok(s.to_owned())
    } else {
        Err("expected an amount with two decimals, e.g. 189.90".into())
    }
}

/// Runs the demo; exits 0 when the case study completed.
pub fn run(args: DemoArgs, json: bool) -> Result<u8> {
    if json {
        return Err(CliError::Input(
            "the demo prints text for a person; run it without --json".into(),
        ));
    }
    let started = Instant::now();
    let supervisor = Supervisor::install()?;
    println!(
        "attestable demo: the case study on loopback\n\
         A store pays a taxi ride home for any bill above 150.00. The program that books it runs\n\
         in a compartment; the services release data only to what the launcher attests."
    );
    let mut demo = Demo {
        args,
        sup: supervisor,
        times: Times::default(),
    };
    let played = demo.play();
    demo.sup.yield_to_signal();
    let stopped = demo.sup.stop_all();
    if !stopped.is_empty() {
        let how: Vec<String> = stopped
            .iter()
            .map(|s| format!("{} {}", s.name, s.how))
            .collect();
        println!("7. Stopped what the demo started: {}", how.join("; "));
    }
    let next = played?;
    let t = &demo.times;
    println!(
        "Done in {}: building the binaries {}, compiling the program {}, the run {}.",
        secs(started.elapsed()),
        t.binaries
            .map(secs)
            .unwrap_or_else(|| "0 (--bin-dir)".into()),
        t.compile.map(secs).unwrap_or_default(),
        t.run.map(secs).unwrap_or_default(),
    );
    println!("{next}");
    Ok(0)
}

/// `1.4 s`, `52 ms`.
fn secs(d: Duration) -> String {
    duration_ms(d.as_millis() as u64)
}

#[derive(Debug, Default)]
struct Times {
    binaries: Option<Duration>,
    compile: Option<Duration>,
    run: Option<Duration>,
}

struct Demo {
    args: DemoArgs,
    sup: Supervisor,
    times: Times,
}

/// The data folder's parts, as the user named them (what the printed
/// commands show), and the launcher's absolute (it needs one).
struct Folders {
    root: PathBuf,
    launcher: PathBuf,
    services: PathBuf,
    launcher_abs: PathBuf,
}

impl Folders {
    fn prepare(root: &Path) -> Result<(Self, bool)> {
        let reused = root.join("launcher/pki/root.pem").is_file();
        if !root.is_dir() {
            // Others may pass through (a root launcher's sandbox user must
            // reach launcher/ inside), not list.
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o711);
            builder.create(root).map_err(|e| {
                CliError::Input(format!("creating the data folder {}: {e}", root.display()))
            })?;
        }
        let abs = fs::canonicalize(root).map_err(|e| {
            CliError::Input(format!("resolving the data folder {}: {e}", root.display()))
        })?;
        Ok((
            Self {
                root: root.to_path_buf(),
                launcher: root.join("launcher"),
                services: root.join("services"),
                launcher_abs: abs.join("launcher"),
            },
            reused,
        ))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }
}

/// What step 4 started.
struct Started {
    api: Api,
    services_pid: u32,
    operator: Operator,
}

impl Demo {
    fn play(&mut self) -> Result<String> {
        let tool = prereq::check_toolchain()?;
        step(
            1,
            format!(
                "Prerequisites: {} · {} (headers and libcrypto)",
                tool.compiler, tool.openssl
            ),
        );

        let bins = self.binaries()?;

        let (folders, reused) = Folders::prepare(&self.args.data)?;
        step(
            3,
            format!(
                "Data folder {}: {}",
                folders.root.display(),
                if reused {
                    "reused (the launcher's keys and records, the services' CA, keys and databases)"
                } else {
                    "new (keys and databases are made at first start)"
                }
            ),
        );

        let started = self.start(&bins, &folders)?;
        let (program, build) = self.compile_and_approve(&started, &folders, &bins)?;
        let run = self.run_and_report(&started, program, build)?;
        Ok(format!(
            "The data stays in {0} for the next run. To look around, serve it and use the CLI: \
             `{1} serve --data {2} &` then `attestable runs list`, `attestable cert show {3}`.",
            folders.root.display(),
            bins.launcher().display(),
            folders.launcher_abs.display(),
            run
        ))
    }

    /// Step 5: the program uploaded, compiled with the services CA as its
    /// anchor, its measurement shown and approved; returns (program, build).
    fn compile_and_approve(
        &mut self,
        started: &Started,
        folders: &Folders,
        bins: &Binaries,
    ) -> Result<(i64, i64)> {
        let api = &started.api;
        let ca_pem = read(&folders.services.join("services-ca.pem"))?;
        let program: Program = parse(
            &api.upload(PROGRAM_NAME, PROGRAM.as_bytes().to_vec())?,
            "POST programs",
        )?;
        let clock = Instant::now();
        let build_value = api
            .post_slow(
                &format!("/v1/programs/{}/builds", program.id),
                &json!({"services_anchor_pem": ca_pem}),
                Subject::Program(program.id),
            )
            .map_err(|e| match e {
                CliError::CompileFailed { message, build } => CliError::CompileFailed {
                    message: format!("{PROGRAM_NAME} did not compile: {message}"),
                    build,
                },
                other => other,
            })?;
        self.times.compile = Some(clock.elapsed());
        let build: Build = parse(&build_value, "POST builds")?;
        let exe = build
            .executable_sha256
            .clone()
            .ok_or_else(|| CliError::Input(format!("build {} has no executable", build.id)))?;
        step(
            5,
            format!(
                "Uploaded {PROGRAM_NAME} (program {}, source SHA-256 {}) and compiled it in {} \
                 (build {}); its measurement:",
                program.id,
                short(Some(&program.source_sha256)),
                secs(clock.elapsed()),
                build.id
            ),
        );
        print!("{}", report::measurement(&build_value));
        detail(
            "Approval by the services' operator: trust this launcher's root, allow this \
             executable what the case study needs",
        );
        self.approve(folders, bins, &exe, started.services_pid)?;
        Ok((program.id, build.id))
    }

    /// Step 6: the run, live; then its certificate, the outcome the services
    /// recorded and the brokered calls. Returns the run's id when it exited 0.
    fn run_and_report(&mut self, started: &Started, program: i64, build: i64) -> Result<i64> {
        let api = &started.api;
        let before = started.operator.high_water()?;
        let clock = Instant::now();
        let queued: RunSummary = parse(
            &api.post(
                &format!("/v1/programs/{program}/runs"),
                &json!({"build_id": build}),
                Subject::Program(program),
            )?,
            "POST runs",
        )?;
        let id = queued.id;
        step(
            6,
            format!("Running it as run {id} in the compartment; its output, live:"),
        );
        let ended = live::show(api, id, &mut std::io::stdout())?;
        self.times.run = Some(clock.elapsed());
        let run: Run = parse(&ended, "GET run")?;
        detail(&format!(
            "run {id} {}{}",
            run.summary.describe_end(),
            run.summary
                .duration_ms
                .map(|ms| format!(" after {}", duration_ms(ms)))
                .unwrap_or_default()
        ));
        if run.has_certificate {
            let path = format!("/v1/runs/{id}/certificate");
            let pem = api.get_text(&path, Subject::Run(id))?;
            let info = crate::certinfo::decode(&pem).map_err(|e| CliError::BadAnswer {
                request: format!("GET {path}"),
                detail: e,
            })?;
            detail("Its certificate, issued by the launcher to the key the program made:");
            print!(
                "{}",
                report::certificate(&info, attestable_data::pki::unix_now())
            );
        } else {
            detail("It has no certificate: it never asked the launcher for one.");
        }
        let outcome = started.operator.outcome_since(before)?;
        detail("The outcome, from the services' operator views:");
        print!("{}", report::outcome(&outcome));
        let calls = api.get(&format!("/v1/runs/{id}/calls"), Subject::Run(id))?;
        detail(
            "Brokered calls (the launcher relayed ciphertext; sizes and latency as it measured):",
        );
        print!("{}", report::calls(&calls));
        let _ = std::io::stdout().flush();

        if run.summary.exit_status() != 0 {
            return Err(CliError::Input(format!(
                "the integration process failed: run {id} {}; its reason is in its output above",
                run.summary.describe_end()
            )));
        }
        Ok(id)
    }

    /// Step 2: the binaries, built beside this executable unless `--bin-dir`.
    fn binaries(&mut self) -> Result<Binaries> {
        if let Some(dir) = &self.args.bin_dir {
            let bins = Binaries { dir: dir.clone() };
            bins.check()?;
            step(
                2,
                format!(
                    "Binaries: launcher and mock-services from {} (--bin-dir)",
                    dir.display()
                ),
            );
            return Ok(bins);
        }
        let plan = bins::plan_here()?;
        step(
            2,
            format!(
                "Building the launcher and the services: {}",
                plan.describe()
            ),
        );
        let clock = Instant::now();
        let (pid, _) = self
            .sup
            .spawn("cargo", &mut plan.command(), Kind::Foreground)
            .map_err(|e| CliError::Input(format!("{e}; is cargo installed? Or pass --bin-dir")))?;
        let status = self.sup.wait(pid)?;
        if !status.success() {
            return Err(CliError::Input(format!(
                "`{}` failed ({status}); its messages are above",
                plan.describe()
            )));
        }
        self.times.binaries = Some(clock.elapsed());
        plan.binaries.check()?;
        detail(&format!(
            "built in {}: {}, {}",
            secs(clock.elapsed()),
            plan.binaries.launcher().display(),
            plan.binaries.mock_services().display()
        ));
        Ok(plan.binaries)
    }

    /// Step 4: the services and the launcher, checked, connected, and a new sale.
    fn start(&self, bins: &Binaries, folders: &Folders) -> Result<Started> {
        let services_log = folders.log("services");
        let mut services = Command::new(bins.mock_services());
        services
            .arg("all")
            .arg("--data")
            .arg(&folders.services)
            .args(["--store-listen", "127.0.0.1:0"])
            .args(["--taxi-listen", "127.0.0.1:0"])
            .args(["--messaging-listen", "127.0.0.1:0"])
            .args(["--trip-seconds", TRIP_SECONDS])
            .args(["--customer-reply", &self.args.customer_reply])
            .stderr(log_file(&services_log)?);
        let launcher_log = folders.log("launcher");
        let mut launcher = Command::new(bins.launcher());
        launcher
            .arg("serve")
            .arg("--data")
            .arg(&folders.launcher_abs)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(log_file(&launcher_log)?);
        if self.args.insecure_no_compartment {
            launcher.arg("--insecure-no-compartment");
        } else if !self.args.allow_degraded.is_empty() {
            launcher
                .arg("--allow-degraded")
                .arg(self.args.allow_degraded.join(","));
        }
        // Both start at once; each says "listening" once its .addr file is written.
        let (services_pid, services_out) =
            self.sup
                .spawn("mock-services", &mut services, Kind::Daemon)?;
        let (launcher_pid, launcher_out) =
            self.sup.spawn("launcher", &mut launcher, Kind::Daemon)?;
        let services_lines = procs::lines(services_out.expect("a daemon's stdout is piped"));
        let launcher_lines = procs::lines(launcher_out.expect("a daemon's stdout is piped"));
        self.wait_listening(
            "mock-services",
            services_pid,
            &services_lines,
            SERVICES.len(),
            &services_log,
        )?;
        self.wait_listening("launcher", launcher_pid, &launcher_lines, 1, &launcher_log)?;

        let addr = read(&folders.launcher.join("launcher.addr"))?;
        let token_file = folders.launcher.join("api-token");
        let ca_file = folders.launcher.join("pki/root.pem");
        let api = Api::new(Connection {
            url: format!("https://{}", addr.trim()),
            token: read(&token_file)?.trim().to_owned(),
            token_file,
            ca_pem: read(&ca_file)?.into_bytes(),
            ca_file,
            data_dir: Some(folders.launcher.clone()),
        })?;
        let operator = Operator::new(&folders.services)?;
        step(
            4,
            format!(
                "Started on loopback (logs: {}, {})",
                services_log.display(),
                launcher_log.display()
            ),
        );
        for service in SERVICES {
            println!("     {service:<10} {}", operator.base_url(service)?);
        }

        let platform: Platform = parse(&api.get("/v1/platform", Subject::None)?, "GET platform")?;
        let c = &platform.compartment;
        println!(
            "     {:<10} {}  (compartment {}: {})",
            "launcher",
            api.connection().url,
            c.backend,
            layer_summary(c)
        );
        if let Some(refusal) = prereq::compartment_refusal(c, &self.args.data) {
            return Err(CliError::Input(refusal));
        }
        if c.insecure {
            detail(
                "WARNING: --insecure-no-compartment: the program runs unconfined, and its \
                 certificate says so",
            );
        }

        for service in SERVICES {
            api.put(
                &format!("/v1/services/{service}"),
                &json!({"base_url": operator.base_url(service)?, "ca_pem": read(&folders.services.join("services-ca.pem"))?}),
                Subject::Service(service),
            )?;
        }
        detail(&format!(
            "registered {} with the launcher (PUT /v1/services/{{id}}, trusting services-ca.pem)",
            SERVICES.join(", ")
        ));
        let sale = operator.new_sale(&self.args.sale_total)?;
        detail(&format!(
            "a new sale at the store, what starts the case study: sale {}, {} {} (POST /api/sales)",
            sale["sale_id"],
            sale["total"].as_str().unwrap_or("?"),
            sale["currency"].as_str().unwrap_or("")
        ));
        Ok(Started {
            api,
            services_pid,
            operator,
        })
    }

    fn wait_listening(
        &self,
        name: &str,
        pid: u32,
        lines: &Receiver<String>,
        want: usize,
        log: &Path,
    ) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = 0;
        while seen < want {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains("listening on https://") => seen += 1,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: it is ending; let the status tell.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if let Some(status) = self.sup.exited(pid) {
                return Err(CliError::Input(format!(
                    "{name} exited ({status}) before serving; the end of its log ({}):\n{}",
                    log.display(),
                    log_tail(log)
                )));
            }
            if Instant::now() > deadline {
                return Err(CliError::Input(format!(
                    "{name} did not start listening within {} s; the end of its log ({}):\n{}",
                    START_TIMEOUT.as_secs(),
                    log.display(),
                    log_tail(log)
                )));
            }
        }
        Ok(())
    }

    /// The operator's approval, printed as the commands it is, then put in
    /// force at once (SIGHUP) and confirmed from the services' log.
    fn approve(
        &self,
        folders: &Folders,
        bins: &Binaries,
        exe: &str,
        services_pid: u32,
    ) -> Result<()> {
        let root = folders.launcher.join("pki/root.pem");
        let root = root.display().to_string();
        let mut commands = vec![
            PolicyCommand::new(
                &folders.services,
                &["trust-root", "--service", "all", "--ca", &root],
            ),
            PolicyCommand::new(
                &folders.services,
                &["allow", "--service", "all", "--sha256", exe],
            ),
        ];
        if let Some(set) = services::compartment_settings(
            &folders.services,
            &self.args.allow_degraded,
            self.args.insecure_no_compartment,
        )? {
            let set: Vec<&str> = set.iter().map(String::as_str).collect();
            commands.push(PolicyCommand::new(&folders.services, &set));
        }
        for command in &commands {
            println!("     $ {}", command.describe());
            for line in command.run(&bins.mock_services())?.lines() {
                println!("       {line}");
            }
        }
        println!(
            "     $ kill -HUP {services_pid}      # in force now (the services also notice \
             the change within 0.5 s)"
        );
        services::reload_policies(&folders.log("services"), || {
            self.sup.signal(services_pid, libc::SIGHUP)
        })?;
        println!("       {} reloaded their policies", SERVICES.join(", "));
        Ok(())
    }
}

fn step(n: u8, text: impl std::fmt::Display) {
    println!("{n}. {text}");
}

fn detail(text: &str) {
    println!("   {text}");
}

/// `namespaces, landlock, … active` or each layer with its status.
fn layer_summary(c: &crate::views::Compartment) -> String {
    if c.layers.is_empty() {
        return if c.insecure {
            "no layers, INSECURE".into()
        } else {
            "no layers".into()
        };
    }
    if c.layers.iter().all(|l| l.status == "active") {
        let names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
        return format!("{} active", names.join(", "));
    }
    c.layers
        .iter()
        .map(|l| format!("{} {}", l.name, l.status))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("reading {}: {e}", path.display())))
}

/// A fresh log file for a daemon's stderr (0600: it is the operator's).
fn log_file(path: &Path) -> Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| CliError::Input(format!("creating {}: {e}", path.display())))
}

/// The last lines of a log, indented.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{Compartment, Layer};

    #[test]
    fn totals_have_two_decimals() {
        assert_eq!(parse_total("189.90").unwrap(), "189.90");
        assert!(parse_total("150.00").is_ok());
        for bad in [
            "150",
            "150.0",
            "150.000",
            "-1.00",
            "1e3.00",
            ".50",
            "12345678901.00",
        ] {
            assert!(parse_total(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layers_are_summarized() {
        let layer = |name: &str, status: &str| Layer {
            name: name.into(),
            status: status.into(),
            detail: String::new(),
        };
        let mut c = Compartment {
            backend: "linux-sandbox".into(),
            layers: vec![layer("namespaces", "active"), layer("landlock", "active")],
            insecure: false,
        };
        assert_eq!(layer_summary(&c), "namespaces, landlock active");
        c.layers[1].status = "disabled".into();
        assert_eq!(layer_summary(&c), "namespaces active, landlock disabled");
    }

    #[test]
    fn the_embedded_program_is_the_case_studys() {
        assert!(PROGRAM.contains("int main(int argc, char **argv)"));
        assert!(PROGRAM.contains("THRESHOLD_CENTS 15000"));
    }
}
