//! The example operator (baremetal-operator's role): BareMetalHosts reconciled one
//! level-triggered step at a time against a conductor's admin API, addresses claimed from
//! ipam and rendered into each host's network data, state in an embedded store.
//!
//! - [`manifests`]: Metal3 objects (`BareMetalHost`, `Secret`, `IPPool`, `IPClaim`) from
//!   YAML with upstream's field names.
//! - [`operator`]: the records and the one step, [`Operator::reconcile`];
//!   [`scheduler`]: embedded mode's scheduling of that step; [`controller`]: the same
//!   step in controller form, which the `kube` feature runs under kube-runtime
//!   (`kube_controller`), one replica at a time by leader election (`leader`).
//! - [`addresses`]: where a claimed address is recorded before it is used (the store
//!   alone, or the API server's `IPAddress` objects: `kube_ipam`).
//! - [`store`]: the embedded transactional store; [`render`]: status, hardware details
//!   and network data in Metal3's layouts (`operationHistory` included); [`progress`]: a
//!   one-line summary of a fleet; [`metrics`]: the Prometheus metrics under
//!   baremetal-operator's names.
//!
//! ```
//! use metal3_operator::manifests::Manifests;
//!
//! let mut m = Manifests::default();
//! m.add_yaml("kind: BareMetalHost\nmetadata: {name: h0}\nspec: {online: true}\n", "inline")?;
//! assert_eq!(m.hosts[0].metadata.key(), "default/h0");
//! # Ok::<(), String>(())
//! ```

pub mod addresses;
pub mod controller;
#[cfg(feature = "kube")]
pub mod kube_controller;
#[cfg(feature = "kube")]
pub mod kube_ipam;
#[cfg(feature = "kube")]
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod operator;
pub mod progress;
pub mod render;
pub mod scheduler;
pub mod store;

pub use operator::{Operator, OperatorConfig, Reconciled};
