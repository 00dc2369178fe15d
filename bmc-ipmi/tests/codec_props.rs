//! Property tests: no decoder panics on any input, and sealed packets round-trip.
#![allow(clippy::unwrap_used)]

use bmc_ipmi::codec::crypto::{Hash, SessionKeys, decrypt, encrypt};
use bmc_ipmi::codec::lan;
use bmc_ipmi::codec::packet::{self, Datagram, Protection, payload};
use bmc_ipmi::codec::rakp::{OpenSessionResponse, Rakp1, Rakp2, Rakp4};
use proptest::prelude::*;

proptest! {
    #[test]
    fn decoders_never_panic(b in prop::collection::vec(any::<u8>(), 0..200), n in 0usize..20) {
        let _ = packet::parse(&b, n);
        let _ = packet::decode_presence_pong(&b);
        let _ = lan::Request::decode(&b);
        let _ = lan::Response::decode(&b);
        let _ = OpenSessionResponse::decode(&b);
        let _ = Rakp1::decode(&b);
        let _ = Rakp2::decode(&b, Hash::Sha1);
        let _ = Rakp2::decode(&b, Hash::Sha256);
        let _ = Rakp4::decode(&b, Hash::Sha256);
        let _ = decrypt(&[7; 16], &b);
        if let Ok(Datagram::V20(p)) = packet::parse(&b, 12) {
            let _ = p.open(Hash::Sha1, &[1; 20], Some(&[2; 16]));
        }
    }

    #[test]
    fn sealed_packets_open_to_their_plaintext(
        data in prop::collection::vec(any::<u8>(), 0..120),
        iv in any::<[u8; 16]>(),
        sid in any::<u32>(),
        seq in any::<u32>(),
        sha256 in any::<bool>(),
    ) {
        let hash = if sha256 { Hash::Sha256 } else { Hash::Sha1 };
        let keys = SessionKeys::derive(hash, b"password", &[1; 16], &[2; 16], 0x14, b"admin");
        let aes = keys.aes_key();
        let wire = packet::seal(payload::IPMI, sid, seq, &data, &Protection {
            integrity: Some((hash, &keys.k1)),
            confidentiality: Some((&aes, iv)),
        });
        let Datagram::V20(p) = packet::parse(&wire, hash.truncated_len()).unwrap() else { panic!() };
        prop_assert_eq!((p.session_id, p.seq, p.encrypted, p.authenticated), (sid, seq, true, true));
        prop_assert_eq!(p.open(hash, &keys.k1, Some(&aes)).unwrap(), data.clone());
        // The wrong key is refused.
        prop_assert!(p.open(hash, &keys.k2, Some(&aes)).is_err());
        prop_assert_eq!(decrypt(&aes, &encrypt(&aes, &iv, &data)).unwrap(), data);
    }

    #[test]
    fn lan_messages_round_trip(netfn in 0u8..32, cmd in any::<u8>(), seq in 0u8..64, data in prop::collection::vec(any::<u8>(), 0..40)) {
        let req = lan::Request { netfn: netfn & !1, cmd, seq, data: data.clone() };
        prop_assert_eq!(lan::Request::decode(&req.encode()).unwrap(), req);
        let resp = lan::Response { netfn: netfn | 1, cmd, seq, completion: 0, data };
        let mut bytes = resp.encode();
        prop_assert_eq!(lan::Response::decode(&bytes).unwrap(), resp);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        prop_assert!(lan::Response::decode(&bytes).is_err(), "a bad checksum is refused");
    }
}
