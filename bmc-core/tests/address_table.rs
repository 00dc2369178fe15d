//! Metal3's BMC address tests (`baremetal-operator` `pkg/hardwareutils/bmc/access_test.go`),
//! ported row by row, plus the scheme table and upstream's error texts.

use std::collections::BTreeMap;

use bmc_core::{AddressError, BmcAddress, BmcScheme, Credentials, DriverKind};

struct Row {
    input: &'static str,
    scheme: &'static str,
    hostname: &'static str,
    host: &'static str,
    port: &'static str,
    path: &'static str,
}

/// `TestParse`: every row that upstream expects to parse.
const PARSE_OK: &[Row] = &[
    Row {
        input: "libvirt://192.168.122.1:6233/?abc=def",
        scheme: "libvirt",
        hostname: "192.168.122.1",
        host: "192.168.122.1:6233",
        port: "6233",
        path: "/",
    },
    Row {
        input: "192.168.122.1",
        scheme: "ipmi",
        hostname: "192.168.122.1",
        host: "192.168.122.1",
        port: "",
        path: "",
    },
    Row {
        input: "my.favoritebmc.com",
        scheme: "ipmi",
        hostname: "my.favoritebmc.com",
        host: "my.favoritebmc.com",
        port: "",
        path: "",
    },
    Row {
        input: "my.examplehost.com",
        scheme: "ipmi",
        hostname: "my.examplehost.com",
        host: "my.examplehost.com",
        port: "",
        path: "",
    },
    Row {
        input: "192.168.122.1:6233",
        scheme: "ipmi",
        hostname: "192.168.122.1",
        host: "192.168.122.1:6233",
        port: "6233",
        path: "",
    },
    Row {
        input: "[fe80::fc33:62ff:fe83:8a76]:6233",
        scheme: "ipmi",
        hostname: "fe80::fc33:62ff:fe83:8a76",
        host: "[fe80::fc33:62ff:fe83:8a76]:6233",
        port: "6233",
        path: "",
    },
    Row {
        input: "ipmi://192.168.122.1:6233",
        scheme: "ipmi",
        hostname: "192.168.122.1",
        host: "192.168.122.1:6233",
        port: "6233",
        path: "",
    },
    Row {
        input: "ipmi:192.168.122.1",
        scheme: "ipmi",
        hostname: "192.168.122.1",
        host: "192.168.122.1",
        port: "",
        path: "",
    },
    Row {
        input: "ipmi:192.168.122.1:6233",
        scheme: "ipmi",
        hostname: "192.168.122.1",
        host: "192.168.122.1:6233",
        port: "6233",
        path: "",
    },
    Row {
        input: "redfish://192.168.122.1",
        scheme: "redfish",
        hostname: "192.168.122.1",
        host: "192.168.122.1",
        port: "",
        path: "",
    },
    Row {
        input: "redfish://192.168.122.1:6233/foo",
        scheme: "redfish",
        hostname: "192.168.122.1",
        host: "192.168.122.1:6233",
        port: "6233",
        path: "/foo",
    },
    Row {
        input: "redfish://[fe80::fc33:62ff:fe83:8a76]",
        scheme: "redfish",
        hostname: "fe80::fc33:62ff:fe83:8a76",
        host: "[fe80::fc33:62ff:fe83:8a76]",
        port: "",
        path: "",
    },
    Row {
        input: "redfish://[fe80::fc33:62ff:fe83:8a76]:6233/foo",
        scheme: "redfish",
        hostname: "fe80::fc33:62ff:fe83:8a76",
        host: "[fe80::fc33:62ff:fe83:8a76]:6233",
        port: "6233",
        path: "/foo",
    },
    Row {
        input: "redfish:192.168.122.1",
        scheme: "redfish",
        hostname: "192.168.122.1",
        host: "192.168.122.1",
        port: "",
        path: "",
    },
];

