//! Replays every recorded RMCP+ session in `shared/fixtures/ipmi`: key derivation, RAKP
//! HMACs, integrity AuthCodes and AES-CBC decryption are checked byte for byte, and every
//! encrypted packet is rebuilt from its plaintext (same IV) and compared with the capture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use bmc_core::BmcError;
use bmc_ipmi::codec::crypto::{Hash, SessionKeys, password_key};
use bmc_ipmi::codec::lan;
use bmc_ipmi::codec::packet::{self, Datagram, Protection, payload};
use bmc_ipmi::codec::rakp::{Exchange, OpenSessionResponse, Rakp1, Rakp2, Rakp4};
use bmc_ipmi::session::{check_open_session, check_rakp2};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/ipmi")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{s:?}: {e}"))
        })
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

#[derive(Default)]
struct Exchange_ {
    request: Option<Vec<u8>>,
    request_ipmi: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
    response_ipmi: Option<Vec<u8>>,
}

fn read_exchange(path: &Path) -> Exchange_ {
    let mut e = Exchange_::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        let v = Some(hex(v.trim()));
        match k {
            "request" => e.request = v,
            "request_ipmi" => e.request_ipmi = v,
            "response" => e.response = v,
            "response_ipmi" => e.response_ipmi = v,
            _ => {}
        }
    }
    e
}

#[derive(Default, Debug)]
struct Counts {
    sessions: usize,
    keys: usize,
    rakp2_ok: usize,
    rakp2_rejected: usize,
    rakp4: usize,
    sealed: usize,
    sessionless: usize,
    pongs: usize,
}

