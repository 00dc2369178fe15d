//! Who made the BMC, and every way its firmware deviates from plain Redfish, as data.
//!
//! [`BmcIdentity`] is detected once per connection from the service root (or the system,
//! when the root was not read) and the manager. [`QuirkSet::for_identity`] looks the
//! identity up in [`PROFILES`]: each [`VendorProfile`] names the firmware it matches and
//! the [`Quirk`]s it has, each of which the generic [`crate::RedfishDriver`] honours. What
//! needs OEM actions is a vendor's hooks ([`crate::hooks`], provided by `bmc-idrac` and
//! `bmc-ilo`), with the vendor-only quirks beside them. Supporting the next vendor means
//! adding a profile here (and, only if it needs OEM actions, hooks in a vendor crate), not
//! editing the driver.
//!
//! ```
//! use bmc_redfish::quirks::{BmcIdentity, Quirk, QuirkSet, Vendor};
//! use serde_json::json;
//!
//! let root = json!({"Vendor": "HPE", "Oem": {"Hpe": {}}});
//! let manager = json!({"Id": "1", "Model": "iLO 5", "FirmwareVersion": "iLO 5 v2.72"});
//! let identity = BmcIdentity::from_root(&root).with_manager(&manager);
//! assert_eq!(identity.vendor, Vendor::Hpe);
//! assert_eq!(identity.generation, Some(5));
//! let quirks = QuirkSet::for_identity(&identity);
//! assert_eq!(quirks.profile, "hpe-ilo5");
//! assert!(quirks.has(Quirk::NoEjectWhenEmpty));
//! assert!(!quirks.has(Quirk::CdOverrideBootsPhysicalDrive));
//! ```

use std::fmt;

use serde_json::Value;

/// A BMC maker, as far as the quirks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vendor {
    /// Dell (iDRAC).
    Dell,
    /// HPE (iLO).
    Hpe,
    /// Lenovo (XCC).
    Lenovo,
    /// Supermicro.
    Supermicro,
    /// Any other maker, as the BMC names itself.
    Other(String),
    /// The BMC does not say.
    Unknown,
}

impl Vendor {
    /// Reads a `Vendor`/`Manufacturer` string or an `Oem` key.
    pub fn from_name(name: &str) -> Vendor {
        let n = name.trim().to_ascii_lowercase();
        if n.is_empty() {
            Vendor::Unknown
        } else if n.starts_with("dell") {
            Vendor::Dell
        } else if n == "hpe" || n == "hp" || n.starts_with("hewlett") {
            Vendor::Hpe
        } else if n.starts_with("lenovo") {
            Vendor::Lenovo
        } else if n.starts_with("supermicro") {
            Vendor::Supermicro
        } else {
            Vendor::Other(name.trim().to_string())
        }
    }

    fn is_known(&self) -> bool {
        !matches!(self, Vendor::Other(_) | Vendor::Unknown)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Vendor::Dell => "Dell",
            Vendor::Hpe => "HPE",
            Vendor::Lenovo => "Lenovo",
            Vendor::Supermicro => "Supermicro",
            Vendor::Other(name) => name,
            Vendor::Unknown => "unknown",
        })
    }
}

/// Who made the BMC and which firmware it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcIdentity {
    /// The maker.
    pub vendor: Vendor,
    /// The manager's `Model` (`iLO 5`, `15G Monolithic`, …), once the manager was read.
    pub manager_model: Option<String>,
    /// The manager's `FirmwareVersion` as sent (`6.00.30.00`, `iLO 5 v2.72`).
    pub firmware: Option<String>,
    /// The BMC generation: iDRAC 8/9/10, iLO 4/5/6; `None` when not known.
    pub generation: Option<u32>,
}

