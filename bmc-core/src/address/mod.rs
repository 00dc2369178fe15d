//! BMC addresses with exactly Metal3's parsing rules.
//!
//! Metal3 (`baremetal-operator`, `pkg/hardwareutils/bmc/access.go`) parses `spec.bmc.address`
//! with Go's URL parser plus a few fallbacks: a bare host or `host:port` means IPMI,
//! `scheme:host` is read as `scheme://host`, and the host must be an IP literal or a valid
//! DNS name. [`BmcAddress::parse`] accepts and rejects the same strings with the same error
//! texts, so a manifest behaves the same under both.
//!
//! Deliberate differences from upstream, both rejecting addresses that upstream accepts but
//! that can never reach a BMC:
//! - an address without a host (`redfish:///redfish/v1/Systems/1`, `redfish:`) is an error
//!   ([`AddressError::MissingHost`]);
//! - a port above 65535 is an error ([`AddressError::InvalidPort`]).
//!
//! User information in the URL (`user:pass@host`) is validated as Go does and then dropped:
//! Metal3 never uses it (credentials come from a secret), and it must not leak into logs.

mod gourl;
mod scheme;

pub use scheme::{BmcScheme, DriverKind, SchemeProfile, Transport};

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Credentials;

/// Default IPMI (RMCP+) port when the address has none.
pub const IPMI_DEFAULT_PORT: u16 = 623;
/// Default IPMI privilege level when the address has no `privilegelevel` query.
pub const IPMI_DEFAULT_PRIVILEGE: &str = "ADMINISTRATOR";

/// Why an address was rejected. `Display` gives upstream's exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The address is empty.
    #[error("missing BMC address")]
    Missing,
    /// Go's URL parser rejected the address; the text is Go's (`parse "<url>": <reason>`).
    #[error("failed to parse BMC address information: {0}")]
    Parse(String),
    /// The host is neither an IP literal nor a valid DNS name.
    #[error("failed to parse BMC address information: BMC address hostname/IP : [{0}] is invalid")]
    InvalidHost(String),
    /// The scheme is not one Metal3 registers.
    #[error("Unknown BMC type '{scheme}' for address {address}")]
    UnknownType {
        /// The scheme as parsed (lower-cased).
        scheme: String,
        /// The address as given.
        address: String,
    },
    /// The address names no host (accepted upstream, but unusable).
    #[error("BMC address {0} has no host")]
    MissingHost(String),
    /// The port does not fit in 16 bits (accepted upstream, but unusable).
    #[error("BMC address {address} has invalid port {port}")]
    InvalidPort {
        /// The address as given.
        address: String,
        /// The port as written.
        port: String,
    },
}

/// A parsed BMC address: scheme, host, port, path and query.
///
/// `Display` prints the canonical form `scheme[+transport]://host[:port][path][?query]`,
/// which parses back to an equal address.
///
/// ```
/// use bmc_core::{BmcAddress, BmcScheme, DriverKind};
///
/// let addr = BmcAddress::parse("idrac-virtualmedia://10.0.0.5/redfish/v1/Systems/System.Embedded.1")?;
/// assert_eq!(addr.scheme(), BmcScheme::IdracVirtualMedia);
/// assert_eq!(addr.scheme().driver_kind(), DriverKind::Idrac);
/// assert!(addr.scheme().profile().supports_virtual_media);
/// assert_eq!(addr.redfish_endpoint().as_deref(), Some("https://10.0.0.5"));
/// assert_eq!(addr.redfish_system_id().as_deref(), Some("/redfish/v1/Systems/System.Embedded.1"));
///
/// // A bare host:port means IPMI.
/// let ipmi = BmcAddress::parse("[fe80::fc33:62ff:fe83:8a76]:6233")?;
/// assert_eq!(ipmi.scheme(), BmcScheme::Ipmi);
/// assert_eq!(ipmi.to_string(), "ipmi://[fe80::fc33:62ff:fe83:8a76]:6233");
/// # Ok::<(), bmc_core::AddressError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BmcAddress {
    scheme: BmcScheme,
    transport: Option<Transport>,
    hostname: String,
    port: Option<u16>,
    raw_path: String,
    raw_query: String,
}

