//! `services list|add ID --url URL --ca FILE|remove ID`: the services the
//! launcher brokers calls to (`/v1/services`).

use std::path::Path;

use openssl::x509::X509;
use serde_json::{Value, json};

use super::Ctx;
use crate::client::Subject;
use crate::error::{Result, input};
use crate::format::print_json;

pub fn list(ctx: &mut Ctx) -> Result<u8> {
    let json = ctx.json;
    let services = ctx.api()?.get("/v1/services", Subject::None)?;
    if json {
        print_json(&services);
        return Ok(0);
    }
    let list = services.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!(
            "No services registered; add one with `attestable services add ID --url URL --ca FILE`."
        );
        return Ok(0);
    }
    for service in &list {
        println!("{}", describe(service));
    }
    Ok(0)
}

/// `store  https://127.0.0.1:8000  CA "CN=services CA" until …`
fn describe(service: &Value) -> String {
    let text = |key: &str| service[key].as_str().unwrap_or("").to_owned();
    let mut line = format!("{:<12} {}", text("id"), text("base_url"));
    if let Some(ca) = service["ca_pem"].as_str() {
        line.push_str(&format!("  CA {}", ca_summary(ca)));
    }
    for key in ["source", "origin"] {
        if let Some(source) = service[key].as_str() {
            line.push_str(&format!("  ({source})"));
        }
    }
    line
}

fn ca_summary(pem: &str) -> String {
    match X509::stack_from_pem(pem.as_bytes()) {
        Ok(certs) if !certs.is_empty() => certs
            .iter()
            .map(|c| {
                format!(
                    "\"{}\" until {}",
                    attestable_data::pki::describe_name(c.subject_name()),
                    c.not_after()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(not PEM)".to_owned(),
    }
}

/// Service ids are `[a-z0-9-]{1,64}`; checked here so that an id never
/// changes the path it is put in.
fn check_id(id: &str) -> Result<()> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(input(format!(
            "service id {id:?}: expected 1 to 64 characters of a-z, 0-9 and -"
        )))
    }
}

pub fn add(ctx: &mut Ctx, id: &str, url: &str, ca: &Path) -> Result<u8> {
    check_id(id)?;
    let ca_pem = std::fs::read_to_string(ca)
        .map_err(|e| input(format!("cannot read {}: {e}", ca.display())))?;
    match X509::stack_from_pem(ca_pem.as_bytes()) {
        Ok(certs) if !certs.is_empty() => {}
        _ => {
            return Err(input(format!(
                "{} holds no PEM certificate (the CA the service's TLS certificate chains to)",
                ca.display()
            )));
        }
    }
    let json = ctx.json;
    let service = ctx.api()?.put(
        &format!("/v1/services/{id}"),
        &json!({"base_url": url, "ca_pem": ca_pem}),
        Subject::Service(id),
    )?;
    if json {
        print_json(&service);
    } else {
        println!("Registered service {id} at {url}.");
    }
    Ok(0)
}

/// `{"removed": ID}` with `--json`.
pub fn remove(ctx: &mut Ctx, id: &str) -> Result<u8> {
    check_id(id)?;
    let json = ctx.json;
    ctx.api()?
        .delete(&format!("/v1/services/{id}"), Subject::Service(id))?;
    if json {
        print_json(&json!({"removed": id}));
    } else {
        println!("Removed service {id}.");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_reach_other_paths() {
        assert!(check_id("store").is_ok());
        assert!(check_id("taxi-2").is_ok());
        for bad in ["", "../runs", "a/b", "Store", "a?b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn services_are_described_with_their_ca() {
        let line = describe(
            &json!({"id": "store", "base_url": "https://127.0.0.1:8000", "ca_pem": "junk"}),
        );
        assert!(line.starts_with("store"), "{line}");
        assert!(
            line.contains("https://127.0.0.1:8000  CA (not PEM)"),
            "{line}"
        );
    }
}