#[test]
fn upstream_parse_table_accepts() {
    for row in PARSE_OK {
        let a = BmcAddress::parse(row.input).unwrap_or_else(|e| panic!("{}: {e}", row.input));
        assert_eq!(a.scheme_str(), row.scheme, "{}", row.input);
        assert_eq!(a.hostname(), row.hostname, "{}", row.input);
        assert_eq!(a.host(), row.host, "{}", row.input);
        assert_eq!(
            a.port().map(|p| p.to_string()).unwrap_or_default(),
            row.port,
            "{}",
            row.input
        );
        assert_eq!(a.path(), row.path, "{}", row.input);
    }
    let libvirt = BmcAddress::parse("libvirt://192.168.122.1:6233/?abc=def").unwrap();
    assert_eq!(libvirt.query_param("abc").as_deref(), Some("def"));
}

/// `TestParse`: the rows upstream expects to fail, with the text Metal3 reports.
#[test]
fn upstream_parse_table_rejects_with_upstream_texts() {
    let cases = [
        (
            "my-.examplehost.com",
            "failed to parse BMC address information: BMC address hostname/IP : [my-.examplehost.com] is invalid",
        ),
        (
            "[fe80::fc33:62ff:fe33:8xff]:6223",
            "failed to parse BMC address information: BMC address hostname/IP : [fe80::fc33:62ff:fe33:8xff] is invalid",
        ),
        (
            "[fe80::fc33:62ff:fe83:8a76]",
            r#"failed to parse BMC address information: parse "[fe80::fc33:62ff:fe83:8a76]": first path segment in URL cannot contain colon"#,
        ),
        // TestUnknownType
        (
            "foo://192.168.122.1",
            "Unknown BMC type 'foo' for address foo://192.168.122.1",
        ),
        ("", "missing BMC address"),
    ];
    for (input, text) in cases {
        let err = BmcAddress::parse(input).expect_err(input);
        assert_eq!(err.to_string(), text, "{input}");
    }
}

#[test]
fn dns_name_with_port_and_no_scheme_is_an_unknown_type_as_upstream() {
    // Go reads `bmc.example.com:623` as scheme `bmc.example.com`.
    let err = BmcAddress::parse("bmc.example.com:623").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unknown BMC type 'bmc.example.com' for address bmc.example.com:623"
    );
}

#[test]
fn all_23_scheme_strings_parse_and_map_to_their_driver() {
    let schemes = BmcScheme::all_scheme_strings();
    assert_eq!(schemes.len(), 23);
    for s in &schemes {
        let input = format!("{s}://192.168.122.1/redfish/v1/Systems/1");
        let a = BmcAddress::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&a.scheme_str(), s);
        let family = s.split('+').next().unwrap();
        let expected_kind = match family {
            "ipmi" | "libvirt" => DriverKind::Ipmi,
            "redfish" | "redfish-virtualmedia" | "redfish-uefihttp" => DriverKind::Redfish,
            "idrac-redfish" | "idrac-virtualmedia" => DriverKind::Idrac,
            "ilo5-redfish" | "ilo5-virtualmedia" => DriverKind::Ilo,
            other => panic!("unexpected scheme {other}"),
        };
        assert_eq!(a.scheme().driver_kind(), expected_kind, "{s}");
    }
    // Upper-case schemes are lower-cased, as Go does.
    assert_eq!(
        BmcAddress::parse("Redfish+HTTPS://h").unwrap().scheme_str(),
        "redfish+https"
    );
}

#[test]
fn removed_and_malformed_schemes_are_unknown() {
    for scheme in [
        "idrac",
        "idrac+https",
        "ilo4",
        "ilo4-virtualmedia",
        "ilo5",
        "irmc",
        "ibmc",
        "ibmc+http",
        "ipmi+http",
        "libvirt+https",
        "redfish+ftp",
        "redfish+",
        "http",
        "https",
    ] {
        let input = format!("{scheme}://192.168.122.1");
        match BmcAddress::parse(&input) {
            Err(AddressError::UnknownType { scheme: s, address }) => {
                assert_eq!(s, scheme);
                assert_eq!(address, input);
            }
            other => panic!("{input}: {other:?}"),
        }
    }
}

