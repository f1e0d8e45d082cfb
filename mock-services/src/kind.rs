//! The three services of the case study and what tells them apart.

use std::fmt;
use std::str::FromStr;

use attestable_data::policy::{Op, ResourcePattern};

/// One of the case study's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// The store: customers, products, sales. Read `sales/last`.
    Store,
    /// The taxi company: drivers, vehicles, trips. Write `trips`.
    Taxi,
    /// The messaging provider: messages and replies. Write `messages`, read `replies/<phone>`.
    Messaging,
}

impl ServiceKind {
    /// All three, in start order.
    pub const ALL: [ServiceKind; 3] = [
        ServiceKind::Store,
        ServiceKind::Taxi,
        ServiceKind::Messaging,
    ];

    /// The service's name: its certificate's common name and what requests must name.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Store => "store",
            ServiceKind::Taxi => "taxi",
            ServiceKind::Messaging => "messaging",
        }
    }

    /// The port of the CAMB deployment.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Store => 8000,
            ServiceKind::Taxi => 8001,
            ServiceKind::Messaging => 9000,
        }
    }

    /// What the case study's integration process needs of this service:
    /// what `policy allow` grants when no `--resource` is given.
    pub fn case_study_grants(self) -> Vec<(ResourcePattern, Op)> {
        let exact = |r: &str| ResourcePattern::Exact(r.to_owned());
        match self {
            ServiceKind::Store => vec![(exact("sales/last"), Op::Read)],
            ServiceKind::Taxi => vec![(exact("trips"), Op::Write)],
            ServiceKind::Messaging => vec![
                (exact("messages"), Op::Write),
                (ResourcePattern::Prefix("replies".to_owned()), Op::Read),
            ],
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServiceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ServiceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("expected store, taxi or messaging, found {s:?}"))
    }
}
