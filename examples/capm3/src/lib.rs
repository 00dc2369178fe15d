//! The example Cluster API infrastructure provider (CAPM3's role) over the example
//! operator: Metal3Machines choose BareMetalHosts by `hostSelector`, get their data
//! rendered from a Metal3DataTemplate with addresses from IPPools, and have the host
//! provisioned with their image, bootstrap user data, network data and meta data;
//! deleted, they give the host and the addresses back.
//!
//! - [`objects`]: CAPM3's objects and the Cluster API objects that drive them, with
//!   upstream's field names.
//! - [`selector`]: `hostSelector` (`matchLabels`, `matchExpressions`).
//! - [`data`]: Metal3DataTemplate rendering (network data in OpenStack's
//!   `network_data.json` layout, meta data), Metal3Data naming and indexes.
//! - [`machine`]: one pure, level-triggered step of a Metal3Machine.
//! - [`controller`]: the steps carried out against an embedded [`metal3_operator::Operator`].
//! - `kube_controller` (the `kube` feature): the steps carried out against a Kubernetes
//!   API server, over CAPM3's CRDs.
//!
//! ```
//! use metal3_capm3::machine::{DataState, MachineAction, MachineInput, step};
//! use metal3_capm3::objects::{Machine, Metal3Machine};
//!
//! let m3m: Metal3Machine = serde_json::from_str(
//!     r#"{"metadata": {"name": "worker-0", "namespace": "cluster"},
//!         "spec": {"image": {"url": "http://images/node.img", "checksum": "abc", "checksumType": "sha256"},
//!                  "hostSelector": {"matchLabels": {"role": "worker"}}}}"#,
//! ).map_err(|e| e.to_string())?;
//! let machine: Machine = serde_json::from_str(
//!     r#"{"metadata": {"name": "worker-0", "namespace": "cluster"},
//!         "spec": {"clusterName": "c", "bootstrap": {"dataSecretName": "worker-0-bootstrap"}}}"#,
//! ).map_err(|e| e.to_string())?;
//! // No host at all: the machine waits, saying why.
//! let next = step(&MachineInput {
//!     metal3_machine: &m3m,
//!     machine: Some(&machine),
//!     deleting: false,
//!     node_reuse: false,
//!     hosts: &[],
//!     data: &DataState::NotNeeded,
//! });
//! assert_eq!(next.action, None);
//! assert_eq!(next.status.condition("AssociateBMH").map(|c| c.reason.as_str()), Some("NoAvailableHost"));
//! # Ok::<(), String>(())
//! ```

pub mod controller;
pub mod data;
#[cfg(feature = "kube")]
pub mod kube_controller;
pub mod machine;
pub mod objects;
pub mod selector;
