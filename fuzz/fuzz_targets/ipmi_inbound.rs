//! An IPMI session fed arbitrary datagrams: the session's inbound filter never panics and
//! never accepts anything that was not sealed with the session's keys.
#![no_main]

use bmc_ipmi::codec::crypto::{Hash, SessionKeys};
use bmc_ipmi::session::Inbound;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<Vec<u8>>, u8, u8)| {
    let (datagrams, cmd, rq_seq) = input;
    let keys = SessionKeys::derive(Hash::Sha256, b"password", &[1; 16], &[2; 16], 0x14, b"admin");
    let mut inbound = Inbound::new(0xa0a2_a3a4, Hash::Sha256, &keys);
    for d in datagrams.iter().take(64) {
        // Arbitrary bytes cannot carry a valid HMAC-SHA256-128 under these keys.
        assert!(inbound.accept(d, 0x00, cmd, rq_seq & 0x3f).is_none());
    }
});
