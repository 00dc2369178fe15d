//! Addresses as integers, so ranges and arithmetic are the same for IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The netmask of a prefix length in this family (`24` → `255.255.255.0`, `64` →
    /// `ffff:ffff:ffff:ffff::`), the form network data files write; a prefix longer
    /// than the family is read as the whole width.
    pub fn netmask(self, prefix: u8) -> IpAddr {
        self.addr(network_mask(self, prefix.min(self.bits())))
    }

    /// The highest address value.
    pub(crate) fn max_value(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    /// The address with integer value `v` (which must fit the family).
    pub(crate) fn addr(self, v: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The integer value of an address.
pub(crate) fn value(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// The mask of the network part for a prefix length (`prefix <= bits`).
pub(crate) fn network_mask(family: Family, prefix: u8) -> u128 {
    let bits = u32::from(family.bits());
    let host_bits = bits - u32::from(prefix.min(family.bits()));
    let all = family.max_value();
    if host_bits >= 128 {
        0
    } else {
        all & !((1u128 << host_bits) - 1)
    }
}

/// First and last address values of the `/prefix` network containing `v`.
pub(crate) fn network_bounds(family: Family, v: u128, prefix: u8) -> (u128, u128) {
    let mask = network_mask(family, prefix);
    let first = v & mask;
    (first, first | (family.max_value() & !mask))
}

#[cfg(test)]
mod netmask_tests {
    use super::*;

    #[test]
    fn netmasks_are_written_as_addresses_in_both_families() {
        let cases = [
            (Family::V4, 24, "255.255.255.0"),
            (Family::V4, 0, "0.0.0.0"),
            (Family::V4, 32, "255.255.255.255"),
            (Family::V4, 40, "255.255.255.255"),
            (Family::V6, 64, "ffff:ffff:ffff:ffff::"),
            (Family::V6, 96, "ffff:ffff:ffff:ffff:ffff:ffff::"),
            (Family::V6, 0, "::"),
            (Family::V6, 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ];
        for (family, prefix, want) in cases {
            assert_eq!(
                family.netmask(prefix).to_string(),
                want,
                "{family} /{prefix}"
            );
        }
    }
}
