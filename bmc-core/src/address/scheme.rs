//! The scheme strings Metal3 registers and what each one means.

use std::fmt;

/// A BMC address scheme family, as registered by Metal3's baremetal-operator.
///
/// Each Redfish family is also registered with a `+http` or `+https` suffix (see
/// [`Transport`]), which gives 23 scheme strings in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BmcScheme {
    /// `ipmi`: IPMI v2.0 over LAN (RMCP+); also what a bare host means.
    Ipmi,
    /// `libvirt`: IPMI to a VirtualBMC in front of a libvirt VM; needs a boot MAC.
    Libvirt,
    /// `redfish`: generic Redfish, booting by iPXE over the provisioning network.
    Redfish,
    /// `redfish-virtualmedia`: generic Redfish, booting by virtual media.
    RedfishVirtualMedia,
    /// `redfish-uefihttp`: generic Redfish, booting by UEFI HTTP boot.
    RedfishUefiHttp,
    /// `idrac-redfish`: Dell iDRAC over Redfish, booting by iPXE.
    IdracRedfish,
    /// `idrac-virtualmedia`: Dell iDRAC over Redfish, booting by virtual media.
    IdracVirtualMedia,
    /// `ilo5-redfish`: HPE iLO 5/6; upstream an alias of `redfish`.
    Ilo5Redfish,
    /// `ilo5-virtualmedia`: HPE iLO 5/6 with virtual media; upstream an alias of
    /// `redfish-virtualmedia`.
    Ilo5VirtualMedia,
}

impl BmcScheme {
    /// Every scheme family, in Metal3's registration order.
    pub const ALL: [BmcScheme; 9] = [
        BmcScheme::Ipmi,
        BmcScheme::Libvirt,
        BmcScheme::Redfish,
        BmcScheme::Ilo5Redfish,
        BmcScheme::IdracRedfish,
        BmcScheme::RedfishVirtualMedia,
        BmcScheme::Ilo5VirtualMedia,
        BmcScheme::IdracVirtualMedia,
        BmcScheme::RedfishUefiHttp,
    ];

    /// The scheme string without a transport suffix, e.g. `redfish-virtualmedia`.
    pub fn name(self) -> &'static str {
        match self {
            BmcScheme::Ipmi => "ipmi",
            BmcScheme::Libvirt => "libvirt",
            BmcScheme::Redfish => "redfish",
            BmcScheme::RedfishVirtualMedia => "redfish-virtualmedia",
            BmcScheme::RedfishUefiHttp => "redfish-uefihttp",
            BmcScheme::IdracRedfish => "idrac-redfish",
            BmcScheme::IdracVirtualMedia => "idrac-virtualmedia",
            BmcScheme::Ilo5Redfish => "ilo5-redfish",
            BmcScheme::Ilo5VirtualMedia => "ilo5-virtualmedia",
        }
    }

    /// Looks up a scheme string (already lower-cased), with or without a transport suffix.
    ///
    /// Returns `None` for anything Metal3 does not register, including `ipmi+http` and the
    /// removed `idrac`, `ilo4`, `ilo5`, `irmc` and `ibmc` schemes.
    pub fn from_scheme_str(s: &str) -> Option<(BmcScheme, Option<Transport>)> {
        let (family, transport) = match s.split_once('+') {
            Some((family, "http")) => (family, Some(Transport::Http)),
            Some((family, "https")) => (family, Some(Transport::Https)),
            Some(_) => return None,
            None => (s, None),
        };
        let scheme = BmcScheme::ALL.into_iter().find(|c| c.name() == family)?;
        if transport.is_some() && !scheme.is_redfish() {
            return None;
        }
        Some((scheme, transport))
    }

    /// Whether the scheme speaks Redfish (and so accepts `+http`/`+https`).
    pub fn is_redfish(self) -> bool {
        !matches!(self, BmcScheme::Ipmi | BmcScheme::Libvirt)
    }

    /// Which of our driver crates serves this scheme.
    pub fn driver_kind(self) -> DriverKind {
        match self {
            BmcScheme::Ipmi | BmcScheme::Libvirt => DriverKind::Ipmi,
            BmcScheme::Redfish | BmcScheme::RedfishVirtualMedia | BmcScheme::RedfishUefiHttp => {
                DriverKind::Redfish
            }
            BmcScheme::IdracRedfish | BmcScheme::IdracVirtualMedia => DriverKind::Idrac,
            BmcScheme::Ilo5Redfish | BmcScheme::Ilo5VirtualMedia => DriverKind::Ilo,
        }
    }

    /// What Metal3 does with this scheme: the Ironic interfaces and capability flags
    /// (`reference/metal3.md` §1.4, `TestStaticDriverInfo`).
    pub fn profile(self) -> SchemeProfile {
        const IPMI: SchemeProfile = SchemeProfile {
            ironic_driver: "ipmi",
            boot_interface: "ipxe",
            bios_interface: "",
            management_interface: "",
            power_interface: "",
            raid_interface: "no-raid",
            vendor_interface: "",
            firmware_interface: "",
            inspect_interface: "",
            needs_mac: false,
            supports_secure_boot: false,
            supports_virtual_media: false,
            requires_provisioning_network: true,
        };
        const REDFISH: SchemeProfile = SchemeProfile {
            ironic_driver: "redfish",
            boot_interface: "ipxe",
            bios_interface: "",
            management_interface: "",
            power_interface: "",
            raid_interface: "redfish",
            vendor_interface: "",
            firmware_interface: "redfish",
            inspect_interface: "redfish",
            needs_mac: false,
            supports_secure_boot: true,
            supports_virtual_media: false,
            requires_provisioning_network: true,
        };
        const IDRAC: SchemeProfile = SchemeProfile {
            ironic_driver: "idrac",
            bios_interface: "idrac-redfish",
            management_interface: "idrac-redfish",
            power_interface: "idrac-redfish",
            raid_interface: "idrac-redfish",
            vendor_interface: "idrac-redfish",
            ..REDFISH
        };
        match self {
            BmcScheme::Ipmi => IPMI,
            BmcScheme::Libvirt => SchemeProfile {
                needs_mac: true,
                ..IPMI
            },
            BmcScheme::Redfish | BmcScheme::Ilo5Redfish => REDFISH,
            BmcScheme::RedfishVirtualMedia | BmcScheme::Ilo5VirtualMedia => SchemeProfile {
                boot_interface: "redfish-virtual-media",
                supports_virtual_media: true,
                requires_provisioning_network: false,
                ..REDFISH
            },
            BmcScheme::RedfishUefiHttp => SchemeProfile {
                boot_interface: "redfish-https",
                supports_virtual_media: true,
                requires_provisioning_network: false,
                ..REDFISH
            },
            BmcScheme::IdracRedfish => IDRAC,
            BmcScheme::IdracVirtualMedia => SchemeProfile {
                boot_interface: "idrac-redfish-virtual-media",
                supports_virtual_media: true,
                requires_provisioning_network: false,
                ..IDRAC
            },
        }
    }

    /// Every scheme string Metal3 registers (23 of them), in registration order.
    pub fn all_scheme_strings() -> Vec<String> {
        let mut out = Vec::with_capacity(23);
        for scheme in BmcScheme::ALL {
            out.push(scheme.name().to_string());
            if scheme.is_redfish() {
                for transport in [Transport::Http, Transport::Https] {
                    out.push(format!("{}+{}", scheme.name(), transport.as_str()));
                }
            }
        }
        out
    }
}

