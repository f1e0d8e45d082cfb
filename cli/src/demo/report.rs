//! The demo's summaries: the measurement of the build, the run's
//! certificate, the outcome the services recorded, the brokered calls.
//! Pure text from the API's JSON, so each is tested on its own.

use std::fmt::Write as _;

use attestable_data::encoding::UnixTime;
use attestable_data::evidence::LayerStatus;
use serde_json::Value;

use super::services::Outcome;
use crate::certinfo::ChainInfo;
use crate::format::bytes;

/// Rows of `label  value`, indented under a step.
pub fn rows(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
    rows.iter()
        .map(|(label, value)| format!("     {label:<width$}{value}\n"))
        .collect()
}

/// What the build measured: the hashes a service's policy pins.
pub fn measurement(build: &Value) -> String {
    let text = |key: &str| build[key].as_str().unwrap_or("-").to_owned();
    rows(&[
        ("executable SHA-256", text("executable_sha256")),
        ("SDK SHA-256", text("sdk_sha256")),
        (
            "anchor SHA-256",
            format!(
                "{} (services-ca.pem, compiled in)",
                text("services_anchor_sha256")
            ),
        ),
        ("profile", text("profile")),
        ("compiler", text("compiler")),
    ])
}

/// The run certificate in a few lines; `now` decides "valid now".
pub fn certificate(info: &ChainInfo, now: i64) -> String {
    let cert = &info.certs[0];
    let validity = format!(
        "{} to {} (the run's time limit, and 60 s either side for clocks; {})",
        UnixTime(cert.not_before),
        UnixTime(cert.not_after),
        if now > cert.not_after {
            "expired"
        } else {
            "valid now"
        }
    );
    let e = match &info.evidence {
        Ok(e) => e,
        Err(err) => {
            return rows(&[
                ("subject", cert.subject.clone()),
                ("evidence", format!("unreadable: {err}")),
                ("validity", validity),
            ]);
        }
    };
    let c = &e.compartment;
    let mut compartment = c.backend.to_string();
    if c.insecure {
        compartment.push_str(" (INSECURE: no compartment)");
    }
    let layers = c
        .layers
        .iter()
        .map(|l| {
            if l.status == LayerStatus::Active {
                l.name.clone()
            } else {
                format!("{} {}", l.name, l.status)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = rows(&[
        ("subject", cert.subject.clone()),
        (
            "executable SHA-256",
            e.program.executable_sha256.to_string(),
        ),
        ("CPU model", e.platform.cpu_model.clone()),
        ("CPUs", e.platform.cpus.to_string()),
        ("memory", bytes(e.platform.physical_memory_bytes)),
        ("compartment", compartment),
        (
            "layers",
            if layers.is_empty() {
                "none".into()
            } else {
                layers
            },
        ),
        ("validity", validity),
    ]);
    if !c.degraded.is_empty() {
        let _ = writeln!(
            out,
            "     degraded on purpose: {} (--allow-degraded)",
            c.degraded.join(", ")
        );
    }
    out
}

/// Plate, driver and the customer's answer, as the services recorded them.
pub fn outcome(o: &Outcome) -> String {
    let Some(trip) = &o.trip else {
        return "     no trip booked and no message sent\n".into();
    };
    let answer = match (o.messaged, o.reply.as_deref()) {
        (false, _) => "no message was sent".to_owned(),
        (true, Some("ACCEPT")) => "ACCEPT (the customer confirmed the ride)".to_owned(),
        (true, Some("DECLINE")) => "DECLINE (the customer turned the ride down)".to_owned(),
        (true, Some(other)) => other.to_owned(),
        (true, None) => "none yet".to_owned(),
    };
    rows(&[
        (
            "taxi",
            format!(
                "{}{} (trip {}{})",
                trip.plate,
                trip.model
                    .as_deref()
                    .map(|m| format!(", {m}"))
                    .unwrap_or_default(),
                trip.id,
                trip.eta_minutes
                    .map(|m| format!(", arriving in about {m} min"))
                    .unwrap_or_default()
            ),
        ),
        ("driver", trip.driver.clone()),
        ("customer's answer", answer),
    ])
}

/// One line per brokered call: service, operation, collection, sizes,
/// latency as the launcher measured it, outcome.
pub fn calls(calls: &Value) -> String {
    let Some(list) = calls.as_array().filter(|l| !l.is_empty()) else {
        return "     none\n".into();
    };
    let mut out = String::new();
    for call in list {
        let text = |key: &str| call[key].as_str().unwrap_or("").to_owned();
        let size = |key: &str| call[key].as_u64().map(bytes).unwrap_or_else(|| "-".into());
        let latency = call["latency_us"]
            .as_u64()
            .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let what = if text("op") == "service_cert" {
            "certificate".to_owned()
        } else {
            format!("{} {}", text("op"), text("resource"))
        };
        let _ = write!(
            out,
            "     {:<10} {:<16} {:>10} → {:<10} {:>8}  {}",
            text("service"),
            what,
            size("request_bytes"),
            size("response_bytes"),
            latency,
            text("outcome")
        );
        if let Some(detail) = call["detail"].as_str() {
            let _ = write!(out, ": {detail}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::services::Trip;
    use serde_json::json;

    #[test]
    fn rows_line_up() {
        assert_eq!(
            rows(&[("a", "1".into()), ("long label", "2".into())]),
            "     a           1\n     long label  2\n"
        );
    }

    #[test]
    fn the_measurement_names_every_hash() {
        let text = measurement(&json!({
            "executable_sha256": "e1", "sdk_sha256": "s1", "services_anchor_sha256": "a1",
            "profile": "host", "compiler": "cc 12"
        }));
        for want in [
            "executable SHA-256  e1",
            "SDK SHA-256",
            "a1 (services-ca.pem",
            "host",
            "cc 12",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }

    #[test]
    fn outcomes_read_as_the_services_recorded_them() {
        let trip = Trip {
            id: 3,
            plate: "KTX4R17".into(),
            model: Some("Toyota Prius".into()),
            driver: "Rosa Achterberg".into(),
            eta_minutes: Some(7),
        };
        let accepted = outcome(&Outcome {
            trip: Some(trip.clone()),
            reply: Some("ACCEPT".into()),
            messaged: true,
        });
        assert!(accepted.contains("KTX4R17, Toyota Prius (trip 3, arriving in about 7 min)"));
        assert!(
            accepted.contains("driver             Rosa Achterberg"),
            "{accepted}"
        );
        assert!(accepted.contains("ACCEPT (the customer confirmed"));
        let waiting = outcome(&Outcome {
            trip: Some(trip),
            reply: None,
            messaged: true,
        });
        assert!(waiting.contains("none yet"));
        let none = outcome(&Outcome {
            trip: None,
            reply: None,
            messaged: false,
        });
        assert!(none.contains("no trip booked"));
    }

    #[test]
    fn calls_show_latency_and_failures() {
        let text = calls(&json!([
            {"service": "store", "op": "service_cert", "resource": "", "request_bytes": 0,
             "response_bytes": 1429, "latency_us": 2652, "outcome": "ok", "detail": null},
            {"service": "taxi", "op": "write", "resource": "trips", "request_bytes": 999,
             "response_bytes": 0, "latency_us": 1200, "outcome": "service_unreachable",
             "detail": "connection refused"}
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("store      certificate"), "{text}");
        assert!(
            lines[0].contains("1.4 KiB") && lines[0].contains("2.7 ms"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("service_unreachable: connection refused"),
            "{text}"
        );
        assert_eq!(calls(&json!([])), "     none\n");
    }
}