fn oem_keys(v: &Value) -> Vec<String> {
    v.get("Oem")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The numbers in a version string: `iLO 5 v2.72` → `[5, 2, 72]`, `6.00.30.00` → `[6, 0, 30, 0]`.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl BmcIdentity {
    /// An identity with nothing known.
    pub fn unknown() -> BmcIdentity {
        BmcIdentity {
            vendor: Vendor::Unknown,
            manager_model: None,
            firmware: None,
            generation: None,
        }
    }

    /// From a name the BMC gives itself (`Vendor`, `Manufacturer`) and its `Oem` keys:
    /// the name when it is a known maker, else the first `Oem` key that is one.
    pub fn from_names<S: AsRef<str>>(name: Option<&str>, oem_keys: &[S]) -> BmcIdentity {
        let named = name.map(Vendor::from_name).filter(Vendor::is_known);
        let vendor = named
            .or_else(|| {
                oem_keys
                    .iter()
                    .map(|k| Vendor::from_name(k.as_ref()))
                    .find(Vendor::is_known)
            })
            .or_else(|| name.map(Vendor::from_name))
            .unwrap_or(Vendor::Unknown);
        BmcIdentity {
            vendor,
            ..BmcIdentity::unknown()
        }
    }

    /// From the service root: `Vendor` (Redfish 1.5+), else its `Oem` keys.
    pub fn from_root(root: &Value) -> BmcIdentity {
        BmcIdentity::from_names(root.get("Vendor").and_then(Value::as_str), &oem_keys(root))
    }

    /// From a ComputerSystem, when the root was not read: its `Manufacturer` (the server
    /// maker, which for these vendors makes the BMC too), else its `Oem` keys.
    pub fn from_system(system: &Value) -> BmcIdentity {
        BmcIdentity::from_names(
            system.get("Manufacturer").and_then(Value::as_str),
            &oem_keys(system),
        )
    }

    /// Whether the generation can only be told from the manager (Dell, HPE).
    pub fn needs_manager(&self) -> bool {
        matches!(self.vendor, Vendor::Dell | Vendor::Hpe) && self.generation.is_none()
    }

    /// Adds what the manager tells: model, firmware and generation.
    pub fn with_manager(self, manager: &Value) -> BmcIdentity {
        self.with_manager_parts(
            manager.get("Model").and_then(Value::as_str),
            manager.get("FirmwareVersion").and_then(Value::as_str),
            &oem_keys(manager),
        )
    }

    /// Adds what the manager tells, from its `Model`, `FirmwareVersion` and `Oem` keys.
    pub fn with_manager_parts<S: AsRef<str>>(
        mut self,
        model: Option<&str>,
        firmware: Option<&str>,
        oem_keys: &[S],
    ) -> BmcIdentity {
        if !self.vendor.is_known() {
            let from_oem = BmcIdentity::from_names(None, oem_keys).vendor;
            if from_oem.is_known() {
                self.vendor = from_oem;
            }
        }
        self.manager_model = model.map(str::to_string);
        self.firmware = firmware.map(str::to_string);
        self.generation = match self.vendor {
            // iLO names itself: Model "iLO 5", firmware "iLO 5 v2.72".
            Vendor::Hpe => model
                .into_iter()
                .chain(firmware)
                .find_map(|s| {
                    let lower = s.to_ascii_lowercase();
                    let rest = lower.split("ilo").nth(1)?;
                    numbers(rest).first().copied()
                })
                .and_then(|g| u32::try_from(g).ok()),
            // iDRAC's Model is the server generation: 13G → iDRAC 8, 14G–16G → iDRAC 9,
            // 17G → iDRAC 10.
            Vendor::Dell => model
                .and_then(|m| {
                    let lower = m.to_ascii_lowercase();
                    let g = lower.find('g').map(|i| &lower[..i])?;
                    numbers(g).last().copied()
                })
                .map(|server| match server {
                    0..=13 => 8,
                    14..=16 => 9,
                    _ => 10,
                }),
            _ => None,
        };
        self
    }

    /// The firmware version's numbers after the generation marker: `6.00.30.00` →
    /// `[6, 0, 30, 0]`; `iLO 5 v2.72` → `[2, 72]`.
    pub fn firmware_numbers(&self) -> Vec<u64> {
        let Some(f) = &self.firmware else {
            return Vec::new();
        };
        match f.to_ascii_lowercase().rsplit_once('v') {
            Some((_, version)) if self.vendor == Vendor::Hpe => numbers(version),
            _ => numbers(f),
        }
    }

    /// Whether the firmware version is at least `min` (compared number by number); false
    /// when the version is not known.
    pub fn firmware_at_least(&self, min: &[u64]) -> bool {
        let have = self.firmware_numbers();
        !have.is_empty() && have.as_slice() >= min
    }
}

impl fmt::Display for BmcIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.vendor)?;
        if let Some(m) = &self.manager_model {
            write!(f, " {m}")?;
        }
        if let Some(v) = &self.firmware {
            write!(f, " firmware {v}")?;
        }
        Ok(())
    }
}

