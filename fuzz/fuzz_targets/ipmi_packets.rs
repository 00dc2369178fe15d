//! IPMI: every datagram and message decoder, and opening packets with session keys, over
//! arbitrary bytes: typed errors, never a panic.
#![no_main]

use bmc_ipmi::codec::crypto::{Hash, decrypt};
use bmc_ipmi::codec::lan;
use bmc_ipmi::codec::packet::{self, Datagram};
use bmc_ipmi::codec::rakp::{OpenSessionResponse, Rakp1, Rakp2, Rakp4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for n in [0usize, 12, 16] {
        if let Ok(Datagram::V20(p)) = packet::parse(data, n) {
            let _ = p.open(Hash::Sha1, &[1; 20], Some(&[2; 16]));
            let _ = p.open(Hash::Sha256, &[1; 32], None);
            let _ = OpenSessionResponse::decode(&p.payload);
            let _ = Rakp1::decode(&p.payload);
            let _ = Rakp2::decode(&p.payload, Hash::Sha1);
            let _ = Rakp2::decode(&p.payload, Hash::Sha256);
            let _ = Rakp4::decode(&p.payload, Hash::Sha256);
        }
    }
    if let Ok(Datagram::V15(v)) = packet::parse(data, 0) {
        let _ = lan::Response::decode(&v.message);
    }
    let _ = packet::decode_presence_pong(data);
    let _ = lan::Request::decode(data);
    let _ = lan::Response::decode(data);
    let _ = decrypt(&[3; 16], data);
});
