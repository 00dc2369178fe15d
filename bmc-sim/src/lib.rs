//! Simulated BMCs for tests, benchmarks and the demo: a Redfish server serving recorded
//! trees with working power, boot override, virtual media and sessions, and injectable
//! faults.
//!
//! Status: skeleton; the simulator arrives with the bmc-redfish issue.
