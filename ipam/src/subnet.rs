//! A CIDR subnet as Metal3 writes it: the address keeps its host bits.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::family::{Family, network_bounds, value};

/// A subnet in CIDR notation, e.g. `192.168.0.0/24` or `2001:db8::/64`.
///
/// The address is kept as written: Metal3 starts a subnet-only pool at the written address
/// plus one, so `192.168.0.10/24` starts at `192.168.0.11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpSubnet {
    /// The address as written.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpSubnet {
    /// The family of the subnet.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// Whether `ip` is inside the subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        if Family::of(ip) != self.family() {
            return false;
        }
        let (first, last) = self.bounds();
        (first..=last).contains(&value(ip))
    }

    /// First and last address values.
    pub(crate) fn bounds(&self) -> (u128, u128) {
        network_bounds(self.family(), value(&self.addr), self.prefix)
    }
}

impl fmt::Display for IpSubnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpSubnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet '{s}': expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid subnet '{s}': '{addr}' is not a valid IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= Family::of(&addr).bits())
            .ok_or_else(|| format!("invalid subnet '{s}': bad prefix length '{prefix}'"))?;
        Ok(IpSubnet { addr, prefix })
    }
}

impl serde::Serialize for IpSubnet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpSubnet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