/// Checks one encrypted, authenticated IPMI packet: AuthCode, decryption, LAN checksums,
/// and that sealing the plaintext again with the same IV gives the same bytes.
fn check_sealed(
    datagram: &[u8],
    expected: &[u8],
    hash: Hash,
    keys: &SessionKeys,
    request: bool,
    what: &str,
) {
    let Datagram::V20(p) = packet::parse(datagram, hash.truncated_len()).unwrap() else {
        panic!("{what}: not IPMI 2.0")
    };
    assert_eq!(p.payload_type, payload::IPMI, "{what}");
    let plain = p
        .open(hash, &keys.k1, Some(&keys.aes_key()))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(plain, expected, "{what}: decrypted message");
    if request {
        lan::Request::decode(&plain).unwrap_or_else(|e| panic!("{what}: {e}"));
    } else {
        lan::Response::decode(&plain).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let iv: [u8; 16] = p.payload[..16].try_into().unwrap();
    let aes = keys.aes_key();
    let resealed = packet::seal(
        payload::IPMI,
        p.session_id,
        p.seq,
        &plain,
        &Protection {
            integrity: Some((hash, &keys.k1)),
            confidentiality: Some((&aes, iv)),
        },
    );
    assert_eq!(
        resealed, datagram,
        "{what}: rebuilt packet differs from the capture"
    );
    // One flipped bit anywhere in the covered bytes is caught.
    let mut forged = datagram.to_vec();
    let at = 20;
    forged[at] ^= 0x01;
    if let Ok(Datagram::V20(f)) = packet::parse(&forged, hash.truncated_len()) {
        assert!(
            f.open(hash, &keys.k1, Some(&aes)).is_err(),
            "{what}: forged packet accepted"
        );
    }
}

#[test]
fn every_recorded_session_replays_byte_for_byte() {
    let mut counts = Counts::default();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 20,
        "fixtures missing (tests expect shared/ beside the repository)"
    );
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("session.json")).unwrap())
                .unwrap();
        assert_eq!(s["problems"], serde_json::json!([]), "{name}");
        let files: Vec<String> = s["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        if name.ends_with("asf-presence-ping") {
            let e = read_exchange(&dir.join(&files[0]));
            let req = e.request.unwrap();
            assert_eq!(packet::asf_presence_ping(req[9]), req, "{name}");
            let pong = packet::decode_presence_pong(&e.response.unwrap()).unwrap();
            assert_eq!(pong.tag, req[9]);
            assert!(pong.ipmi, "{name}");
            counts.pongs += 1;
            continue;
        }
        counts.sessions += 1;
        let hash = if s["algorithms"].as_str().unwrap().contains("SHA256") {
            Hash::Sha256
        } else {
            Hash::Sha1
        };
        let mut keys = None;
        let mut exchange = None;
        for file in &files {
            let e = read_exchange(&dir.join(file));
            let what = format!("{name}/{file}");
            if file.contains("get-channel-auth-capabilities") || (file.contains("cipher-suites")) {
                let req = e.request.unwrap();
                match packet::parse(&req, 0).unwrap() {
                    Datagram::V15(v) => {
                        assert_eq!(Some(v.message.clone()), e.request_ipmi, "{what}");
                        assert_eq!(packet::V15::sessionless(&v.message), req, "{what}: rebuilt");
                    }
                    // ipmitool asks for cipher suites in IPMI 2.0 framing outside a session.
                    Datagram::V20(v) => {
                        assert_eq!(Some(v.payload.clone()), e.request_ipmi, "{what}");
                        let none = Protection {
                            integrity: None,
                            confidentiality: None,
                        };
                        assert_eq!(
                            packet::seal(payload::IPMI, 0, 0, &v.payload, &none),
                            req,
                            "{what}: rebuilt"
                        );
                    }
                }
                if let (Some(resp), Some(expected)) = (e.response, e.response_ipmi) {
                    let Datagram::V15(r) = packet::parse(&resp, 0).unwrap() else {
                        panic!("{what}")
                    };
                    assert_eq!(r.message, expected, "{what}");
                    lan::Response::decode(&r.message).unwrap();
                }
                counts.sessionless += 1;
            } else if file.contains("open-session") {
                let Some(resp) = e.response else { continue };
                let Datagram::V20(p) = packet::parse(&resp, 0).unwrap() else {
                    panic!("{what}")
                };
                let r = OpenSessionResponse::decode(&p.payload).unwrap();
                assert_eq!(
                    i64::from(r.status),
                    s["open_session_status"].as_i64().unwrap(),
                    "{what}"
                );
                if let Err(e) = check_open_session(&r) {
                    // A refused cipher suite: a clear rejection naming the RMCP+ status.
                    assert!(matches!(e, BmcError::Rejected { .. }), "{what}: {e:?}");
                    let text = e.to_string();
                    assert!(
                        text.contains("unsupported authentication algorithm")
                            || text.contains("no cipher suite match"),
                        "{what}: {text}"
                    );
                    errors.push((name.clone(), text));
                }
            } else if file.contains("rakp1-rakp2") {
                let Datagram::V20(p1) = packet::parse(&e.request.unwrap(), 0).unwrap() else {
                    panic!("{what}")
                };
                let r1 = Rakp1::decode(&p1.payload).unwrap();
                assert_eq!(r1.rm, arr::<16>(s["rm"].as_str().unwrap()), "{what}");
                assert_eq!(
                    i64::from(r1.role),
                    s["rakp1_role_byte"].as_i64().unwrap(),
                    "{what}"
                );
                assert_eq!(r1.encode(), p1.payload, "{what}: RAKP 1 rebuilt");
                let Datagram::V20(p2) = packet::parse(&e.response.unwrap(), 0).unwrap() else {
                    panic!("{what}")
                };
                let r2 = Rakp2::decode(&p2.payload, hash).unwrap();
                let ex = Exchange {
                    console_session_id: arr(s["sidm"].as_str().unwrap()),
                    bmc_session_id: arr(s["sidc"].as_str().unwrap()),
                    rm: r1.rm,
                    rc: r2.rc,
                    guid: r2.guid,
                    role: r1.role,
                    user: r1.user.clone(),
                };
                let client_kuid = password_key(s["password"].as_str().unwrap().as_bytes());
                if let Err(e) = check_rakp2(&r2, &ex, hash, &client_kuid) {
                    // Unknown user (status 0x0d) and wrong password (auth code): distinct,
                    // clear authentication errors.
                    let text = e.to_string();
                    assert!(
                        matches!(e, BmcError::AuthenticationFailed { .. }),
                        "{what}: {e:?}"
                    );
                    if name.contains("unknown-user") {
                        assert!(text.contains("unauthorized name"), "{what}: {text}");
                    } else {
                        assert!(
                            name.contains("wrong-password"),
                            "{what}: unexpected refusal {text}"
                        );
                        assert!(
                            text.contains("does not verify with this password"),
                            "{what}: {text}"
                        );
                        assert_eq!(s["rakp2_verifies_with_client_password"], false, "{what}");
                    }
                    errors.push((name.clone(), text));
                    counts.rakp2_rejected += 1;
                    break;
                }
                assert_eq!(r2.rc, arr::<16>(s["rc"].as_str().unwrap()), "{what}");
                counts.rakp2_ok += 1;
                let bmc_kuid = password_key(s["bmc_password"].as_str().unwrap().as_bytes());
                let k = SessionKeys::derive(hash, &bmc_kuid, &ex.rm, &ex.rc, ex.role, &ex.user);
                assert_eq!(k.sik, hex(s["sik"].as_str().unwrap()), "{what}: SIK");
                assert_eq!(k.k1, hex(s["k1"].as_str().unwrap()), "{what}: K1");
                assert_eq!(k.k2, hex(s["k2"].as_str().unwrap()), "{what}: K2");
                assert_eq!(
                    k.aes_key().to_vec(),
                    hex(s["aes_key"].as_str().unwrap()),
                    "{what}: AES key"
                );
                counts.keys += 1;
                keys = Some(k);
                exchange = Some(ex);
            } else if file.contains("rakp3-rakp4") {
                let (Some(k), Some(ex)) = (&keys, &exchange) else {
                    continue;
                };
                let Datagram::V20(p3) = packet::parse(&e.request.unwrap(), 0).unwrap() else {
                    panic!("{what}")
                };
                let kuid = password_key(s["password"].as_str().unwrap().as_bytes());
                assert_eq!(
                    &p3.payload[8..],
                    ex.rakp3_code(hash, &kuid).as_slice(),
                    "{what}: RAKP 3 code"
                );
                let Datagram::V20(p4) = packet::parse(&e.response.unwrap(), 0).unwrap() else {
                    panic!("{what}")
                };
                let r4 = Rakp4::decode(&p4.payload, hash).unwrap();
                assert_eq!(r4.status, 0, "{what}");
                assert_eq!(
                    r4.icv,
                    ex.rakp4_icv(hash, &k.sik),
                    "{what}: RAKP 4 check value"
                );
                counts.rakp4 += 1;
            } else if let (Some(k), Some(req), Some(req_ipmi)) =
                (&keys, &e.request, &e.request_ipmi)
            {
                check_sealed(req, req_ipmi, hash, k, true, &format!("{what} request"));
                counts.sealed += 1;
                if let (Some(resp), Some(resp_ipmi)) = (&e.response, &e.response_ipmi) {
                    check_sealed(resp, resp_ipmi, hash, k, false, &format!("{what} response"));
                    counts.sealed += 1;
                }
            }
        }
    }
    println!("{counts:?}");
    for (name, text) in &errors {
        println!("{name}: {text}");
    }
    assert_eq!(
        errors.len(),
        6,
        "two refused suites, two unknown users, two wrong passwords"
    );
    assert_eq!(counts.pongs, 2);
    // 19 sessions: 2 refused at Open Session (suite 17 on OpenIPMI, suite 1 on pyghmi),
    // 4 refused at RAKP 2 (two wrong passwords, two unknown users), 13 established.
    assert_eq!(counts.sessions, 19, "{counts:?}");
    assert_eq!(counts.keys, 13, "{counts:?}");
    assert_eq!(counts.rakp4, 13, "{counts:?}");
    assert_eq!(counts.rakp2_rejected, 4, "{counts:?}");
    assert_eq!(
        counts.sealed, 194,
        "every encrypted packet of every session: {counts:?}"
    );
    assert_eq!(counts.sessionless, 20, "{counts:?}");
}