/// One way a BMC deviates from plain Redfish that the generic [`crate::RedfishDriver`]
/// honours itself. Each variant says which firmware needs it and why. What only a
/// vendor's hooks do (iDRAC's configuration import, Lifecycle Controller readiness and
/// job queue; iLO's `BootOnNextServerReset`, OEM media actions and power button) lives
/// with those hooks, in bmc-idrac and bmc-ilo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quirk {
    /// iDRAC 8, iDRAC 9 before firmware 6.00.02 and iDRAC 10: `BootSourceOverrideTarget:
    /// Cd` boots the *physical* optical drive, not the virtual CD
    /// (dell/iDRAC-Redfish-Scripting#90). The driver refuses a `Cd` override there rather
    /// than boot the wrong device; bmc-idrac boots the virtual CD the OEM way
    /// when its hooks are registered.
    CdOverrideBootsPhysicalDrive,
    /// iDRAC 10: virtual media boots only from slot `1`
    /// (dell/iDRAC-Redfish-Scripting#324). The driver picks no other slot.
    OnlyVirtualMediaSlotOne,
    /// iDRAC and iLO: an insert into an occupied slot is refused (iLO) or races with a
    /// stale `Inserted` after an eject (iDRAC ejects asynchronously, Ironic story
    /// 2008504). The driver ejects first and waits until the slot reads empty.
    EjectBeforeInsert,
    /// iLO: ejecting an empty slot fails (bmc-toolbox/bmclib#410). The driver reads
    /// `Inserted` first and does not eject an empty slot.
    NoEjectWhenEmpty,
    /// iLO: `ResetType: On` on a host that is already on answers
    /// `InvalidOperationForSystemState`, which also reads as "not ready" and would be
    /// retried. The driver reads the power state first and does nothing when it is on.
    PowerOnOnlyWhenOff,
}

