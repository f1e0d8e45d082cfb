//! `mock-services policy …`: the operator's edits of the services' policy
//! files, made through `attestable_data::policy::PolicyDocument` (validated,
//! written atomically). A running service picks each change up by itself.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use attestable_data::encoding::{Sha256Hex, UnixTime};
use attestable_data::pki;
use attestable_data::policy::{AllowRule, Op, Policy, PolicyDocument, ResourcePattern};
use openssl::x509::X509;

use crate::datadir::DataDir;
use crate::kind::ServiceKind;

/// `--service NAME|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One service.
    One(ServiceKind),
    /// All three.
    All,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            Ok(Target::All)
        } else {
            s.parse()
                .map(Target::One)
                .map_err(|e| format!("{e} (or all)"))
        }
    }
}

impl Target {
    /// The services named.
    pub fn kinds(self) -> Vec<ServiceKind> {
        match self {
            Target::One(k) => vec![k],
            Target::All => ServiceKind::ALL.to_vec(),
        }
    }
}

/// What `policy allow` grants.
#[derive(Debug, Clone)]
pub struct AllowRequest {
    /// The executable's SHA-256.
    pub sha256: Sha256Hex,
    /// Resources; empty with `ops` empty: what the case study needs of the service.
    pub resources: Vec<ResourcePattern>,
    /// Operations.
    pub ops: Vec<Op>,
    /// The rules' name, shown in proofs.
    pub name: String,
}

/// Reads a service's policy document, or the empty one when it has none yet.
fn load_document(data: &DataDir, kind: ServiceKind) -> anyhow::Result<PolicyDocument> {
    let path = data.policy(kind);
    if !path.exists() {
        return Ok(PolicyDocument::default());
    }
    PolicyDocument::load(&path).with_context(|| {
        format!(
            "the {kind} policy {} does not load; fix it first",
            path.display()
        )
    })
}

fn save_document(data: &DataDir, kind: ServiceKind, doc: &PolicyDocument) -> anyhow::Result<()> {
    data.create()?;
    let path = data.policy(kind);
    // Compile before saving: a root `file` that does not read must not reach a running service.
    Policy::from_document(doc.clone(), path.parent())
        .with_context(|| format!("the new {kind} policy"))?;
    doc.save(&path)
        .with_context(|| format!("writing {}", path.display()))
}

/// `policy allow`: adds allow rules; returns what was done, a line each.
pub fn allow(data: &DataDir, target: Target, req: &AllowRequest) -> anyhow::Result<String> {
    if req.resources.is_empty() != req.ops.is_empty() {
        bail!("give both --resource and --op, or neither (then the case study's grants apply)");
    }
    let mut out = String::new();
    for kind in target.kinds() {
        let rules: Vec<AllowRule> = if req.resources.is_empty() {
            // One rule per operation, so that a read grant never covers a write.
            let grants = kind.case_study_grants();
            [Op::Read, Op::Write]
                .into_iter()
                .filter_map(|op| {
                    let resources: Vec<ResourcePattern> = grants
                        .iter()
                        .filter(|(_, o)| *o == op)
                        .map(|(r, _)| r.clone())
                        .collect();
                    (!resources.is_empty()).then(|| {
                        AllowRule::for_executable(&req.name, req.sha256, resources, vec![op])
                    })
                })
                .collect()
        } else {
            vec![AllowRule::for_executable(
                &req.name,
                req.sha256,
                req.resources.clone(),
                req.ops.clone(),
            )]
        };
        let mut doc = load_document(data, kind)?;
        for rule in rules {
            let grants = describe_grants(&rule);
            let added = doc.add_allow_rule(rule)?;
            let _ = writeln!(
                out,
                "{kind}: {} executable {}… may {grants}",
                if added { "allowed" } else { "already allowed:" },
                req.sha256.short(12)
            );
        }
        save_document(data, kind, &doc)?;
    }
    Ok(out)
}

/// `policy revoke`: removes every allow rule naming the executable.
pub fn revoke(data: &DataDir, target: Target, sha256: Sha256Hex) -> anyhow::Result<String> {
    let mut out = String::new();
    for kind in target.kinds() {
        let mut doc = load_document(data, kind)?;
        let before = doc.allow.len();
        doc.allow.retain(|r| r.executable_sha256 != Some(sha256));
        let removed = before - doc.allow.len();
        if removed > 0 {
            save_document(data, kind, &doc)?;
        }
        let _ = writeln!(
            out,
            "{kind}: removed {removed} allow rule(s) naming executable {}…",
            sha256.short(12)
        );
    }
    Ok(out)
}

