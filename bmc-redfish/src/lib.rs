//! A Redfish driver implementing `bmc_core::BmcDriver`.
//!
//! Status: skeleton. The client (sessions with basic-auth fallback, ETag handling, task
//! monitors, retries with a per-BMC concurrency limit), the tolerant models, discovery of
//! systems, managers and virtual-media slots, and `RedfishDriver` arrive with the
//! bmc-redfish issue.
