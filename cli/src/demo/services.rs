//! The demo as the services' operator: their operator API (a new sale, the
//! trips and messages that show the outcome) and their trust policies,
//! edited with the `mock-services policy` commands an operator types.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attestable_data::policy::PolicyDocument;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::error::{CliError, Result};

/// The case study's services, in the order the program calls them.
pub const SERVICES: [&str; 3] = ["store", "taxi", "messaging"];

/// How long the services may take to put a new policy in force.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The services' operator API (`/api/…`, bearer `<data>/operator-token`).
pub struct Operator {
    dir: PathBuf,
    client: Client,
}

impl Operator {
    /// For the services of data folder `dir` (running: their `.addr` files exist).
    pub fn new(dir: &Path) -> Result<Self> {
        let ca_file = dir.join("services-ca.pem");
        let ca = fs::read(&ca_file).map_err(|e| read_error(&ca_file, e))?;
        let token_file = dir.join("operator-token");
        let token = fs::read_to_string(&token_file).map_err(|e| read_error(&token_file, e))?;
        let roots = reqwest::Certificate::from_pem_bundle(&ca)
            .map_err(|e| CliError::Input(format!("{}: {e}", ca_file.display())))?;
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| CliError::Input(format!("{} is not a token", token_file.display())))?;
        auth.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        let client = Client::builder()
            .tls_certs_only(roots)
            .no_proxy()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| CliError::Input(format!("setting up HTTPS to the services: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            client,
        })
    }

    /// `https://127.0.0.1:PORT` of `service`, from its `.addr` file.
    pub fn base_url(&self, service: &str) -> Result<String> {
        let file = self.dir.join(format!("{service}.addr"));
        let addr = fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
        Ok(format!("https://{}", addr.trim()))
    }

    pub fn get(&self, service: &str, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base_url(service)?);
        self.answer(service, "GET", path, self.client.get(url))
    }

    pub fn post(&self, service: &str, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base_url(service)?);
        self.answer(service, "POST", path, self.client.post(url).json(body))
    }

    fn answer(
        &self,
        service: &str,
        method: &str,
        path: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<Value> {
        let failed = |detail: String| {
            CliError::Input(format!(
                "the {service} service's operator API, {method} {path}: {detail}"
            ))
        };
        let response = request.send().map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = response.text().map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| failed(format!("the answer is not JSON ({e})")))
    }

    /// Posts a sale of `total` (e.g. `"189.90"`) for the customer after the
    /// last sale's (so each demo run serves another customer); returns it.
    pub fn new_sale(&self, total: &str) -> Result<Value> {
        let sales = self.get("store", "/api/sales?limit=1000")?;
        let customer = next_customer(&sales).ok_or_else(|| {
            CliError::Input("the store lists no sales, so no customer to sell to".into())
        })?;
        self.post(
            "store",
            "/api/sales",
            &json!({"customer_id": customer, "total": total}),
        )
    }

    /// The newest trip and message ids (0 for none): what a run adds comes after.
    pub fn high_water(&self) -> Result<HighWater> {
        let trips = self.get("taxi", "/api/trips?limit=1")?;
        let messages = self.get("messaging", "/api/messages?limit=1")?;
        Ok(HighWater {
            trip: trips["trips"][0]["trip_id"].as_i64().unwrap_or(0),
            message: messages["messages"][0]["message_id"].as_i64().unwrap_or(0),
        })
    }

    /// What the services recorded after `before`: the trip booked, its
    /// driver and car, and the customer's answer to the message about it.
    pub fn outcome_since(&self, before: HighWater) -> Result<Outcome> {
        let trips = self.get("taxi", "/api/trips?limit=100")?;
        let messages = self.get("messaging", "/api/messages?limit=100")?;
        Ok(outcome_from(&trips, &messages, before))
    }
}

fn read_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Input(format!("reading {}: {e}", path.display()))
}

/// The customer after the latest sale's, in id order (wrapping around).
fn next_customer(sales: &Value) -> Option<i64> {
    let list = sales["sales"].as_array()?;
    let mut ids: Vec<i64> = list
        .iter()
        .filter_map(|s| s["customer_id"].as_i64())
        .collect();
    let latest = *ids.first()?;
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .copied()
        .find(|&id| id > latest)
        .or(ids.first().copied())
}

/// The newest ids before a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HighWater {
    pub trip: i64,
    pub message: i64,
}

/// What the operator views show a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub trip: Option<Trip>,
    /// The answer to the message sent to the trip's customer: `ACCEPT`,
    /// `DECLINE`, or `None` (no answer yet); `None` also without a message.
    pub reply: Option<String>,
    pub messaged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub id: i64,
    pub plate: String,
    pub model: Option<String>,
    pub driver: String,
    pub eta_minutes: Option<i64>,
}

