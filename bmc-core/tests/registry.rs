//! The registry maps schemes to driver factories and hands out `Box<dyn BmcDriver>`.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::sync::{Arc, Mutex};

use bmc_core::memory::MemoryBmc;
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, ConnectOptions, Credentials, DriverFactory,
    PowerState, Registry,
};

/// Records what it was asked to connect to, and refuses one password as a BMC would.
#[derive(Default)]
struct FakeFactory {
    seen: Mutex<Vec<(String, bool)>>,
}

#[bmc_core::async_trait]
impl DriverFactory for FakeFactory {
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> bmc_core::Result<Box<dyn BmcDriver>> {
        self.seen
            .lock()
            .unwrap()
            .push((address.to_string(), options.verify_tls));
        if credentials.password().expose() == "wrong" {
            return Err(BmcError::AuthenticationFailed {
                reason: "401 Unauthorized".into(),
            });
        }
        Ok(Box::new(MemoryBmc::new(PowerState::Off)))
    }
}

#[tokio::test]
async fn connect_routes_by_scheme_family_and_passes_options() {
    let factory = Arc::new(FakeFactory::default());
    let mut registry = Registry::new();
    for scheme in [BmcScheme::Redfish, BmcScheme::RedfishVirtualMedia] {
        assert!(registry.register(scheme, factory.clone()).is_none());
    }
    assert_eq!(
        registry.schemes(),
        [BmcScheme::Redfish, BmcScheme::RedfishVirtualMedia]
    );
    let creds = Credentials::new("admin", "pw").unwrap();
    let insecure = ConnectOptions::default().with_certificate_verification_disabled();

    let bmc = registry
        .connect_str(
            "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1",
            &creds,
            &insecure,
        )
        .await
        .unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    registry
        .connect_str(
            "redfish-virtualmedia://[::1]",
            &creds,
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        *factory.seen.lock().unwrap(),
        [
            (
                "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1".to_string(),
                false
            ),
            ("redfish-virtualmedia://[::1]".to_string(), true),
        ]
    );
}

#[tokio::test]
async fn connect_errors_are_typed() {
    let mut registry = Registry::new();
    registry.register(BmcScheme::Redfish, Arc::new(FakeFactory::default()));
    let creds = Credentials::new("admin", "pw").unwrap();
    let opts = ConnectOptions::default();

    let err = registry
        .connect_str("ipmi://10.0.0.1", &creds, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BmcError::NoDriver(ref s) if s == "ipmi"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no driver registered for scheme 'ipmi'");

    let err = registry
        .connect_str("foo://h", &creds, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unknown BMC type 'foo' for address foo://h"
    );
    assert!(matches!(err, BmcError::InvalidAddress(_)));

    let wrong = Credentials::new("admin", "wrong").unwrap();
    let err = registry
        .connect_str("redfish://h", &wrong, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::AuthenticationFailed { .. }));
    assert!(!err.is_retryable());
}

#[test]
fn default_options_are_safe() {
    let o = ConnectOptions::default();
    assert!(o.verify_tls);
    assert_eq!(o.max_concurrent_requests, 2);
    assert!(o.extra_ca_certs_pem.is_empty());
    let o = o
        .with_max_concurrent_requests(0)
        .with_extra_ca_cert_pem("-----BEGIN CERTIFICATE-----");
    assert_eq!(o.max_concurrent_requests, 1);
    assert!(!format!("{o:?}").contains("BEGIN"));
}