impl fmt::Display for BmcScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `+http` / `+https` suffix of a Redfish scheme: how to reach the BMC's HTTP API.
///
/// Without a suffix Redfish is reached over HTTPS, as in Metal3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain HTTP (`+http`): only for emulators and lab BMCs.
    Http,
    /// HTTPS (`+https`, also the default).
    Https,
}

impl Transport {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https => "https",
        }
    }
}

/// The family of driver that serves a scheme; each driver crate registers the schemes of
/// its kind in a [`crate::Registry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// `bmc-ipmi`: `ipmi`, `libvirt`.
    Ipmi,
    /// `bmc-redfish`: `redfish`, `redfish-virtualmedia`, `redfish-uefihttp`.
    Redfish,
    /// `bmc-idrac`: `idrac-redfish`, `idrac-virtualmedia`.
    Idrac,
    /// `bmc-ilo`: `ilo5-redfish`, `ilo5-virtualmedia`.
    Ilo,
}

/// What Metal3 asks of Ironic for a scheme, and the capability flags it derives from it.
///
/// Interface names are Ironic's; an empty string means "the hardware type's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemeProfile {
    /// Ironic hardware type (`ipmi`, `redfish` or `idrac`).
    pub ironic_driver: &'static str,
    /// Ironic boot interface.
    pub boot_interface: &'static str,
    /// Ironic BIOS interface.
    pub bios_interface: &'static str,
    /// Ironic management interface.
    pub management_interface: &'static str,
    /// Ironic power interface.
    pub power_interface: &'static str,
    /// Ironic RAID interface (`no-raid` means RAID cannot be configured).
    pub raid_interface: &'static str,
    /// Ironic vendor interface.
    pub vendor_interface: &'static str,
    /// Ironic firmware interface (`redfish` means firmware updates and settings work).
    pub firmware_interface: &'static str,
    /// Out-of-band ("fast") inspection interface; empty means unsupported.
    pub inspect_interface: &'static str,
    /// The host needs a `bootMACAddress` even with inspection enabled.
    pub needs_mac: bool,
    /// Secure boot can be requested.
    pub supports_secure_boot: bool,
    /// Boots by virtual media (ISO pre-provisioning images work).
    pub supports_virtual_media: bool,
    /// Needs a provisioning network (PXE/iPXE) to boot the agent.
    pub requires_provisioning_network: bool,
}

impl SchemeProfile {
    /// Whether hardware RAID can be configured through this scheme.
    pub fn supports_raid(&self) -> bool {
        self.raid_interface != "no-raid"
    }

    /// Whether out-of-band ("fast") inspection is available.
    pub fn supports_fast_inspection(&self) -> bool {
        !self.inspect_interface.is_empty()
    }

    /// Metal3's rule for a required `bootMACAddress`: needed when the driver needs one or
    /// when inspection is disabled.
    pub fn requires_boot_mac(&self, inspection_disabled: bool) -> bool {
        self.needs_mac || inspection_disabled
    }
}