impl Quirk {
    /// The quirk's name, for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Quirk::CdOverrideBootsPhysicalDrive => "cd-override-boots-physical-drive",
            Quirk::OnlyVirtualMediaSlotOne => "only-virtual-media-slot-one",
            Quirk::EjectBeforeInsert => "eject-before-insert",
            Quirk::NoEjectWhenEmpty => "no-eject-when-empty",
            Quirk::PowerOnOnlyWhenOff => "power-on-only-when-off",
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The firmware a profile applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareMatch {
    /// Any firmware of the vendor.
    Any,
    /// This BMC generation (iDRAC 9, iLO 5, …).
    Generation(u32),
    /// This generation with firmware below the version given.
    GenerationBelow(u32, &'static [u64]),
    /// This generation with firmware at or above the version given.
    GenerationFrom(u32, &'static [u64]),
}

/// A vendor's firmware and its quirks: one row of [`PROFILES`].
#[derive(Debug, Clone, Copy)]
pub struct VendorProfile {
    /// Name in logs (`dell-idrac9`).
    pub name: &'static str,
    /// The maker.
    pub vendor: fn(&Vendor) -> bool,
    /// The firmware.
    pub firmware: FirmwareMatch,
    /// Its quirks.
    pub quirks: &'static [Quirk],
    /// Message ids (or id suffixes) that mean "not ready yet, try again": a write
    /// answered with one of them is retried.
    pub not_ready: &'static [&'static str],
}

impl VendorProfile {
    fn matches(&self, id: &BmcIdentity) -> bool {
        if !(self.vendor)(&id.vendor) {
            return false;
        }
        match self.firmware {
            FirmwareMatch::Any => true,
            FirmwareMatch::Generation(g) => id.generation == Some(g),
            FirmwareMatch::GenerationBelow(g, v) => {
                id.generation == Some(g) && !id.firmware_numbers().is_empty() && {
                    !id.firmware_at_least(v)
                }
            }
            FirmwareMatch::GenerationFrom(g, v) => {
                id.generation == Some(g) && id.firmware_at_least(v)
            }
        }
    }
}

const IDRAC_COMMON: &[Quirk] = &[Quirk::EjectBeforeInsert];
const IDRAC_PHYSICAL_CD: &[Quirk] = &[
    Quirk::CdOverrideBootsPhysicalDrive,
    Quirk::EjectBeforeInsert,
];
const IDRAC10: &[Quirk] = &[
    Quirk::CdOverrideBootsPhysicalDrive,
    Quirk::OnlyVirtualMediaSlotOne,
    Quirk::EjectBeforeInsert,
];
const ILO: &[Quirk] = &[
    Quirk::EjectBeforeInsert,
    Quirk::NoEjectWhenEmpty,
    Quirk::PowerOnOnlyWhenOff,
];
/// iDRAC `SYS518` "iDRAC not ready". (`RAC0679`, a job running, takes minutes rather
/// than the client's seconds of retries: bmc-idrac waits for it.)
const IDRAC_NOT_READY: &[&str] = &["SYS518"];
/// iLO: the system is in a state (POST) where the change cannot be made yet.
const ILO_NOT_READY: &[&str] = &[
    "InvalidOperationForSystemState",
    "UnableToModifyDuringSystemPOST",
];

fn is_dell(v: &Vendor) -> bool {
    *v == Vendor::Dell
}

fn is_hpe(v: &Vendor) -> bool {
    *v == Vendor::Hpe
}

/// Every known firmware with its quirks, most specific first; the first match wins.
pub const PROFILES: &[VendorProfile] = &[
    VendorProfile {
        name: "dell-idrac10",
        vendor: is_dell,
        firmware: FirmwareMatch::Generation(10),
        quirks: IDRAC10,
        not_ready: IDRAC_NOT_READY,
    },
    VendorProfile {
        // Virtual media moved under Systems in 6.00.02, and `Cd` boots it from then on.
        name: "dell-idrac9-before-6.00.02",
        vendor: is_dell,
        firmware: FirmwareMatch::GenerationBelow(9, &[6, 0, 2]),
        quirks: IDRAC_PHYSICAL_CD,
        not_ready: IDRAC_NOT_READY,
    },
    VendorProfile {
        name: "dell-idrac9",
        vendor: is_dell,
        firmware: FirmwareMatch::GenerationFrom(9, &[6, 0, 2]),
        quirks: IDRAC_COMMON,
        not_ready: IDRAC_NOT_READY,
    },
    VendorProfile {
        // iDRAC 8, or an iDRAC whose manager could not be read: the cautious set.
        name: "dell-idrac",
        vendor: is_dell,
        firmware: FirmwareMatch::Any,
        quirks: IDRAC_PHYSICAL_CD,
        not_ready: IDRAC_NOT_READY,
    },
    VendorProfile {
        name: "hpe-ilo5",
        vendor: is_hpe,
        firmware: FirmwareMatch::Generation(5),
        quirks: ILO,
        not_ready: ILO_NOT_READY,
    },
    VendorProfile {
        name: "hpe-ilo",
        vendor: is_hpe,
        firmware: FirmwareMatch::Any,
        quirks: ILO,
        not_ready: ILO_NOT_READY,
    },
];

/// Not-ready messages every BMC gets retried on, whatever its vendor: the text is
/// unambiguous and a misdetected vendor must not lose the retry.
const ALWAYS_NOT_READY: &[&str] = &["SYS518", "InvalidOperationForSystemState"];

/// The quirks of one BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuirkSet {
    /// The matching profile's name, or `generic`.
    pub profile: &'static str,
    /// The quirks.
    pub quirks: Vec<Quirk>,
    /// Message ids (or suffixes) that mean "not ready yet".
    pub not_ready: Vec<&'static str>,
}

impl Default for QuirkSet {
    fn default() -> Self {
        QuirkSet {
            profile: "generic",
            quirks: Vec::new(),
            not_ready: ALWAYS_NOT_READY.to_vec(),
        }
    }
}

impl QuirkSet {
    /// The quirks of the first profile in [`PROFILES`] that matches, or none.
    pub fn for_identity(identity: &BmcIdentity) -> QuirkSet {
        let mut set = QuirkSet::default();
        if let Some(p) = PROFILES.iter().find(|p| p.matches(identity)) {
            set.profile = p.name;
            set.quirks = p.quirks.to_vec();
            for id in p.not_ready {
                if !set.not_ready.contains(id) {
                    set.not_ready.push(id);
                }
            }
        }
        set
    }

