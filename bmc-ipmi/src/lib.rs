//! An IPMI v2.0 / RMCP+ driver implementing `bmc_core::BmcDriver`.
//!
//! Status: skeleton. The pure codec (RMCP, sessions, RAKP, key derivation, integrity,
//! AES-CBC-128; cipher suites 3 and 17), the tokio UDP session and `IpmiDriver` arrive with
//! the bmc-ipmi issue.
