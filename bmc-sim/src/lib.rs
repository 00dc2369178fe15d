//! Simulated BMCs for tests, benchmarks and the demo.
//!
//! [`RedfishSim`] serves a recorded Redfish tree from `shared/fixtures/redfish` (or a small
//! built-in one) on 127.0.0.1 with working state: power transitions (with a configurable
//! delay), boot override (checked against the tree's allowable values), virtual-media
//! insert and eject (by action or by PATCH, as the tree's slots allow), sessions with
//! expiry, ETags and `If-Match`, many systems behind one port, and injectable faults
//! (status codes, busy with `Retry-After`, latency, expired sessions, garbage bodies,
//! connections dropped mid-answer, answers of any status and body, and a random 503
//! rate).
//!
//! It is as strict about URIs as a BMC: a recorded resource is served only at the path it
//! was recorded at or at its own `@odata.id` (case and trailing slash as written), an
//! action only at its advertised `target`, a session only at its `Location`; anything
//! else is 404. Every answer carries `OData-Version: 4.0`, a method a resource does not
//! take gets 405 with `Allow`. [`SimConfig::lenient_paths`] serves any spelling, for a
//! test that asks for it.
//!
//! It also behaves like the vendor whose tree it serves ([`vendor`]): what a power-on
//! boots is decided the vendor's way and recorded ([`RedfishSim::boots`]): a `Cd`
//! override boots the physical drive on iDRAC before 6.00.02, Dell's configuration
//! import (`VCD-DVD`) answers 202 with a job and boots the virtual CD, HPE's
//! `BootOnNextServerReset`, OEM insert/eject and power button work, iLO refuses to eject
//! an empty slot, and the error bodies recorded in the trees are answered with an error
//! status.
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
pub mod vendor;

pub use redfish::{AttachedMedia, BootEvent, BootHook, Fault, RedfishSim, SimConfig};