fn outcome_from(trips: &Value, messages: &Value, before: HighWater) -> Outcome {
    let empty = Vec::new();
    let trip = trips["trips"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|t| t["trip_id"].as_i64().is_some_and(|id| id > before.trip))
        .max_by_key(|t| t["trip_id"].as_i64());
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let trip_view = trip.map(|t| {
        let plate = text(&t["taxi_plate"]);
        let model = trips["drivers"].as_array().and_then(|drivers| {
            drivers
                .iter()
                .find(|d| d["taxi_plate"] == t["taxi_plate"])
                .and_then(|d| d["model"].as_str().map(str::to_owned))
        });
        Trip {
            id: t["trip_id"].as_i64().unwrap_or(0),
            plate,
            model,
            driver: text(&t["driver_name"]),
            eta_minutes: t["eta_minutes"].as_i64(),
        }
    });
    let phone = trip.map(|t| t["customer_phone"].clone());
    let message = messages["messages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|m| {
            m["message_id"]
                .as_i64()
                .is_some_and(|id| id > before.message)
        })
        .filter(|m| phone.as_ref().is_some_and(|p| m["phone"] == *p))
        .max_by_key(|m| m["message_id"].as_i64());
    Outcome {
        trip: trip_view,
        reply: message.and_then(|m| m["reply"].as_str().map(str::to_owned)),
        messaged: message.is_some(),
    }
}

/// One `mock-services policy …` command: what the operator types, and its run.
pub struct PolicyCommand {
    pub args: Vec<String>,
}

impl PolicyCommand {
    pub fn new(services_dir: &Path, args: &[&str]) -> Self {
        let mut all = vec!["policy".to_owned(), args[0].to_owned()];
        all.push("--data".into());
        all.push(services_dir.display().to_string());
        all.extend(args[1..].iter().map(|a| (*a).to_owned()));
        Self { args: all }
    }

    /// `mock-services policy allow --data … --service all --sha256 …`
    pub fn describe(&self) -> String {
        format!("mock-services {}", crate::format::shell_words(&self.args))
    }

    /// Runs it; returns what it printed.
    pub fn run(&self, mock_services: &Path) -> Result<String> {
        let out = Command::new(mock_services)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| CliError::Input(format!("cannot run {}: {e}", mock_services.display())))?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(CliError::Input(format!(
                "`{}` failed ({}):\n{}",
                self.describe(),
                out.status,
                printed.trim_end()
            )));
        }
        Ok(printed)
    }
}

/// The `policy set` arguments that make every policy accept exactly this
/// compartment choice, or `None` when they all already do.
pub fn compartment_settings(
    services_dir: &Path,
    allow_degraded: &[String],
    insecure: bool,
) -> Result<Option<Vec<String>>> {
    let mut wanted_degraded = allow_degraded.to_vec();
    wanted_degraded.sort();
    let mut differs = false;
    for service in SERVICES {
        let path = services_dir.join(service).join("policy.toml");
        let doc = PolicyDocument::load(&path)
            .map_err(|e| CliError::Input(format!("the {service} policy: {e}")))?;
        let mut degraded = doc.allow_degraded.clone();
        degraded.sort();
        differs |= degraded != wanted_degraded || doc.allow_insecure != insecure;
    }
    if !differs {
        return Ok(None);
    }
    let mut args = vec![
        "set".to_owned(),
        "--service".into(),
        "all".into(),
        "--allow-insecure".into(),
        insecure.to_string(),
    ];
    if allow_degraded.is_empty() {
        args.push("--no-degraded".into());
    } else {
        args.push("--allow-degraded".into());
        args.push(allow_degraded.join(","));
    }
    Ok(Some(args))
}

/// Sends SIGHUP (through `hup`) and waits until the services' log at `log`
/// shows each of them put its policy back in force after it.
pub fn reload_policies(log: &Path, hup: impl FnOnce() -> Result<()>) -> Result<()> {
    let from = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    hup()?;
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let text = read_from(log, from)?;
        match reload_state(&text) {
            Reload::Done => return Ok(()),
            Reload::Rejected(line) => {
                return Err(CliError::Input(format!(
                    "a service rejected its new policy and keeps the previous one: {line}"
                )));
            }
            Reload::Waiting if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Reload::Waiting => {
                return Err(CliError::Input(format!(
                    "the services did not reload their policies within {} s of SIGHUP; see {}",
                    RELOAD_TIMEOUT.as_secs(),
                    log.display()
                )));
            }
        }
    }
}

