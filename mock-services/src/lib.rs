//! The case study's three digital services (store, taxi, messaging): HTTPS
//! services that release data only to attested programs.
//!
//! They are also the reference for how a real service adopts attestation:
//! every check is [`attestable_data::attested::ServiceVerifier`]'s, and the
//! service adds only its business, its storage and its logs (see
//! `README.md`). Wire formats: `docs/PROTOCOL.md`.
//!
//! | module | what |
//! |---|---|
//! | [`kind`] | the three services: names, ports, what the case study needs of each |
//! | [`config`] | where a service listens, and the case study's knobs |
//! | [`datadir`] | the data folder's layout and locks |
//! | [`identity`] | the services CA and each service's key and certificate |
//! | [`db`] | SQLite: schema, sample data, the audit table |
//! | [`business`], [`store`], [`taxi`], [`messaging`] | the resources |
//! | [`money`] | decimal amounts in integer cents |
//! | [`decisions`] | the JSON-lines decision log |
//! | [`policy_watch`] | the policy in force, reloaded when its file changes |
//! | [`policy_cli`] | `mock-services policy …` |
//! | [`http`] | routes and handlers |
//! | [`server`] | [`start`] a service, [`RunningService`] |
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mock_services::{ServiceConfig, ServiceKind};
//! let mut config = ServiceConfig::new(ServiceKind::Store, "/tmp/services");
//! config.listen = "127.0.0.1:0".parse()?;
//! let store = mock_services::start(ServiceKind::Store, config).await?;
//! println!("store on {}", store.addr());
//! store.stop().await
//! # }
//! ```

#![warn(missing_docs)]

pub mod business;
pub mod config;
pub mod datadir;
pub mod db;
pub mod decisions;
pub mod http;
pub mod identity;
pub mod kind;
pub mod messaging;
pub mod money;
pub mod policy_cli;
pub mod policy_watch;
pub mod server;
pub mod store;
pub mod taxi;

pub use config::{CustomerReply, ServiceConfig, Settings};
pub use kind::ServiceKind;
pub use server::{RunningService, start};