impl BmcAddress {
    /// Parses an address with Metal3's rules (see the module docs).
    pub fn parse(address: &str) -> Result<BmcAddress, AddressError> {
        if address.is_empty() {
            return Err(AddressError::Missing);
        }
        let url = go_parsed_url(address)?;
        let (hostname, port) = gourl::split_host_port(&url.host);
        check_dns_valid(hostname)?;

        let Some((scheme, transport)) = BmcScheme::from_scheme_str(&url.scheme) else {
            return Err(AddressError::UnknownType {
                scheme: url.scheme.clone(),
                address: address.to_string(),
            });
        };
        if hostname.is_empty() {
            return Err(AddressError::MissingHost(address.to_string()));
        }
        let port = if port.is_empty() {
            None
        } else {
            Some(port.parse::<u16>().map_err(|_| AddressError::InvalidPort {
                address: address.to_string(),
                port: port.to_string(),
            })?)
        };
        Ok(BmcAddress {
            scheme,
            transport,
            hostname: hostname.to_string(),
            port,
            raw_path: url.raw_path,
            raw_query: url.raw_query,
        })
    }

    /// The scheme family.
    pub fn scheme(&self) -> BmcScheme {
        self.scheme
    }

    /// The `+http`/`+https` suffix, if the address had one.
    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }

    /// The full scheme string, e.g. `redfish+http`.
    pub fn scheme_str(&self) -> String {
        match self.transport {
            Some(t) => format!("{}+{}", self.scheme.name(), t.as_str()),
            None => self.scheme.name().to_string(),
        }
    }

    /// The host name or IP literal, without IPv6 brackets (Go's `URL.Hostname()`).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The host as an IP address, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.hostname.parse().ok()
    }

    /// Host and port as they go into a URL: IPv6 in brackets, `:port` when given
    /// (Go's `URL.Host`).
    pub fn host(&self) -> String {
        let mut out = if self.hostname.contains(':') {
            format!("[{}]", self.hostname)
        } else {
            self.hostname.clone()
        };
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }

    /// The port written in the address, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path, percent-decoded (Go's `URL.Path`).
    pub fn path(&self) -> String {
        percent_decode(&self.raw_path)
    }

    /// The path as written, still percent-encoded.
    pub fn raw_path(&self) -> &str {
        &self.raw_path
    }

    /// The query string without its `?`.
    pub fn raw_query(&self) -> &str {
        &self.raw_query
    }

    /// The first value of a query parameter, decoded; malformed pairs are skipped, as
    /// Go's `URL.Query()` does.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(&self.raw_query)
            .pairs
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The UDP port for IPMI: the address's port or 623.
    pub fn ipmi_port(&self) -> u16 {
        self.port.unwrap_or(IPMI_DEFAULT_PORT)
    }

    /// The IPMI privilege level: the `privilegelevel` query value, or `ADMINISTRATOR`.
    ///
    /// As upstream, a query with any malformed pair falls back to the default.
    pub fn ipmi_privilege_level(&self) -> String {
        let query = parse_query(&self.raw_query);
        if query.malformed {
            return IPMI_DEFAULT_PRIVILEGE.to_string();
        }
        query
            .pairs
            .into_iter()
            .find(|(k, _)| k == "privilegelevel")
            .map(|(_, v)| v)
            .unwrap_or_else(|| IPMI_DEFAULT_PRIVILEGE.to_string())
    }

    /// For Redfish schemes, the service's base URL: `https://host[:port]`, or `http://…`
    /// with `+http`. No default port is added. `None` for IPMI schemes.
    pub fn redfish_endpoint(&self) -> Option<String> {
        if !self.scheme.is_redfish() {
            return None;
        }
        let carrier = self.transport.unwrap_or(Transport::Https).as_str();
        Some(format!("{carrier}://{}", self.host()))
    }

    /// For Redfish schemes, the system's resource path from the address, or `None` when the
    /// path is empty, `/` or `/redfish/v1` (then the BMC's only system is used).
    pub fn redfish_system_id(&self) -> Option<String> {
        if !self.scheme.is_redfish() {
            return None;
        }
        let path = self.path();
        match path.trim_matches('/') {
            "" | "redfish/v1" => None,
            _ => Some(path),
        }
    }

    /// The Ironic `driver_info` Metal3 builds from this address (§1.5), with the given
    /// credentials. Exposes the password, as Ironic's API needs it; do not log the result.
    pub fn ironic_driver_info(
        &self,
        credentials: &Credentials,
        disable_certificate_verification: bool,
    ) -> BTreeMap<String, String> {
        let mut info = BTreeMap::new();
        let prefix = if self.scheme.is_redfish() {
            info.insert(
                "redfish_address".to_string(),
                self.redfish_endpoint().unwrap_or_default(),
            );
            if self.scheme == BmcScheme::RedfishUefiHttp {
                // Upstream's redfish-uefihttp always passes the path, even empty.
                info.insert("redfish_system_id".to_string(), self.path());
            } else if let Some(id) = self.redfish_system_id() {
                info.insert("redfish_system_id".to_string(), id);
            }
            "redfish"
        } else {
            info.insert("ipmi_address".to_string(), self.hostname.clone());
            info.insert("ipmi_port".to_string(), self.ipmi_port().to_string());
            info.insert("ipmi_priv_level".to_string(), self.ipmi_privilege_level());
            "ipmi"
        };
        info.insert(
            format!("{prefix}_username"),
            credentials.username().to_string(),
        );
        info.insert(
            format!("{prefix}_password"),
            credentials.password().expose().to_string(),
        );
        if disable_certificate_verification {
            info.insert(format!("{prefix}_verify_ca"), "false".to_string());
        }
        info
    }
}