/// `TestStaticDriverInfo` and §1.4: the capability flags of every scheme.
#[test]
fn scheme_profiles_match_upstream() {
    // (scheme, ironic driver, boot interface, needs MAC, virtual media, needs prov. network,
    //  secure boot, RAID, fast inspection)
    let table = [
        (
            "ipmi", "ipmi", "ipxe", false, false, true, false, false, false,
        ),
        (
            "libvirt", "ipmi", "ipxe", true, false, true, false, false, false,
        ),
        (
            "redfish", "redfish", "ipxe", false, false, true, true, true, true,
        ),
        (
            "ilo5-redfish",
            "redfish",
            "ipxe",
            false,
            false,
            true,
            true,
            true,
            true,
        ),
        (
            "idrac-redfish",
            "idrac",
            "ipxe",
            false,
            false,
            true,
            true,
            true,
            true,
        ),
        (
            "redfish-virtualmedia",
            "redfish",
            "redfish-virtual-media",
            false,
            true,
            false,
            true,
            true,
            true,
        ),
        (
            "ilo5-virtualmedia",
            "redfish",
            "redfish-virtual-media",
            false,
            true,
            false,
            true,
            true,
            true,
        ),
        (
            "idrac-virtualmedia",
            "idrac",
            "idrac-redfish-virtual-media",
            false,
            true,
            false,
            true,
            true,
            true,
        ),
        (
            "redfish-uefihttp",
            "redfish",
            "redfish-https",
            false,
            true,
            false,
            true,
            true,
            true,
        ),
    ];
    for (scheme, driver, boot, mac, vmedia, provnet, secure, raid, fast) in table {
        let a = BmcAddress::parse(&format!("{scheme}://10.1.1.1")).unwrap();
        let p = a.scheme().profile();
        assert_eq!(p.ironic_driver, driver, "{scheme}");
        assert_eq!(p.boot_interface, boot, "{scheme}");
        assert_eq!(p.needs_mac, mac, "{scheme}");
        assert_eq!(p.supports_virtual_media, vmedia, "{scheme}");
        assert_eq!(p.requires_provisioning_network, provnet, "{scheme}");
        assert_eq!(p.supports_secure_boot, secure, "{scheme}");
        assert_eq!(p.supports_raid(), raid, "{scheme}");
        assert_eq!(p.supports_fast_inspection(), fast, "{scheme}");
        // HEAD rule: a boot MAC is needed iff the driver needs one or inspection is off.
        assert!(p.requires_boot_mac(true));
        assert_eq!(p.requires_boot_mac(false), mac);
    }
    let idrac = BmcScheme::IdracVirtualMedia.profile();
    assert_eq!(idrac.bios_interface, "idrac-redfish");
    assert_eq!(idrac.firmware_interface, "redfish");
}

