//! Simulated BMCs for tests, benchmarks and the demo.
//!
//! [`RedfishSim`] serves a recorded Redfish tree from `shared/fixtures/redfish` (or a small
//! built-in one) on 127.0.0.1 with working state: power transitions (with a configurable
//! delay), boot override (checked against the tree's allowable values), virtual-media
//! insert and eject (by action or by PATCH, as the tree's slots allow), sessions with
//! expiry, ETags and `If-Match`, many systems behind one port, and injectable faults
//! (status codes, busy with `Retry-After`, latency, expired sessions, garbage bodies,
//! connections dropped mid-answer, and a random 503 rate).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use bmc_sim::{Fault, RedfishSim, SimConfig};
//!
//! let sim = RedfishSim::start(SimConfig {
//!     credentials: Some(("admin".into(), "password".into())),
//!     ..SimConfig::default()
//! })
//! .await?;
//! println!("Redfish BMC at {}", sim.url());
//! sim.inject([Fault::Busy, Fault::ExpireSessions]);
//! sim.stop().await;
//! # Ok(())
//! # }
//! ```

mod redfish;
pub mod tree;

pub use redfish::{Fault, RedfishSim, SimConfig};
