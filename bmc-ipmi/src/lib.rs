//! An IPMI v2.0 / RMCP+ implementation for `bmc_core::BmcDriver`.
//!
//! Status: the pure [`codec`] is here (RMCP and ASF presence ping, IPMI 1.5 and 2.0
//! session framing, Open Session, RAKP 1–4 and their HMACs, SIK/K1/K2 derivation for
//! HMAC-SHA1 and HMAC-SHA256, the integrity trailer, AES-CBC-128, LAN messages with
//! checksums), verified byte for byte against the recorded sessions in
//! `shared/fixtures/ipmi`. The tokio UDP session and `IpmiDriver` come next.
//!
//! ```
//! use bmc_ipmi::codec::lan::{Request, Response};
//!
//! // Chassis (netFn 0x00), Get Chassis Status (0x01).
//! let req = Request { netfn: 0x00, cmd: 0x01, seq: 3, data: vec![] };
//! let bytes = req.encode();
//! assert_eq!(Request::decode(&bytes)?, req);
//! # Ok::<(), bmc_ipmi::codec::CodecError>(())
//! ```

pub mod codec;