fn info(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `TestDriverInfo`: the whole table, exact key sets (upstream asserts the key count).
#[test]
fn upstream_driver_info_table() {
    let creds = Credentials::new("user", "pw").unwrap();
    let redfish = |address: &str, system_id: Option<&str>| {
        let mut m = info(&[
            ("redfish_address", address),
            ("redfish_username", "user"),
            ("redfish_password", "pw"),
            ("redfish_verify_ca", "false"),
        ]);
        if let Some(id) = system_id {
            m.insert("redfish_system_id".into(), id.into());
        }
        m
    };
    let ipmi = |level: &str| {
        info(&[
            ("ipmi_port", "623"),
            ("ipmi_address", "192.168.122.1"),
            ("ipmi_priv_level", level),
            ("ipmi_verify_ca", "false"),
            ("ipmi_username", "user"),
            ("ipmi_password", "pw"),
        ])
    };
    let v6 = "fe80::fc33:62ff:fe83:8a76";
    let cases: Vec<(String, BTreeMap<String, String>)> = vec![
        ("ipmi://192.168.122.1".into(), ipmi("ADMINISTRATOR")),
        (
            "ipmi://192.168.122.1?privilegelevel=OPERATOR".into(),
            ipmi("OPERATOR"),
        ),
        (
            "redfish://192.168.122.1/redfish/v1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/redfish/v1/foo/bar")),
        ),
        (
            "redfish+http://192.168.122.1/foo/bar".into(),
            redfish("http://192.168.122.1", Some("/foo/bar")),
        ),
        (
            "redfish+https://192.168.122.1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/foo/bar")),
        ),
        (
            "redfish://192.168.122.1:8080/foo/bar".into(),
            redfish("https://192.168.122.1:8080", Some("/foo/bar")),
        ),
        (
            format!("redfish://[{v6}]/foo/bar"),
            redfish(&format!("https://[{v6}]"), Some("/foo/bar")),
        ),
        (
            format!("redfish://[{v6}]:8080/foo"),
            redfish(&format!("https://[{v6}]:8080"), Some("/foo")),
        ),
        (
            "redfish+https://192.168.122.1/".into(),
            redfish("https://192.168.122.1", None),
        ),
        (
            "redfish+https://192.168.122.1/redfish/v1/".into(),
            redfish("https://192.168.122.1", None),
        ),
        (
            "redfish-virtualmedia://192.168.122.1/redfish/v1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/redfish/v1/foo/bar")),
        ),
        (
            "redfish-virtualmedia://192.168.122.1/redfish/v1/".into(),
            redfish("https://192.168.122.1", None),
        ),
        (
            "ilo5-virtualmedia://192.168.122.1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/foo/bar")),
        ),
        (
            "idrac-redfish://192.168.122.1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/foo/bar")),
        ),
        (
            "idrac-virtualmedia://192.168.122.1/redfish/v1/foo/bar".into(),
            redfish("https://192.168.122.1", Some("/redfish/v1/foo/bar")),
        ),
        (
            "idrac-virtualmedia://192.168.122.1/redfish/v1/".into(),
            redfish("https://192.168.122.1", None),
        ),
        // redfish-uefihttp passes the path even when empty (upstream `redfish_https.go`).
        (
            "redfish-uefihttp://192.168.122.1".into(),
            redfish("https://192.168.122.1", Some("")),
        ),
    ];
    for (input, expected) in cases {
        let a = BmcAddress::parse(&input).unwrap();
        assert_eq!(a.ironic_driver_info(&creds, true), expected, "{input}");
    }
    // Without disableCertificateVerification there is no verify_ca key.
    let a = BmcAddress::parse("redfish://h/x").unwrap();
    assert!(
        !a.ironic_driver_info(&creds, false)
            .contains_key("redfish_verify_ca")
    );
}

#[test]
fn ipmi_defaults_and_privilege_query() {
    let a = BmcAddress::parse("10.0.0.1").unwrap();
    assert_eq!(a.ipmi_port(), 623);
    assert_eq!(a.ipmi_privilege_level(), "ADMINISTRATOR");
    assert_eq!(a.redfish_endpoint(), None);
    let b = BmcAddress::parse("ipmi://10.0.0.1:6230?privilegelevel=USER&x=1").unwrap();
    assert_eq!(b.ipmi_port(), 6230);
    assert_eq!(b.ipmi_privilege_level(), "USER");
    // As upstream: a malformed query falls back to the default.
    let c = BmcAddress::parse("ipmi://10.0.0.1?privilegelevel=USER&x=%zz").unwrap();
    assert_eq!(c.ipmi_privilege_level(), "ADMINISTRATOR");
}