    /// Whether the BMC has this quirk.
    pub fn has(&self, quirk: Quirk) -> bool {
        self.quirks.contains(&quirk)
    }

    /// Whether an error body's text carries one of the not-ready message ids.
    pub fn says_not_ready(&self, text: &str) -> bool {
        self.not_ready.iter().any(|id| text.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dell(model: &str, firmware: &str) -> BmcIdentity {
        BmcIdentity::from_root(&json!({"Vendor": "Dell"}))
            .with_manager(&json!({"Model": model, "FirmwareVersion": firmware}))
    }

    #[test]
    fn idrac_generations_and_firmware_pick_their_profiles() {
        let r750 = dell("15G Monolithic", "6.00.30.00");
        assert_eq!(r750.generation, Some(9));
        assert_eq!(QuirkSet::for_identity(&r750).profile, "dell-idrac9");
        let old = dell("14G Monolithic", "4.40.00.00");
        let q = QuirkSet::for_identity(&old);
        assert_eq!(q.profile, "dell-idrac9-before-6.00.02");
        assert!(q.has(Quirk::CdOverrideBootsPhysicalDrive));
        let edge = dell("16G Monolithic", "6.00.02.00");
        assert_eq!(QuirkSet::for_identity(&edge).profile, "dell-idrac9");
        let r770 = dell("17G Monolithic", "1.10.00.00");
        let q = QuirkSet::for_identity(&r770);
        assert_eq!(q.profile, "dell-idrac10");
        assert!(q.has(Quirk::OnlyVirtualMediaSlotOne));
        let r730 = dell("13G Monolithic", "2.83.83.83");
        assert_eq!(r730.generation, Some(8));
        assert_eq!(QuirkSet::for_identity(&r730).profile, "dell-idrac");
        // The manager not read: the cautious Dell set.
        let bare = BmcIdentity::from_root(&json!({"Vendor": "Dell"}));
        assert!(bare.needs_manager());
        assert!(QuirkSet::for_identity(&bare).has(Quirk::CdOverrideBootsPhysicalDrive));
    }

    #[test]
    fn ilo_generation_comes_from_the_model_or_the_firmware() {
        let ilo6 = BmcIdentity::from_root(&json!({"Oem": {"Hpe": {}}}))
            .with_manager(&json!({"FirmwareVersion": "iLO 6 v1.55"}));
        assert_eq!(ilo6.vendor, Vendor::Hpe);
        assert_eq!(ilo6.generation, Some(6));
        assert_eq!(ilo6.firmware_numbers(), vec![1, 55]);
        assert_eq!(QuirkSet::for_identity(&ilo6).profile, "hpe-ilo");
    }

    #[test]
    fn vendors_without_a_profile_get_the_generic_set() {
        for root in [
            json!({"Vendor": "Lenovo"}),
            json!({"Oem": {"Supermicro": {}}}),
            json!({"Vendor": "Contoso", "Oem": {"Contoso": {}}}),
            json!({}),
            json!("not an object"),
        ] {
            let id = BmcIdentity::from_root(&root);
            assert!(!id.needs_manager());
            let q = QuirkSet::for_identity(&id);
            assert_eq!(q.profile, "generic");
            assert!(q.quirks.is_empty());
            assert!(q.says_not_ready("IDRAC.2.7.SYS518"));
        }
        assert_eq!(
            BmcIdentity::from_root(&json!({"Oem": {"Supermicro": {}}})).vendor,
            Vendor::Supermicro
        );
    }

    #[test]
    fn system_manufacturer_names_the_vendor_when_the_root_was_not_read() {
        let id = BmcIdentity::from_system(&json!({"Manufacturer": "Dell Inc."}));
        assert_eq!(id.vendor, Vendor::Dell);
        let id = BmcIdentity::from_system(&json!({"Manufacturer": "x", "Oem": {"Hpe": {}}}));
        assert_eq!(id.vendor, Vendor::Hpe);
    }

    #[test]
    fn every_profile_is_reachable_and_named_uniquely() {
        let mut names: Vec<_> = PROFILES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROFILES.len());
        for q in PROFILES.iter().flat_map(|p| p.quirks) {
            assert!(!q.name().is_empty());
        }
    }
}
