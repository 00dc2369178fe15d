//! The example conductor, operator and end-to-end demo, and small tools, built on the
//! crate family.
//!
//! - `bmc-address`: parses BMC addresses with Metal3's rules and prints what each one
//!   means (driver, endpoint, system id, capability flags).
//! - `bmcctl`: drives one BMC (power, boot override, virtual media, the verified
//!   virtual-media boot, inventory) through the driver registry.
//! - `metal3-demo` ([`demo`]): the whole workflow on a simulated fleet, in this process or
//!   in fleet processes of its own ([`fleet_process`]).
//! - `conductor` ([`conductor`], [`api`], [`agent`], [`changes`]): nodes through
//!   provision-fsm's node table with the registry's drivers, the admin API (with a change
//!   feed of node states) and the agent API over HTTP.
//! - `operator` ([`operator`], [`store`]): BareMetalHosts through provision-fsm's host
//!   machine against a conductor, addresses from ipam, state in an embedded store.
//! - [`manifests`]: Metal3 objects (`BareMetalHost`, `Secret`, `IPPool`, `IPClaim`) from
//!   YAML with upstream's field names; [`fleet`]: the simulated hosts, image server and
//!   agent.
//!
//! ```
//! use bmc_examples::manifests::Manifests;
//!
//! let mut m = Manifests::default();
//! m.add_yaml("kind: BareMetalHost\nmetadata: {name: h0}\nspec: {online: true}\n", "inline")?;
//! assert_eq!(m.hosts[0].metadata.key(), "default/h0");
//! # Ok::<(), String>(())
//! ```

pub mod agent;
pub mod api;
pub mod changes;
pub mod conductor;
pub mod controller;
pub mod demo;
pub mod fleet;
pub mod fleet_process;
#[cfg(feature = "kube")]
pub mod kube_controller;
pub mod manifests;
pub mod operator;
pub mod store;
