//! Trust decisions with human-readable proofs, in the style of the Certifier
//! framework: one numbered statement a line, each with what justifies it,
//! ending with the conclusion, or with the first step that failed and the
//! expected and found values.
//!
//! ```text
//! 1. Key[root 3f2a9c01] is-trusted                        (policy: trusted_root "dev launcher")
//! …
//! 8. FAILED Measurement[e98a1234] is-trusted: no allow rule names this measurement; expected …, found …
//! => DENIED at step 8 (measurement)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// The checks a decision is made of, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// The chain ends at a root the policy trusts.
    TrustedRoot,
    /// The root signed the attestation intermediate (OpenSSL's chain checks).
    Chain,
    /// The intermediate signed the run certificate, and its evidence and CAMB
    /// extensions are well formed and agree with each other.
    Evidence,
    /// The compartment is one the policy accepts.
    Compartment,
    /// Every certificate of the chain is within its validity, and the run
    /// certificate is younger than the policy's maximum age.
    Freshness,
    /// The request is signed by the run certificate's key.
    Signature,
    /// The request's nonce is new and its timestamp within the allowed skew.
    Replay,
    /// An allow rule names the measurement.
    Measurement,
    /// An allow rule for the measurement grants the operation on the resource.
    Permission,
}

impl StepName {
    /// The name used in `failed_step` and in proofs.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::TrustedRoot => "trusted_root",
            StepName::Chain => "chain",
            StepName::Evidence => "evidence",
            StepName::Compartment => "compartment",
            StepName::Freshness => "freshness",
            StepName::Signature => "signature",
            StepName::Replay => "replay",
            StepName::Measurement => "measurement",
            StepName::Permission => "permission",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What went wrong, in a few words.
    pub reason: String,
    /// What the check required.
    pub expected: String,
    /// What it found.
    pub found: String,
}

impl Failure {
    /// A failure with its reason, expected and found values.
    pub fn new(
        reason: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            reason: reason.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected {}, found {}",
            self.reason, self.expected, self.found
        )
    }
}

/// One line of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Which check.
    pub name: StepName,
    /// The statement, e.g. `Key[root 3f2a9c01] is-trusted`.
    pub statement: String,
    /// What supports it, e.g. `policy: trusted_root "dev launcher"`; empty for a failed step.
    pub justification: String,
    /// Set when this step failed (it is then the last step).
    pub failure: Option<Failure>,
}

/// A step that did not hold: the statement that was being checked and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// Which check.
    pub step: StepName,
    /// The statement that did not hold.
    pub statement: String,
    /// Why.
    pub failure: Failure,
}

impl StepFailure {
    /// A failed `statement` of check `step`.
    pub fn new(step: StepName, statement: impl Into<String>, failure: Failure) -> Self {
        Self {
            step,
            statement: statement.into(),
            failure,
        }
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.step, self.statement, self.failure
        )
    }
}

/// An allow or deny decision with its proof.
///
/// Built only by this crate's verifiers, so `allowed` is true exactly when no
/// step failed. `Display` prints the proof; serde gives the same as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustDecision {
    allowed: bool,
    steps: Vec<Step>,
    failed_step: Option<StepName>,
    conclusion: String,
}

impl TrustDecision {
    /// True when every step held.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The steps, in order; when denied the last one is the failed step.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The check that failed, when denied.
    pub fn failed_step(&self) -> Option<StepName> {
        self.failed_step
    }

    /// Why the failed step failed, when denied.
    pub fn failure(&self) -> Option<&Failure> {
        self.steps.last().and_then(|s| s.failure.as_ref())
    }

    /// The last line: what is allowed, or `DENIED at step N (name)`.
    pub fn conclusion(&self) -> &str {
        &self.conclusion
    }