/// `policy trust-root`: trusts a launcher's root certificate (PEM file, one certificate).
pub fn trust_root(
    data: &DataDir,
    target: Target,
    ca_file: &Path,
    name: Option<&str>,
) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?;
    let certs = X509::stack_from_pem(pem.as_bytes())
        .with_context(|| format!("{} does not hold PEM certificates", ca_file.display()))?;
    let [cert] = certs.as_slice() else {
        bail!(
            "{}: expected one root certificate, found {}",
            ca_file.display(),
            certs.len()
        );
    };
    let name = match name {
        Some(n) => n.to_owned(),
        None => pki::common_name(cert).unwrap_or_else(|| "launcher root".into()),
    };
    let key_id = pki::key_id(&*cert.public_key()?)?;
    let mut out = String::new();
    for kind in target.kinds() {
        let mut doc = load_document(data, kind)?;
        let already = doc.trusted_roots.iter().any(|r| {
            r.pem
                .as_deref()
                .and_then(|p| X509::from_pem(p.as_bytes()).ok())
                .is_some_and(|c| c.to_der().ok() == cert.to_der().ok())
        });
        if already {
            let _ = writeln!(out, "{kind}: already trusts root {}…", &key_id[..12]);
            continue;
        }
        doc.add_trusted_root_pem(&name, &pem)?;
        save_document(data, kind, &doc)?;
        let _ = writeln!(
            out,
            "{kind}: trusts root {name:?} (key {}…, {})",
            &key_id[..12],
            pki::describe_name(cert.subject_name())
        );
    }
    Ok(out)
}

/// Settings of `policy set`; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    /// `allow_insecure`.
    pub allow_insecure: Option<bool>,
    /// `allow_degraded` (replaces the list).
    pub allow_degraded: Option<Vec<String>>,
    /// `max_certificate_age_s`.
    pub max_certificate_age_s: Option<u64>,
    /// `timestamp_skew_s`.
    pub timestamp_skew_s: Option<u64>,
}

/// `policy set`: changes top-level settings.
pub fn set(data: &DataDir, target: Target, req: &SetRequest) -> anyhow::Result<String> {
    let mut out = String::new();
    for kind in target.kinds() {
        let mut doc = load_document(data, kind)?;
        if let Some(v) = req.allow_insecure {
            doc.allow_insecure = v;
        }
        if let Some(v) = &req.allow_degraded {
            doc.allow_degraded = v.clone();
        }
        if let Some(v) = req.max_certificate_age_s {
            doc.max_certificate_age_s = v;
        }
        if let Some(v) = req.timestamp_skew_s {
            doc.timestamp_skew_s = v;
        }
        save_document(data, kind, &doc)?;
        let _ = writeln!(
            out,
            "{kind}: allow_insecure = {}, allow_degraded = [{}], max_certificate_age_s = {}, \
             timestamp_skew_s = {}",
            doc.allow_insecure,
            doc.allow_degraded.join(", "),
            doc.max_certificate_age_s,
            doc.timestamp_skew_s
        );
    }
    Ok(out)
}

/// `policy show`: a readable summary of each policy.
pub fn show(data: &DataDir, target: Target) -> anyhow::Result<String> {
    let mut out = String::new();
    for kind in target.kinds() {
        let path = data.policy(kind);
        let _ = writeln!(out, "{kind}: {}", path.display());
        if !path.exists() {
            let _ = writeln!(
                out,
                "  (no policy yet: the service writes the empty one at first start; it denies everything)"
            );
            continue;
        }
        let policy = match Policy::load(&path) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "  DOES NOT LOAD: {e}\n  (a running service keeps its previous policy)"
                );
                continue;
            }
        };
        let doc = policy.document();
        let backends: Vec<&str> = doc.allowed_backends.iter().map(|b| b.as_str()).collect();
        let _ = writeln!(
            out,
            "  backends: {}; insecure runs: {}; degraded layers allowed: [{}]; required layers: [{}]",
            backends.join(", "),
            if doc.allow_insecure {
                "allowed"
            } else {
                "refused"
            },
            doc.allow_degraded.join(", "),
            doc.required_layers.join(", ")
        );
        let _ = writeln!(
            out,
            "  certificates up to {} s old; request timestamps within {} s",
            doc.max_certificate_age_s, doc.timestamp_skew_s
        );
        let roots = policy.anchors().roots();
        if roots.is_empty() {
            let _ = writeln!(out, "  trusted roots: none (every request is denied)");
        }
        for root in roots {
            let cert = root.certificate();
            let until = pki::asn1_time_to_unix(cert.not_after()).map(UnixTime);
            let _ = writeln!(
                out,
                "  trusted root {:?}: key {}…, {}, valid until {}",
                root.name(),
                root.key_id().short(12),
                pki::describe_name(cert.subject_name()),
                until.map(|t| t.to_string()).unwrap_or_else(|_| "?".into())
            );
        }
        if doc.allow.is_empty() {
            let _ = writeln!(out, "  allow rules: none (no program is allowed)");
        }
        for (i, rule) in doc.allow.iter().enumerate() {
            let name = if rule.name.is_empty() {
                format!("allow[{i}]")
            } else {
                format!("{:?}", rule.name)
            };
            let mut measured = Vec::new();
            if let Some(h) = rule.executable_sha256 {
                measured.push(format!("executable {h}"));
            }
            if let (Some(h), Some(t)) = (rule.source_sha256, &rule.toolchain_profile) {
                measured.push(format!("source {h} built with {t}"));
            }
            if let Some(h) = rule.services_anchor_sha256 {
                measured.push(format!("services anchor {h}"));
            }
            let _ = writeln!(
                out,
                "  allow {name}: {} may {}",
                measured.join(" and "),
                describe_grants(rule)
            );
        }
    }
    Ok(out)
}

