//! Maps BMC address schemes to the drivers that serve them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument as _;

use crate::address::{BmcAddress, BmcScheme};
use crate::credentials::Credentials;
use crate::driver::BmcDriver;
use crate::error::{BmcError, Result};
use crate::observe::{BmcCallObserver, Observer};

/// How to connect to a BMC. Defaults are safe: TLS certificates verified, conservative
/// timeouts, two requests in flight per BMC.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Time limit for one request to the BMC.
    pub request_timeout: Duration,
    /// Time limit for one driver operation, retries and task polling included.
    pub operation_timeout: Duration,
    /// Verify the BMC's TLS certificate (Metal3's `disableCertificateVerification` turns
    /// this off).
    pub verify_tls: bool,
    /// Extra CA certificates (PEM) to trust, e.g. a site's BMC CA.
    pub extra_ca_certs_pem: Vec<Vec<u8>>,
    /// Requests in flight at once to this BMC; BMCs are fragile, so keep it low.
    pub max_concurrent_requests: usize,
    /// Log in with a session when the BMC offers one (the default, right for long-lived
    /// connections). Off, drivers authenticate every request (HTTP basic auth): right for
    /// one-shot tools, as it saves creating and deleting a session and cannot leave one
    /// behind on a BMC with few session slots.
    pub use_sessions: bool,
    /// Told of every exchange with the BMC (see [`crate::observe`]); none by default.
    pub observer: Observer,
    /// The largest answer body taken from the BMC; a larger one fails the request
    /// instead of being buffered (a broken or hostile BMC cannot fill the memory).
    pub max_response_bytes: usize,
}

/// [`ConnectOptions::max_response_bytes`] by default: 8 MiB, far above the largest
/// Redfish resource of the recorded servers (a few hundred KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(300),
            verify_tls: true,
            extra_ca_certs_pem: Vec::new(),
            max_concurrent_requests: 2,
            use_sessions: true,
            observer: Observer::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ConnectOptions {
    /// Sets [`ConnectOptions::request_timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ConnectOptions::operation_timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Turns TLS certificate verification off, as Metal3's
    /// `disableCertificateVerification: true` does.
    pub fn with_certificate_verification_disabled(mut self) -> Self {
        self.verify_tls = false;
        self
    }

    /// Trusts an extra CA certificate (PEM).
    pub fn with_extra_ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_ca_certs_pem.push(pem.into());
        self
    }

    /// Authenticates every request instead of opening a session (see
    /// [`ConnectOptions::use_sessions`]).
    pub fn without_sessions(mut self) -> Self {
        self.use_sessions = false;
        self
    }

    /// Tells `observer` of every exchange with the BMC.
    pub fn with_observer(mut self, observer: Arc<dyn BmcCallObserver>) -> Self {
        self.observer = Observer::new(observer);
        self
    }

    /// Sets [`ConnectOptions::max_response_bytes`] (at least 1 KiB).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes.max(1024);
        self
    }

    /// Sets [`ConnectOptions::max_concurrent_requests`] (at least 1).
    pub fn with_max_concurrent_requests(mut self, n: usize) -> Self {
        self.max_concurrent_requests = n.max(1);
        self
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("request_timeout", &self.request_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("verify_tls", &self.verify_tls)
            .field("extra_ca_certs", &self.extra_ca_certs_pem.len())
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("use_sessions", &self.use_sessions)
            .field("observer", &self.observer)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// Builds a driver for an address. Each driver crate provides one and a function that
/// registers it for its schemes.
#[async_trait]
pub trait DriverFactory: Send + Sync {
    /// Connects to the BMC at `address` (and, for drivers that log in, validates the
    /// credentials).
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>>;
}

/// Maps schemes to driver factories.
///
/// ```
/// use bmc_core::{BmcScheme, Registry};
///
/// let registry = Registry::new();
/// assert!(!registry.supports(BmcScheme::Redfish));
/// // A driver crate registers itself, e.g. `bmc_redfish::register(&mut registry)`,
/// // after which `registry.connect(&address, &credentials, &options)` returns a
/// // `Box<dyn BmcDriver>`.
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: HashMap<BmcScheme, Arc<dyn DriverFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `factory` for `scheme` (with and without `+http`/`+https`), replacing any
    /// earlier registration. Returns the replaced factory.
    pub fn register(
        &mut self,
        scheme: BmcScheme,
        factory: Arc<dyn DriverFactory>,
    ) -> Option<Arc<dyn DriverFactory>> {
        self.factories.insert(scheme, factory)
    }

    /// Whether a driver is registered for `scheme`.
    pub fn supports(&self, scheme: BmcScheme) -> bool {
        self.factories.contains_key(&scheme)
    }

    /// The schemes with a registered driver, in Metal3's registration order.
    pub fn schemes(&self) -> Vec<BmcScheme> {
        BmcScheme::ALL
            .into_iter()
            .filter(|s| self.supports(*s))
            .collect()
    }

    /// Connects to the BMC at `address` with the driver registered for its scheme.
    pub async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        let factory = self
            .factories
            .get(&address.scheme())
            .ok_or_else(|| BmcError::NoDriver(address.scheme_str()))?;
        let span =
            tracing::info_span!("bmc.connect", address = %address, user = credentials.username());
        factory
            .connect(address, credentials, options)
            .instrument(span)
            .await
    }

    /// Parses `address` with Metal3's rules, then connects as [`Registry::connect`] does.
    pub async fn connect_str(
        &self,
        address: &str,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        let address = BmcAddress::parse(address)?;
        self.connect(&address, credentials, options).await
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.schemes())
            .finish()
    }
}
