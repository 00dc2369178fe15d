//! The session's inbound filter with crafted and arbitrary datagrams: only authentic,
//! fresh answers to the command asked get through.
#![allow(clippy::unwrap_used)]

use bmc_ipmi::codec::crypto::{Hash, SessionKeys};
use bmc_ipmi::codec::lan::Response;
use bmc_ipmi::codec::packet::{self, Protection, payload};
use bmc_ipmi::session::Inbound;
use proptest::prelude::*;

const CONSOLE: u32 = 0xa0a2_a3a4;

fn keys() -> SessionKeys {
    SessionKeys::derive(
        Hash::Sha256,
        b"password",
        &[1; 16],
        &[2; 16],
        0x14,
        b"admin",
    )
}

fn answer(seq: u32, rq_seq: u8, cmd: u8, k: &SessionKeys) -> Vec<u8> {
    let msg = Response {
        netfn: 0x01,
        cmd,
        seq: rq_seq,
        completion: 0,
        data: vec![0x21],
    }
    .encode();
    let aes = k.aes_key();
    packet::seal(
        payload::IPMI,
        CONSOLE,
        seq,
        &msg,
        &Protection {
            integrity: Some((Hash::Sha256, &k.k1)),
            confidentiality: Some((&aes, [9; 16])),
        },
    )
}

#[test]
fn only_fresh_authentic_answers_to_the_request_pass() {
    let k = keys();
    let mut inbound = Inbound::new(CONSOLE, Hash::Sha256, &k);
    let ok = answer(5, 7, 0x01, &k);
    assert!(inbound.accept(&ok, 0x00, 0x01, 7).is_some());
    assert!(
        inbound.accept(&ok, 0x00, 0x01, 7).is_none(),
        "a replay is dropped"
    );
    assert!(
        inbound
            .accept(&answer(6, 6, 0x01, &k), 0x00, 0x01, 7)
            .is_none(),
        "answer to an earlier try"
    );
    assert!(
        inbound
            .accept(&answer(7, 7, 0x02, &k), 0x00, 0x01, 7)
            .is_none(),
        "answer to another command"
    );
    assert!(
        inbound
            .accept(&answer(0, 7, 0x01, &k), 0x00, 0x01, 7)
            .is_none(),
        "sequence number 0"
    );
    assert!(
        inbound
            .accept(&answer(40, 7, 0x01, &k), 0x00, 0x01, 7)
            .is_some()
    );
    assert!(
        inbound
            .accept(&answer(20, 7, 0x01, &k), 0x00, 0x01, 7)
            .is_none(),
        "more than 16 behind"
    );
    let other = SessionKeys::derive(Hash::Sha256, b"other", &[1; 16], &[2; 16], 0x14, b"admin");
    assert!(
        inbound
            .accept(&answer(41, 7, 0x01, &other), 0x00, 0x01, 7)
            .is_none(),
        "wrong keys"
    );
    let mut forged = answer(42, 7, 0x01, &k);
    forged[30] ^= 1;
    assert!(
        inbound.accept(&forged, 0x00, 0x01, 7).is_none(),
        "a flipped bit"
    );
    assert!(
        inbound
            .accept(&answer(43, 7, 0x01, &k), 0x00, 0x01, 7)
            .is_some()
    );
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_pass_or_panic(b in prop::collection::vec(any::<u8>(), 0..160)) {
        let mut inbound = Inbound::new(CONSOLE, Hash::Sha256, &keys());
        prop_assert!(inbound.accept(&b, 0x00, 0x01, 7).is_none());
    }
}
