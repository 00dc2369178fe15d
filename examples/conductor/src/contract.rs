//! The admin contract: what a caller (the operator) and the conductor say to each other,
//! whether in one process ([`InProcess`]) or over HTTP ([`crate::http::HttpConductor`]).
//! The operator depends on this module and on nothing of the conductor's insides.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::history::NodeHistory;

use bmc_core::{BmcAddress, Credentials, HardwareInventory};
use provision_fsm::{Image, NodeState};

use crate::agent_protocol::ConfigDrive;
use crate::conductor::Conductor;
use crate::feed::Changes;

/// A node as created through the API.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Unique name (the operator uses `namespace/name` of the host).
    pub name: String,
    /// The BMC address, parsed at the API's edge.
    pub address: BmcAddress,
    /// BMC credentials.
    pub credentials: Credentials,
    /// Skip TLS certificate checks.
    pub disable_certificate_verification: bool,
    /// The MAC the host boots from (agent look-ups match it).
    pub boot_mac: Option<String>,
    /// Clean by the agent (erase disk metadata) before a host is made available again
    /// (Metal3's `automatedCleaningMode: metadata`); when false, cleaning only ejects
    /// media and powers off (`disabled`).
    pub automated_clean: bool,
    /// `network_data.json` for the agent's own network (Metal3's
    /// `preprovisioningNetworkDataName`): it travels in the agent's config image, so a
    /// site without DHCP boots the agent on static addresses.
    pub preprovisioning_network_data: Option<serde_json::Value>,
    /// Boot every image of this node (the agent's, the deployed one) in legacy BIOS mode
    /// rather than UEFI (Metal3's `bootMode: legacy`, Ironic's `boot_mode` capability).
    pub legacy_boot: bool,
}

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployConfig {
    /// The image: written by the agent, or booted as it is when it is a live ISO.
    pub image: Image,
    /// The config drive (user data, network data, metadata) the agent writes.
    pub config_drive: ConfigDrive,
    /// Boot in legacy BIOS mode (`bootMode: legacy`) rather than UEFI.
    #[serde(default)]
    pub legacy_boot: bool,
    /// The host's `rootDeviceHints`: the disk the agent writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_device_hints: Option<Box<crate::agent_protocol::RootDeviceHints>>,
}

/// A provisioning verb of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Verify the BMC and manage the node.
    Manage,
    /// Inspect the hardware: out of band through the BMC, or in band by booting the
    /// agent, which reports what it finds.
    Inspect {
        /// Boot the agent to inspect.
        in_band: bool,
    },
    /// Clean and make available.
    Provide,
    /// Deploy.
    Deploy(DeployConfig),
    /// Tear down, clean, make available again.
    Undeploy,
    /// Abort a waiting operation.
    Abort,
}

/// A power change asked of a node (Ironic's `power on`, `power off`, `rebooting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerRequest {
    /// Power on.
    On,
    /// Power off.
    Off,
    /// Power off, then on.
    Reboot,
}

