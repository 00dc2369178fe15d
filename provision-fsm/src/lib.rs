//! The host lifecycle and the conductor's node states as pure state machines.
//!
//! Pure: no I/O, no clock, no async, no randomness. An event and the current time go in;
//! the new state, the actions to carry out and the next time the machine wants to be woken
//! come out. Jitter for backoff is an input, so runs are reproducible.
//!
//! - [`Host::step`] drives a BareMetalHost through Metal3's provisioning states
//!   (`registering`, `inspecting`, `preparing`, `available`, `provisioning`, `provisioned`,
//!   `deprovisioning`, `powering off before delete`, `deleting`, …) from its spec and the
//!   results of the actions it asked for, with Metal3's errors, backoff and delete rules.
//! - [`Node::handle`] drives a conductor node through Ironic's provision states, with
//!   timeouts for the waiting states ([`Node::on_timer`]).
//!
//! ```
//! use std::time::Duration;
//! use provision_fsm::{ChecksumType, Host, HostAction, HostEvent, HostSpec, HostStateKind, Image, StepContext};
//!
//! let spec = HostSpec {
//!     image: Some(Image { url: "http://img/os.qcow2".into(), checksum: Some("abc".into()),
//!                         checksum_type: Some(ChecksumType::Sha256), format: None }),
//!     ..HostSpec::default()
//! };
//! let ctx = StepContext::at(Duration::ZERO);
//!
//! // A new host asks to be registered with the conductor.
//! let step = Host::new().step(&spec, &HostEvent::Reconcile, &ctx);
//! assert_eq!(step.host.state.kind(), HostStateKind::Registering);
//! assert!(matches!(step.actions[..], [HostAction::Register { .. }]));
//!
//! // Registered: inspection starts (capacity permitting).
//! let event = HostEvent::Registered { credentials_version: "1".into() };
//! let step = step.host.step(&spec, &event, &ctx);
//! assert_eq!(step.host.state.kind(), HostStateKind::Inspecting);
//!
//! // Inspected: nothing to prepare, so available, and the image makes it provision.
//! let step = step.host.step(&spec, &HostEvent::InspectionDone, &ctx);
//! assert_eq!(step.host.state.kind(), HostStateKind::Provisioning);
//! assert_eq!(step.transitions.iter().map(|t| t.id).collect::<Vec<_>>(),
//!            ["inspecting.done", "preparing.done", "available.provision"]);
//! let step = step.host.step(&spec, &HostEvent::ProvisioningDone, &ctx);
//! assert_eq!(step.host.state.kind(), HostStateKind::Provisioned);
//! assert_eq!(serde_json::to_value(&step.host)?["state"], "provisioned");
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! # Host states
//!
//! Generated from [`HOST_TRANSITIONS`] (`diagrams/host.mmd`; a test fails when it is out
//! of date):
//!
#![doc = concat!("```mermaid\n", include_str!("../diagrams/host.mmd"), "```")]
//!
//! # Node states
//!
//! Generated from [`NODE_TRANSITIONS`] (`diagrams/node.mmd`):
//!
#![doc = concat!("```mermaid\n", include_str!("../diagrams/node.mmd"), "```")]

pub mod diagram;
mod host;
mod host_types;
mod image;
mod node;
mod time;

pub use host::{
    CREDENTIALS_RETRY, DELETE_RETRIES, HOST_TRANSITIONS, Host, HostStep, HostTransition,
    POWER_POLL, SLOW_POLL, rows,
};
pub use host_types::{
    CredentialsState, Detach, DetachedDeleteAction, ErrorType, HostAction, HostError, HostEvent,
    HostSpec, HostState, HostStateKind, InspectionMode, OperationalStatus, Pending, RebootMode,
    StepContext,
};
pub use image::{ChecksumType, Image, ImageFormat};
pub use node::{
    InvalidNodeEvent, NODE_TRANSITIONS, Node, NodeAction, NodeEvent, NodeState, NodeStep,
    NodeTimeouts, NodeTransition,
};
pub use time::{MAX_BACKOFF_COUNT, Time, backoff};