fn read_from(path: &Path, from: u64) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| read_error(path, e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| read_error(path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| read_error(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
enum Reload {
    Waiting,
    Done,
    Rejected(String),
}

/// Reads the services' log lines written since the SIGHUP.
fn reload_state(log: &str) -> Reload {
    if let Some(line) = log.lines().find(|l| l.contains("policy rejected")) {
        return Reload::Rejected(line.trim().to_owned());
    }
    let reloaded = |service: &str| {
        log.lines().any(|l| {
            l.contains("policy reloaded")
                && l.contains("reason=\"SIGHUP\"")
                && l.split_whitespace()
                    .any(|w| w == format!("service={service}"))
        })
    };
    if SERVICES.iter().all(|s| reloaded(s)) {
        Reload::Done
    } else {
        Reload::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_customer_follows_the_latest_sale() {
        let sales = json!({"sales": [
            {"customer_id": 2}, {"customer_id": 4}, {"customer_id": 1}, {"customer_id": 2}
        ]});
        assert_eq!(next_customer(&sales), Some(4));
        let last = json!({"sales": [{"customer_id": 4}, {"customer_id": 1}]});
        assert_eq!(next_customer(&last), Some(1), "wraps around");
        assert_eq!(next_customer(&json!({"sales": []})), None);
    }

    #[test]
    fn the_outcome_is_what_came_after_the_high_water_mark() {
        let trips = json!({
            "drivers": [{"taxi_plate": "KTX4R17", "model": "Toyota Prius"}],
            "trips": [
                {"trip_id": 3, "taxi_plate": "KTX4R17", "driver_name": "Rosa", "customer_phone": "+1", "eta_minutes": 7},
                {"trip_id": 2, "taxi_plate": "OLD", "driver_name": "Old", "customer_phone": "+1"}
            ]
        });
        let messages = json!({"messages": [
            {"message_id": 5, "phone": "+2", "reply": "ACCEPT"},
            {"message_id": 4, "phone": "+1", "reply": "DECLINE"},
            {"message_id": 3, "phone": "+1", "reply": "ACCEPT"}
        ]});
        let o = outcome_from(
            &trips,
            &messages,
            HighWater {
                trip: 2,
                message: 3,
            },
        );
        let trip = o.trip.unwrap();
        assert_eq!(
            (trip.id, trip.plate.as_str(), trip.driver.as_str()),
            (3, "KTX4R17", "Rosa")
        );
        assert_eq!(trip.model.as_deref(), Some("Toyota Prius"));
        assert_eq!(
            o.reply.as_deref(),
            Some("DECLINE"),
            "the trip's customer's message"
        );
        assert!(o.messaged);

        let nothing = outcome_from(
            &trips,
            &messages,
            HighWater {
                trip: 3,
                message: 5,
            },
        );
        assert_eq!(
            nothing,
            Outcome {
                trip: None,
                reply: None,
                messaged: false
            }
        );
    }

    #[test]
    fn a_reload_is_done_when_every_service_reloaded_after_sighup() {
        let line = |s: &str, reason: &str| {
            format!(
                "2026-11-24T21:17:46Z  INFO mock_services::policy_watch: policy reloaded service={s} reason=\"{reason}\" trusted_roots=1 allow_rules=1\n"
            )
        };
        let mut log = line("store", "SIGHUP") + &line("taxi", "the file changed");
        assert_eq!(reload_state(&log), Reload::Waiting);
        log += &line("taxi", "SIGHUP");
        log += &line("messaging", "SIGHUP");
        assert_eq!(reload_state(&log), Reload::Done);
        let rejected = "ERROR policy rejected; the previous policy stays in force service=taxi";
        assert!(
            matches!(reload_state(rejected), Reload::Rejected(l) if l.contains("service=taxi"))
        );
    }

    #[test]
    fn policy_commands_read_as_typed() {
        let c = PolicyCommand::new(
            Path::new("attestable-demo/services"),
            &["allow", "--service", "all", "--sha256", "ab12"],
        );
        assert_eq!(
            c.describe(),
            "mock-services policy allow --data attestable-demo/services --service all --sha256 ab12"
        );
    }

    #[test]
    fn compartment_settings_change_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        for service in SERVICES {
            fs::create_dir_all(dir.path().join(service)).unwrap();
            fs::write(dir.path().join(service).join("policy.toml"), "").unwrap();
        }
        assert_eq!(compartment_settings(dir.path(), &[], false).unwrap(), None);
        let set = compartment_settings(dir.path(), &["landlock".into()], false)
            .unwrap()
            .unwrap();
        assert_eq!(
            set.join(" "),
            "set --service all --allow-insecure false --allow-degraded landlock"
        );
        fs::write(
            dir.path().join("taxi/policy.toml"),
            "allow_insecure = true\n",
        )
        .unwrap();
        let reset = compartment_settings(dir.path(), &[], false)
            .unwrap()
            .unwrap();
        assert_eq!(
            reset.join(" "),
            "set --service all --allow-insecure false --no-degraded"
        );
    }
}