#[test]
fn system_id_rule() {
    for (input, id) in [
        ("redfish://h", None),
        ("redfish://h/", None),
        ("redfish://h/redfish/v1", None),
        ("redfish://h/redfish/v1/", None),
        ("redfish://h//redfish/v1//", None),
        (
            "redfish://h/redfish/v1/Systems/1",
            Some("/redfish/v1/Systems/1"),
        ),
        (
            "redfish://h/redfish/v1/Systems/a%20b",
            Some("/redfish/v1/Systems/a b"),
        ),
    ] {
        let a = BmcAddress::parse(input).unwrap();
        assert_eq!(a.redfish_system_id().as_deref(), id, "{input}");
    }
}

#[test]
fn go_url_error_texts() {
    let cases = [
        (
            "redfish://192.168.122.1:80a",
            r#"failed to parse BMC address information: parse "redfish://192.168.122.1:80a": invalid port ":80a" after host"#,
        ),
        (
            "redfish://[::1",
            r#"failed to parse BMC address information: parse "redfish://[::1": missing ']' in host"#,
        ),
        (
            "::1:623",
            r#"failed to parse BMC address information: parse "::1:623": missing protocol scheme"#,
        ),
        (
            "redfish://bmc_1.example.com",
            "failed to parse BMC address information: BMC address hostname/IP : [bmc_1.example.com] is invalid",
        ),
        (
            "redfish://fe80::1/x",
            "failed to parse BMC address information: BMC address hostname/IP : [fe80:] is invalid",
        ),
        (
            "redfish://[fe80::1%25eth0]/x",
            "failed to parse BMC address information: BMC address hostname/IP : [fe80::1%eth0] is invalid",
        ),
    ];
    for (input, text) in cases {
        assert_eq!(
            BmcAddress::parse(input).unwrap_err().to_string(),
            text,
            "{input}"
        );
    }
}

#[test]
fn deliberate_differences_from_upstream() {
    // Upstream accepts these; they can never reach a BMC.
    assert!(matches!(
        BmcAddress::parse("redfish:///redfish/v1/Systems/1"),
        Err(AddressError::MissingHost(_))
    ));
    assert!(matches!(
        BmcAddress::parse("redfish:"),
        Err(AddressError::MissingHost(_))
    ));
    assert!(matches!(
        BmcAddress::parse("redfish://h:65536"),
        Err(AddressError::InvalidPort { .. })
    ));
    assert_eq!(
        BmcAddress::parse("redfish://h:65535").unwrap().port(),
        Some(65535)
    );
}

#[test]
fn user_info_is_dropped_and_never_displayed() {
    let a = BmcAddress::parse("redfish://root:calvin@10.0.0.9/redfish/v1/Systems/1").unwrap();
    assert_eq!(a.hostname(), "10.0.0.9");
    let shown = format!("{a} {a:?}");
    assert!(!shown.contains("calvin"), "{shown}");
    assert!(!shown.contains("root"), "{shown}");
}

#[test]
fn canonical_display() {
    for (input, shown) in [
        ("192.168.122.1:6233", "ipmi://192.168.122.1:6233"),
        ("my.host", "ipmi://my.host"),
        ("[fe80::1]:623", "ipmi://[fe80::1]:623"),
        (
            "redfish+http://h:08000/r?x=1#frag",
            "redfish+http://h:8000/r?x=1",
        ),
        ("ipmi:10.0.0.1", "ipmi://10.0.0.1"),
    ] {
        let a = BmcAddress::parse(input).unwrap();
        assert_eq!(a.to_string(), shown, "{input}");
        assert_eq!(BmcAddress::parse(&a.to_string()).unwrap(), a, "{input}");
    }
}

#[test]
fn serde_as_a_string() {
    let a =
        BmcAddress::parse("idrac-virtualmedia://[::1]:8443/redfish/v1/Systems/System.Embedded.1")
            .unwrap();
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(
        json,
        r#""idrac-virtualmedia://[::1]:8443/redfish/v1/Systems/System.Embedded.1""#
    );
    assert_eq!(serde_json::from_str::<BmcAddress>(&json).unwrap(), a);
    assert!(serde_json::from_str::<BmcAddress>(r#""foo://h""#).is_err());
}