fn describe_grants(rule: &AllowRule) -> String {
    if rule.ops.is_empty() {
        return "nothing (trusted, no resource granted)".into();
    }
    let ops: Vec<&str> = rule.ops.iter().map(|o| o.as_str()).collect();
    let resources: Vec<String> = rule.resources.iter().map(ToString::to_string).collect();
    format!("{} {}", ops.join("+"), resources.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(n: u8) -> Sha256Hex {
        Sha256Hex::digest(&[n])
    }

    #[test]
    fn allow_defaults_to_the_case_study_grants_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let req = AllowRequest {
            sha256: sha(1),
            resources: vec![],
            ops: vec![],
            name: "case study".into(),
        };
        let out = allow(&data, Target::All, &req).unwrap();
        assert!(
            out.contains("store: allowed") && out.contains("read sales/last"),
            "{out}"
        );
        assert!(
            out.contains("messaging: allowed") && out.contains("read replies/*"),
            "{out}"
        );
        let again = allow(&data, Target::All, &req).unwrap();
        assert_eq!(again.matches("already allowed").count(), 4, "{again}");
        let messaging = PolicyDocument::load(&data.policy(ServiceKind::Messaging)).unwrap();
        assert_eq!(messaging.allow.len(), 2);
        assert!(messaging.allow.iter().all(|r| r.ops.len() == 1));

        let shown = show(&data, Target::One(ServiceKind::Taxi)).unwrap();
        assert!(shown.contains("may write trips"), "{shown}");
        assert!(shown.contains("trusted roots: none"), "{shown}");

        let out = revoke(&data, Target::One(ServiceKind::Messaging), sha(1)).unwrap();
        assert!(out.contains("removed 2"), "{out}");

        let half = AllowRequest {
            resources: vec!["trips".parse().unwrap()],
            ..req
        };
        assert!(allow(&data, Target::All, &half).is_err());
    }

    #[test]
    fn trust_root_takes_one_certificate_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let root = pki::CertificateAuthority::create_root("dev launcher root", None, 1).unwrap();
        let file = dir.path().join("root.pem");
        std::fs::write(&file, root.certificate().to_pem().unwrap()).unwrap();
        let out = trust_root(&data, Target::One(ServiceKind::Store), &file, None).unwrap();
        assert!(out.contains("trusts root \"dev launcher root\""), "{out}");
        let out = trust_root(&data, Target::One(ServiceKind::Store), &file, None).unwrap();
        assert!(out.contains("already trusts"), "{out}");
        let shown = show(&data, Target::One(ServiceKind::Store)).unwrap();
        assert!(
            shown.contains("trusted root \"dev launcher root\""),
            "{shown}"
        );

        let two = dir.path().join("two.pem");
        let mut pem = root.certificate().to_pem().unwrap();
        pem.extend(root.certificate().to_pem().unwrap());
        std::fs::write(&two, pem).unwrap();
        let err = trust_root(&data, Target::All, &two, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected one root certificate, found 2"),
            "{err}"
        );
    }

    #[test]
    fn set_changes_settings_and_refuses_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let req = SetRequest {
            allow_insecure: Some(true),
            allow_degraded: Some(vec!["seccomp".into()]),
            ..Default::default()
        };
        set(&data, Target::All, &req).unwrap();
        let doc = PolicyDocument::load(&data.policy(ServiceKind::Store)).unwrap();
        assert!(doc.allow_insecure);
        assert_eq!(doc.allow_degraded, ["seccomp"]);
        let bad = SetRequest {
            allow_degraded: Some(vec!["seccompp".into()]),
            ..Default::default()
        };
        assert!(set(&data, Target::All, &bad).is_err());
        let bad = SetRequest {
            timestamp_skew_s: Some(0),
            ..Default::default()
        };
        assert!(set(&data, Target::One(ServiceKind::Taxi), &bad).is_err());
    }
}