impl PowerRequest {
    /// Ironic's name of the target.
    pub fn target(self) -> &'static str {
        match self {
            PowerRequest::On => "power on",
            PowerRequest::Off => "power off",
            PowerRequest::Reboot => "rebooting",
        }
    }

    /// The request Ironic's target names.
    pub fn from_target(target: &str) -> Option<PowerRequest> {
        match target {
            "power on" => Some(PowerRequest::On),
            "power off" => Some(PowerRequest::Off),
            "rebooting" | "reboot" => Some(PowerRequest::Reboot),
            _ => None,
        }
    }
}

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Provision state (Ironic's name).
    pub state: NodeState,
    /// The last failure.
    pub last_error: Option<String>,
    /// Power as last read.
    pub power_on: Option<bool>,
    /// A power change under way (Ironic's `target_power_state`).
    #[serde(default)]
    pub target_power: Option<PowerRequest>,
    /// Why the last power change failed; cleared by the next one.
    #[serde(default)]
    pub power_error: Option<String>,
    /// Power changes asked of this node so far: a caller that asked one knows it is done
    /// when no change is under way and the count has reached its own.
    #[serde(default)]
    pub power_requests: u64,
    /// The driver in use, once connected.
    pub driver: Option<String>,
    /// Whether inspection left an inventory ([`ConductorApi::inventory`] reads it).
    #[serde(default)]
    pub inspected: bool,
    /// The image deployed (active nodes).
    pub deployed_image: Option<String>,
    /// Deploys started, all attempts.
    pub deploy_attempts: u32,
    /// The config drive the agent reports it wrote (disk-image deploys).
    pub config_drive: Option<ConfigDrive>,
    /// The BMC refused the node's credentials at the last verification: trying them
    /// again risks locking the account (a caller waits for new credentials).
    #[serde(default)]
    pub credentials_refused: bool,
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No such node.
    #[error("node {0} not found")]
    NotFound(String),
    /// The node's state does not allow the request.
    #[error("{0}")]
    InvalidState(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The conductor could not be reached or answered what no conductor answers.
    #[error("conductor: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status that carries this error (the one mapping, both ways:
    /// [`ApiError::from_status`]).
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::InvalidState(_) => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The error an HTTP answer of `status` with `message` stands for.
    pub fn from_status(status: u16, message: String) -> ApiError {
        match status {
            404 => ApiError::NotFound(message),
            400 | 422 => ApiError::BadRequest(message),
            409 => ApiError::InvalidState(message),
            _ => ApiError::Unavailable(message),
        }
    }

    /// The message without the variant's prefix.
    pub fn message(&self) -> &str {
        match self {
            ApiError::NotFound(m)
            | ApiError::InvalidState(m)
            | ApiError::BadRequest(m)
            | ApiError::Unavailable(m) => m,
        }
    }
}

/// What the operator needs from a conductor.
#[async_trait]
pub trait ConductorApi: Send + Sync {
    /// Creates a node, or updates the BMC details of an existing one.
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError>;
    /// Shows a node.
    async fn node(&self, name: &str) -> Result<NodeView, ApiError>;
    /// The hardware inventory inspection found (Ironic's `GET /v1/nodes/{node}/inventory`);
    /// not found before inspection.
    async fn inventory(&self, name: &str) -> Result<HardwareInventory, ApiError>;
    /// The node state changes after position `since` of the change feed, waiting up to
    /// `timeout` for one (a long poll); every node's state (`complete`) when `since` is 0
    /// or too old.
    async fn changes(&self, since: u64, timeout: Duration) -> Result<Changes, ApiError>;
    /// Deletes a node.
    async fn delete_node(&self, name: &str) -> Result<(), ApiError>;
    /// Applies a provisioning verb; the work it starts runs in the background, logged and
    /// recorded in the node's history under `correlation` (the caller's id for the step
    /// that asked, sent as [`CORRELATION_HEADER`]).
    async fn provision(
        &self,
        name: &str,
        verb: Verb,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError>;
    /// Starts a power change (verified by reading back, in the background): the answer
    /// shows it under way in `target_power`; the change feed tells when it is done.
    async fn set_power(
        &self,
        name: &str,
        power: PowerRequest,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError>;
    /// What happened to the node, oldest first (bounded).
    async fn history(&self, name: &str) -> Result<NodeHistory, ApiError>;
}

/// The HTTP header that carries a correlation id from the operator's step through the
/// conductor's work to the BMC requests and the agent (defined with the agent protocol,
/// which sends it too).
pub use metal3_agent_protocol::CORRELATION_HEADER;

/// The longest correlation id taken; longer ones are cut (they end up in every log line).
pub const MAX_CORRELATION_LEN: usize = 64;

/// A correlation id as taken from a caller: printable ASCII only, at most
/// [`MAX_CORRELATION_LEN`] bytes; anything else is dropped.
pub fn clean_correlation(id: &str) -> Option<String> {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_CORRELATION_LEN)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The conductor in this process behind [`ConductorApi`].
#[derive(Debug, Clone)]
pub struct InProcess(pub Arc<Conductor>);

#[async_trait]
impl ConductorApi for InProcess {
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        self.0.create_node(spec).await
    }
    async fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        self.0.node(name)
    }
    async fn inventory(&self, name: &str) -> Result<HardwareInventory, ApiError> {
        self.0.inventory(name)
    }
    async fn changes(&self, since: u64, timeout: Duration) -> Result<Changes, ApiError> {
        Ok(self.0.changes(since, timeout).await)
    }
    async fn delete_node(&self, name: &str) -> Result<(), ApiError> {
        self.0.delete_node(name).await
    }
    async fn provision(
        &self,
        name: &str,
        verb: Verb,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        self.0.provision(name, verb, correlation).await
    }
    async fn set_power(
        &self,
        name: &str,
        power: PowerRequest,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        self.0.set_power(name, power, correlation).await
    }
    async fn history(&self, name: &str) -> Result<NodeHistory, ApiError> {
        self.0.history(name)
    }
}