#[test]
fn channel_queries_decode_as_recorded() {
    use bmc_ipmi::codec::channel::{AuthCapabilities, parse_cipher_suite_records};
    // Get Channel Cipher Suites as ipmitool sent it to pyghmi, and pyghmi's answer.
    let e = read_exchange(
        &fixtures().join("pyghmi-auto-cipher-mc-guid/02-get-channel-cipher-suites.txt"),
    );
    let req = bmc_ipmi::codec::channel::cipher_suites_request(1, 0).encode();
    assert_eq!(Some(req), e.request_ipmi);
    let resp = lan::Response::decode(&e.response_ipmi.unwrap()).unwrap();
    assert_eq!(parse_cipher_suite_records(&resp.data[1..]), [3, 17]);
    // Every Get Channel Authentication Capabilities answer says IPMI 2.0.
    let mut seen = 0;
    for dir in std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(Result::ok)
    {
        let f = dir.path().join("01-get-channel-auth-capabilities.txt");
        if let Ok(true) = f.try_exists() {
            let e = read_exchange(&f);
            let r = lan::Response::decode(&e.response_ipmi.unwrap()).unwrap();
            let caps = AuthCapabilities::decode(&r.data).unwrap();
            assert!(caps.ipmi20, "{}", f.display());
            assert!(!caps.kg_set, "{}", f.display());
            seen += 1;
        }
    }
    assert!(seen >= 15, "{seen}");
    assert_eq!(
        parse_cipher_suite_records(&[0xc1, 0x80, 0x01, 0x02, 0x03, 0x01, 0x41, 0xc0, 0x03, 0x01]),
        [0x80, 3]
    );
    assert!(parse_cipher_suite_records(&[0x01, 0xc0, 0x03]).is_empty());
}
