//! The whole Metal3 workflow on a simulated fleet: the conductor and operator crates over
//! simulated BMCs (bmc-sim serving recorded vendor trees), an image server and simulated
//! agents. The only crate of the family with bmc-sim as a normal dependency.
//!
//! - [`demo`]: what `metal3-demo` runs, as a library so the end-to-end tests run exactly
//!   the same thing; [`cluster`]: what `metal3-demo --cluster` runs (Cluster API's flow:
//!   machines choose hosts by label, data rendered from IPPools, scale down and up).
//! - [`fleet`]: the simulated hosts and the image server; [`fleet_process`]: the same in
//!   processes of their own; [`sim_agent`]: the simulated agent a host starts when it
//!   boots the agent ISO.
//! - [`lab`]: the same workflow on the real virtual machines of `vm-lab.sh`, with the real
//!   agent and a real OS image, at a site with no DHCP.
//!
//! ```
//! use metal3_demo::fleet;
//!
//! let dell = fleet::vendor("dell").ok_or("no dell")?;
//! assert!(dell.scheme.starts_with("idrac-virtualmedia"));
//! # Ok::<(), &str>(())
//! ```

pub mod cluster;
pub mod conductor_process;
pub mod demo;
pub mod fleet;
pub mod fleet_process;
pub mod lab;
pub mod sim_agent;
