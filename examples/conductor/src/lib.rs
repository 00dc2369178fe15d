//! The example conductor (Ironic's role): nodes driven through provision-fsm's node states
//! over any [`bmc_core::BmcDriver`], the admin API the operator calls, the agent API agents
//! call back on, and the change feed that tells a client about every node in one long
//! poll.
//!
//! - [`contract`]: the admin contract ([`NodeSpec`], [`NodeView`], [`Verb`],
//!   [`DeployConfig`], [`ApiError`], the [`ConductorApi`] trait): what the operator
//!   depends on.
//! - [`agent_protocol`]: what the agent and the conductor say, its typed inventory
//!   included.
//! - [`conductor`]: node records, verbs, agent call-backs and the timeouts of the waiting
//!   states; [`executor`]: the steps over the driver (verify, inspect, boot the agent,
//!   deploy, tear down).
//! - [`feed`]: the change feed; [`http`]: both APIs as axum routes, and the admin API's
//!   client [`HttpConductor`].
//! - [`history`]: each node's bounded history (transitions, actions with the caller's
//!   correlation id, every BMC request, agent calls, errors), served as
//!   `GET /v1/nodes/{name}/history`; [`metrics`]: the Prometheus metrics of `GET /metrics`.
//! - [`persist`]: the node store (redb, one file; BMC passwords sealed with a key file):
//!   a restarted conductor resumes its nodes.
//! - [`auth`]: HTTP basic auth of the admin API (htpasswd, bcrypt); [`tls`]: rustls for
//!   both APIs.
//! - [`service`]: the one assembly of the service for the binary, the demo and tests.
//!
//! ```
//! use metal3_conductor::{ApiError, ConductorApi, NodeSpec};
//! use metal3_conductor::service::{Service, ServiceConfig, drivers};
//!
//! # async fn demo() -> Result<(), String> {
//! let service = Service::start(
//!     ServiceConfig {
//!         admin_listen: "127.0.0.1:0".into(),
//!         agent_listen: "127.0.0.1:0".into(),
//!         ..ServiceConfig::default()
//!     },
//!     drivers(),
//! )
//! .await?;
//! let admin = metal3_conductor::HttpConductor::new(&service.admin_url());
//! let spec = NodeSpec {
//!     name: "lab/node-0".into(),
//!     address: "redfish-virtualmedia+http://127.0.0.1:8000/redfish/v1/Systems/1"
//!         .parse()
//!         .map_err(|e| format!("{e}"))?,
//!     credentials: bmc_core::Credentials::new("admin", "password").map_err(|e| e.to_string())?,
//!     disable_certificate_verification: false,
//!     boot_mac: None,
//!     automated_clean: true,
//!     preprovisioning_network_data: None,
//!     legacy_boot: false,
//! };
//! let node = admin.create_node(spec).await.map_err(|e| e.to_string())?;
//! assert_eq!(node.state, provision_fsm::NodeState::Enroll);
//! assert!(matches!(admin.node("lab/other").await, Err(ApiError::NotFound(_))));
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().map_err(|e| e.to_string())?.block_on(demo())?;
//! # Ok::<(), String>(())
//! ```

pub use metal3_agent_protocol as agent_protocol;
pub mod agent_iso;
pub mod auth;
pub mod conductor;
pub mod contract;
pub mod executor;
pub mod feed;
pub mod history;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod service;
pub mod tls;

pub use conductor::{Conductor, ConductorConfig};
pub use contract::{
    ApiError, ConductorApi, DeployConfig, InProcess, NodeSpec, NodeView, PowerRequest, Verb,
};
pub use http::HttpConductor;