impl fmt::Display for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme_str(),
            self.host(),
            self.raw_path
        )?;
        if !self.raw_query.is_empty() {
            write!(f, "?{}", self.raw_query)?;
        }
        Ok(())
    }
}

impl fmt::Debug for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BmcAddress({self})")
    }
}

impl FromStr for BmcAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BmcAddress::parse(s)
    }
}

impl serde::Serialize for BmcAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BmcAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        BmcAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Metal3's `GetParsedURL`: Go's parser plus the bare-host and `scheme:host` fallbacks.
fn go_parsed_url(address: &str) -> Result<gourl::GoUrl, AddressError> {
    let url = match gourl::parse(address) {
        Err(err) => {
            // Probably `host:port`, which Go rejects as a path with a colon.
            if address.contains(':') && gourl::net_split_host_port(address).is_err() {
                return Err(AddressError::Parse(err));
            }
            gourl::GoUrl {
                scheme: "ipmi".to_string(),
                host: address.to_string(),
                ..gourl::GoUrl::default()
            }
        }
        Ok(url) if !url.opaque.is_empty() => {
            gourl::parse(&address.replacen(':', "://", 1)).map_err(AddressError::Parse)?
        }
        Ok(url) if url.scheme.is_empty() && gourl::split_host_port(&url.host).0.is_empty() => {
            gourl::parse(&format!("ipmi://{address}")).map_err(AddressError::Parse)?
        }
        Ok(url) => url,
    };
    Ok(url)
}

/// Metal3's `checkDNSValid`: empty, an IP literal, or dot-separated DNS labels.
fn check_dns_valid(hostname: &str) -> Result<(), AddressError> {
    if hostname.is_empty() || hostname.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    };
    if hostname.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(AddressError::InvalidHost(hostname.to_string()))
    }
}

struct ParsedQuery {
    pairs: Vec<(String, String)>,
    malformed: bool,
}

/// Go's `url.ParseQuery`: `&`-separated, `;` rejected, `+` is a space.
fn parse_query(raw: &str) -> ParsedQuery {
    let mut out = ParsedQuery {
        pairs: Vec::new(),
        malformed: false,
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            out.malformed = true;
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (query_unescape(k), query_unescape(v)) {
            (Some(k), Some(v)) => out.pairs.push((k, v)),
            _ => out.malformed = true,
        }
    }
    out
}

fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(hex_pair(bytes, i + 1)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Decodes `%XX` escapes; the path was validated by the parser, so anything else is kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = hex_pair(bytes, i + 1) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte encoded by the two hex digits at `at`, if both are there and are hex digits.
fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let digit = |i: usize| (*bytes.get(i)? as char).to_digit(16);
    Some((digit(at)? * 16 + digit(at + 1)?) as u8)
}
