//! Credentials never show their password; errors say whether a retry can help.

use std::collections::BTreeMap;
use std::time::Duration;

use bmc_core::{BmcError, BmcMessage, Credentials, CredentialsError, MacAddress};

#[test]
fn debug_and_display_never_show_the_password() {
    let creds = Credentials::new("admin", "hunter2-Sup3r").unwrap();
    for shown in [
        format!("{creds:?}"),
        format!("{creds:#?}"),
        format!("{creds}"),
        format!("{:?}", creds.password()),
        format!("{}", creds.password()),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    assert!(format!("{creds:?}").contains("admin"));
    assert_eq!(creds.password().expose(), "hunter2-Sup3r");
}

#[test]
fn empty_fields_are_rejected_with_metal3_texts() {
    assert_eq!(
        Credentials::new("", "pw").unwrap_err().to_string(),
        "Validation error with BMC credentials: Missing BMC connection detail 'username' in credentials"
    );
    assert_eq!(
        Credentials::new("admin", "  ").unwrap_err().to_string(),
        "Validation error with BMC credentials: Missing BMC connection details 'password' in credentials"
    );
}

#[test]
fn from_kubernetes_secret_data_and_string_data() {
    let mut data = BTreeMap::new();
    // `admin\n` and `p@ss word ` base64-encoded, as `kubectl create secret` often leaves
    // a trailing newline: Metal3 trims.
    data.insert("username".to_string(), "YWRtaW4K".to_string());
    data.insert("password".to_string(), "cEBzcyB3b3JkIA==".to_string());
    let creds = Credentials::from_secret_data("bmc-secret", &data).unwrap();
    assert_eq!(creds.username(), "admin");
    assert_eq!(creds.password().expose(), "p@ss word");

    let mut plain = BTreeMap::new();
    plain.insert("username".to_string(), "root".to_string());
    plain.insert("password".to_string(), "calvin".to_string());
    let creds = Credentials::from_secret_strings("bmc-secret", &plain).unwrap();
    assert_eq!(
        (creds.username(), creds.password().expose()),
        ("root", "calvin")
    );

    plain.remove("password");
    assert_eq!(
        Credentials::from_secret_strings("bmc-secret", &plain).unwrap_err(),
        CredentialsError::MissingKey {
            secret: "bmc-secret".into(),
            key: "password"
        }
    );
    assert_eq!(
        Credentials::from_secret_strings("bmc-secret", &plain)
            .unwrap_err()
            .to_string(),
        "Secret bmc-secret does not contain key password"
    );

    data.insert("password".to_string(), "not base64!".to_string());
    let err = Credentials::from_secret_data("s", &data).unwrap_err();
    assert!(
        matches!(
            err,
            CredentialsError::InvalidValue {
                key: "password",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("not base64!"),
        "the value must not be echoed: {err}"
    );
}

#[test]
fn retryable_errors() {
    let retryable = [
        BmcError::Unreachable {
            endpoint: "https://h".into(),
            reason: "refused".into(),
        },
        BmcError::Timeout {
            operation: "power on".into(),
            after: Duration::from_secs(1),
            detail: None,
        },
        BmcError::Busy {
            reason: "job running".into(),
            retry_after: Some(Duration::from_secs(5)),
        },
        BmcError::NotApplied {
            operation: "x".into(),
            expected: "a".into(),
            observed: "b".into(),
        },
    ];
    let final_ = [
        BmcError::AuthenticationFailed {
            reason: "bad password".into(),
        },
        BmcError::PermissionDenied {
            operation: "reset".into(),
            reason: "ReadOnly".into(),
        },
        BmcError::not_found("/redfish/v1/Systems/9"),
        BmcError::unsupported("virtual media", "ipmi"),
        BmcError::Protocol {
            context: "GET /redfish/v1".into(),
            reason: "not JSON".into(),
        },
        BmcError::Rejected {
            operation: "PATCH".into(),
            status: Some(400),
            messages: vec![],
        },
        BmcError::InvalidRequest("empty URL".into()),
        BmcError::NoDriver("redfish".into()),
    ];
    for e in &retryable {
        assert!(e.is_retryable(), "{e}");
    }
    for e in &final_ {
        assert!(!e.is_retryable(), "{e}");
    }
    assert_eq!(retryable[2].retry_after(), Some(Duration::from_secs(5)));
}

#[test]
fn rejected_errors_carry_the_bmc_messages() {
    let e = BmcError::Rejected {
        operation: "PATCH /redfish/v1/Systems/1".into(),
        status: Some(400),
        messages: vec![
            BmcMessage {
                id: "Base.1.8.PropertyValueNotInList".into(),
                text: "The value Foo is not in the list".into(),
            },
            BmcMessage {
                id: "IDRAC.2.8.SYS403".into(),
                text: String::new(),
            },
        ],
    };
    assert_eq!(
        e.to_string(),
        "BMC rejected PATCH /redfish/v1/Systems/1 (status 400): Base.1.8.PropertyValueNotInList: The value Foo is not in the list; IDRAC.2.8.SYS403"
    );
    assert_eq!(e.messages().len(), 2);
    let t = BmcError::Timeout {
        operation: "power on".into(),
        after: Duration::from_secs(30),
        detail: Some("BMC still reports power Off".into()),
    };
    assert_eq!(
        t.to_string(),
        "power on timed out after 30s: BMC still reports power Off"
    );
}

#[test]
fn mac_addresses() {
    let m: MacAddress = "AA-bb-cc-00-11-FF".parse().unwrap();
    assert_eq!(m.to_string(), "aa:bb:cc:00:11:ff");
    assert_eq!("aa:bb:cc:00:11:ff".parse::<MacAddress>().unwrap(), m);
    for bad in [
        "",
        "aa:bb:cc:00:11",
        "aa:bb:cc:00:11:ff:00",
        "+a:bb:cc:00:11:ff",
        "aaa:b:cc:00:11:ff",
        "gg:bb:cc:00:11:ff",
    ] {
        assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
    }
}