    /// One line for logs and error messages: the conclusion when allowed;
    /// `denied at step N (name): statement: reason; expected …, found …` when not.
    pub fn summary(&self) -> String {
        match (self.failed_step, self.steps.last()) {
            (Some(name), Some(step)) => format!(
                "denied at step {} ({name}): {}: {}",
                self.steps.len(),
                step.statement,
                step.failure
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            _ => self.conclusion.clone(),
        }
    }
}

/// Column where justifications start, so proofs read as a table.
const STATEMENT_WIDTH: usize = 72;

impl fmt::Display for TrustDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            match &step.failure {
                None => {
                    let head = format!("{n}. {}", step.statement);
                    writeln!(f, "{head:<STATEMENT_WIDTH$}   ({})", step.justification)?
                }
                Some(failure) => writeln!(f, "{n}. FAILED {}: {failure}", step.statement)?,
            }
        }
        write!(f, "=> {}", self.conclusion)
    }
}

/// Accumulates the steps that held; ends in an allow or a deny.
#[derive(Debug, Default)]
pub(crate) struct ProofBuilder {
    steps: Vec<Step>,
}

impl ProofBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records a step that held.
    pub(crate) fn held(
        &mut self,
        name: StepName,
        statement: impl Into<String>,
        justification: impl Into<String>,
    ) {
        self.steps.push(Step {
            name,
            statement: statement.into(),
            justification: justification.into(),
            failure: None,
        });
    }

    /// Ends with a denial at `failure`.
    pub(crate) fn deny(mut self, failure: StepFailure) -> TrustDecision {
        self.steps.push(Step {
            name: failure.step,
            statement: failure.statement,
            justification: String::new(),
            failure: Some(failure.failure),
        });
        TrustDecision {
            allowed: false,
            conclusion: format!("DENIED at step {} ({})", self.steps.len(), failure.step),
            steps: self.steps,
            failed_step: Some(failure.step),
        }
    }

    /// Ends with an allow, concluding `conclusion`.
    pub(crate) fn allow(self, conclusion: impl Into<String>) -> TrustDecision {
        TrustDecision {
            allowed: true,
            steps: self.steps,
            failed_step: None,
            conclusion: conclusion.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_proof_text() {
        let mut p = ProofBuilder::new();
        p.held(
            StepName::TrustedRoot,
            "Key[root 3f2a9c01] is-trusted",
            "policy: trusted_root \"dev\"",
        );
        p.held(
            StepName::Chain,
            "Key[root 3f2a9c01] says Key[launcher 9c01ab12] is-trusted-for-attestation",
            "chain: verified",
        );
        let d = p.allow("Key[program 77be5521] may read store:sales/last");
        assert!(d.allowed());
        assert_eq!(d.failed_step(), None);
        let text = d.to_string();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("1. Key[root 3f2a9c01] is-trusted   "));
        assert_eq!(lines[0].find('('), Some(STATEMENT_WIDTH + 3));
        assert!(lines[1].ends_with("is-trusted-for-attestation   (chain: verified)"));
        assert_eq!(
            lines[2],
            "=> Key[program 77be5521] may read store:sales/last"
        );
        assert_eq!(
            d.summary(),
            "Key[program 77be5521] may read store:sales/last"
        );
    }

    #[test]
    fn deny_proof_names_the_step_with_expected_and_found() {
        let mut p = ProofBuilder::new();
        p.held(
            StepName::TrustedRoot,
            "Key[root 3f2a9c01] is-trusted",
            "policy",
        );
        let d = p.deny(StepFailure::new(
            StepName::Chain,
            "Key[root 3f2a9c01] says Key[launcher 9c01ab12] is-trusted-for-attestation",
            Failure::new(
                "the intermediate's signature does not verify",
                "a signature by Key[root 3f2a9c01]",
                "certificate signature failure",
            ),
        ));
        assert!(!d.allowed());
        assert_eq!(d.failed_step(), Some(StepName::Chain));
        assert_eq!(d.failure().unwrap().found, "certificate signature failure");
        let text = d.to_string();
        assert!(
            text.contains("\n2. FAILED Key[root 3f2a9c01] says"),
            "{text}"
        );
        assert!(text.contains(
            "; expected a signature by Key[root 3f2a9c01], found certificate signature failure\n"
        ));
        assert!(text.ends_with("=> DENIED at step 2 (chain)"));
        assert!(
            d.summary()
                .starts_with("denied at step 2 (chain): Key[root")
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["failed_step"], "chain");
        assert_eq!(json["allowed"], false);
        let back: TrustDecision = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}
