//! Metal3 objects read from YAML manifests: `BareMetalHost` (metal3.io/v1alpha1),
//! `Secret`, `IPPool` and `IPClaim` (ipam.metal3.io/v1alpha1), with upstream's field
//! names, so upstream's sample manifests load unchanged. Unknown fields are kept out of
//! the way, not refused.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (`default` when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `ownerReferences`: the objects this one belongs to (an IPClaim's host).
    #[serde(
        default,
        rename = "ownerReferences",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub owner_references: Vec<OwnerReference>,
    /// `uid`, set by the API server (an owner reference names its owner by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One of `metadata.ownerReferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: String,
    /// `kind` (`BareMetalHost`).
    #[serde(default)]
    pub kind: String,
    /// `name` (in the owned object's namespace).
    #[serde(default)]
    pub name: String,
    /// `uid` of the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A reference to another object by name (an IPClaim's pool), in the referring
/// object's namespace unless it names one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl ObjectRef {
    /// `namespace/name`, the namespace defaulting to `from`'s.
    pub fn key(&self, from: &ObjectMeta) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or(from.namespace()),
            self.name
        )
    }
}

impl ObjectMeta {
    /// The namespace, `default` when absent.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name)
    }
}

/// `spec.bmc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BmcDetails {
    /// The BMC address (`redfish-virtualmedia://…`, `ipmi://…`).
    #[serde(default)]
    pub address: String,
    /// The Secret with `username` and `password`.
    #[serde(default)]
    pub credentials_name: String,
    /// Skip TLS certificate verification.
    #[serde(default)]
    pub disable_certificate_verification: bool,
}

/// A reference to a Secret (`userData`, `networkData`, `metaData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace (the host's when absent).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `spec` of a BareMetalHost: the fields this operator acts on; the rest is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BareMetalHostSpec {
    /// `bmc`.
    #[serde(default)]
    pub bmc: BmcDetails,
    /// `bootMACAddress`.
    #[serde(default, rename = "bootMACAddress")]
    pub boot_mac_address: Option<String>,
    /// `online`.
    #[serde(default)]
    pub online: bool,
    /// `image`.
    #[serde(default)]
    pub image: Option<provision_fsm::Image>,
    /// `userData`.
    #[serde(default)]
    pub user_data: Option<SecretRef>,
    /// `networkData`.
    #[serde(default)]
    pub network_data: Option<SecretRef>,
    /// `metaData`.
    #[serde(default)]
    pub meta_data: Option<SecretRef>,
    /// `rootDeviceHints`: the disk the agent writes.
    #[serde(default)]
    pub root_device_hints: Option<metal3_conductor::agent_protocol::RootDeviceHints>,
    /// `bootMode` (`UEFI`, `UEFISecureBoot`, `legacy`).
    #[serde(default)]
    pub boot_mode: Option<String>,
    /// `externallyProvisioned`.
    #[serde(default)]
    pub externally_provisioned: bool,
    /// `automatedCleaningMode` (`metadata` or `disabled`).
    #[serde(default)]
    pub automated_cleaning_mode: Option<String>,
    /// `preprovisioningNetworkDataName`: the Secret (in the host's namespace) whose
    /// `networkData` configures the agent's network, and the config drive's when
    /// `networkData` names none.
    #[serde(default)]
    pub preprovisioning_network_data_name: Option<String>,
    /// `consumerRef`: the object using the host (a Cluster API provider's machine), which
    /// alone may set its image and data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_ref: Option<ObjectReference>,
}

/// A Kubernetes object reference: a BareMetalHost's `consumerRef`, a Machine's
/// `infrastructureRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// `apiVersion` (`apiGroup` in Cluster API's v1beta2 references reads as none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `kind` (`Metal3Machine`).
    #[serde(default)]
    pub kind: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A `BareMetalHost`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BareMetalHost {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: BareMetalHostSpec,
}

/// The paused annotation.
pub const PAUSED: &str = "baremetalhost.metal3.io/paused";
/// The detached annotation.
pub const DETACHED: &str = "baremetalhost.metal3.io/detached";
/// The reboot annotation (also `reboot.metal3.io/<suffix>`).
pub const REBOOT: &str = "reboot.metal3.io";
/// The annotation naming an IPPool (in the host's namespace) the agent's static network
/// comes from, when the host names no `preprovisioningNetworkDataName` Secret: an
/// address is claimed for the agent (claim `<host>-agent`) while it may run on the host
/// and released when the host is available or provisioned, so a site with no DHCP needs
/// no network Secret per host.
pub const PREPROVISIONING_POOL: &str = "metal3.io/preprovisioning-ippool";
/// The inspection annotation (`disabled` turns inspection off).
pub const INSPECT: &str = "inspect.metal3.io";

impl BareMetalHost {
    /// Whether the paused annotation is set.
    pub fn paused(&self) -> bool {
        self.metadata.annotations.contains_key(PAUSED)
    }

    /// Whether the detached annotation is set.
    pub fn detached(&self) -> bool {
        self.metadata.annotations.contains_key(DETACHED)
    }

    /// Whether a reboot annotation is set.
    pub fn reboot_requested(&self) -> bool {
        self.metadata
            .annotations
            .keys()
            .any(|k| k == REBOOT || k.starts_with("reboot.metal3.io/"))
    }

    /// Whether the image is booted as it is (`live-iso`) rather than written to disk.
    pub fn live_iso(&self) -> bool {
        self.spec
            .image
            .as_ref()
            .is_some_and(provision_fsm::Image::is_live_iso)
    }
}

/// A `Secret`: `data` (base64) merged with `stringData` (plain), as the API server does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `data`, base64.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// `stringData`, plain.
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

impl Secret {
    /// The value of `key`: `stringData` wins, as on the API server; `data` is decoded.
    /// `Err` when the data is not base64 or not UTF-8.
    pub fn get(&self, key: &str) -> Result<Option<String>, String> {
        if let Some(v) = self.string_data.get(key) {
            return Ok(Some(v.clone()));
        }
        let Some(b64) = self.data.get(key) else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("secret {} key {key}: not base64: {e}", self.metadata.key()))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("secret {} key {key}: not UTF-8", self.metadata.key()))
    }
}

/// An `IPPool` (ipam.metal3.io): its spec is ipam's [`ipam::IpPoolSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpPoolObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    pub spec: ipam::IpPoolSpec,
}

/// An `IPClaim`: a named claim on a pool, owned by the BareMetalHost whose network data
/// its address goes into (`metadata.ownerReferences`), or by nobody (an address kept
/// aside).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpClaimObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec.pool`.
    #[serde(default)]
    pub spec: IpClaimSpec,
}

/// `spec` of an IPClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpClaimSpec {
    /// The pool.
    #[serde(default)]
    pub pool: ObjectRef,
}

/// Everything read from a set of manifests.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// BareMetalHosts.
    pub hosts: Vec<BareMetalHost>,
    /// Secrets, by `namespace/name`.
    pub secrets: BTreeMap<String, Secret>,
    /// IPPools.
    pub pools: Vec<IpPoolObject>,
    /// IPClaims.
    pub claims: Vec<IpClaimObject>,
    /// Documents of other kinds, skipped (`kind` of each).
    pub skipped: Vec<String>,
}

impl IpClaimObject {
    /// The claim's IPPool (`namespace/name`) and its name in that pool (the key of the
    /// pool's `status.indexes`). Upstream's IPAM serves only claims in their pool's
    /// namespace, where a claim's name is unique: a claim on a pool of another
    /// namespace is refused.
    pub fn pool_and_name(&self) -> Result<(String, String), String> {
        let pool = self.spec.pool.key(&self.metadata);
        let namespace = self.spec.pool.namespace.as_deref();
        if namespace.is_some_and(|ns| ns != self.metadata.namespace()) {
            return Err(format!(
                "IPClaim {}: its IPPool {pool} is in another namespace (a claim must be in its pool's namespace)",
                self.metadata.key()
            ));
        }
        Ok((pool, self.metadata.name.clone()))
    }

    /// The host that owns the claim (`namespace/name`), if a BareMetalHost does.
    pub fn owner_host(&self) -> Option<String> {
        self.metadata
            .owner_references
            .iter()
            .find(|o| o.kind == "BareMetalHost" && !o.name.is_empty())
            .map(|o| format!("{}/{}", self.metadata.namespace(), o.name))
    }
}

impl Manifests {
    /// Reads every YAML document of `text` (`---`-separated).
    pub fn add_yaml(&mut self, text: &str, origin: &str) -> Result<(), String> {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value = serde_norway::Value::deserialize(doc)
                .map_err(|e| format!("{origin}: document {}: {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let json: Value = serde_json::to_value(&value)
                .map_err(|e| format!("{origin}: document {}: {e}", i + 1))?;
            let kind = json
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let bad = |e: serde_json::Error| format!("{origin}: {kind} (document {}): {e}", i + 1);
            match kind.as_str() {
                "BareMetalHost" => self.hosts.push(serde_json::from_value(json).map_err(bad)?),
                "Secret" => {
                    let s: Secret = serde_json::from_value(json).map_err(bad)?;
                    self.secrets.insert(s.metadata.key(), s);
                }
                "IPPool" => self.pools.push(serde_json::from_value(json).map_err(bad)?),
                "IPClaim" => self.claims.push(serde_json::from_value(json).map_err(bad)?),
                other => self.skipped.push(other.to_string()),
            }
        }
        Ok(())
    }

    /// Reads every `*.yaml`/`*.yml` file of a directory, in name order.
    pub fn load_dir(dir: &std::path::Path) -> Result<Manifests, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut m = Manifests::default();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            m.add_yaml(&text, &f.display().to_string())?;
        }
        Ok(m)
    }

    /// The Secret `name` in `namespace`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&format!("{namespace}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of baremetal-operator's sample host (config/samples), with its secret.
    const UPSTREAM_SAMPLE: &str = r#"
---
apiVersion: v1
kind: Secret
metadata:
  name: example-baremetalhost-secret
type: Opaque
data:
  username: YWRtaW4=
  password: cGFzc3dvcmQ=

---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: example-baremetalhost
  annotations:
    reboot.metal3.io/sample: ""
spec:
  online: true
  bootMACAddress: 00:c2:fc:4b:c6:8a
  bootMode: UEFI
  bmc:
    address: redfish-virtualmedia://192.168.122.1:8000/redfish/v1/Systems/1
    credentialsName: example-baremetalhost-secret
    disableCertificateVerification: true
  image:
    url: http://172.22.0.1/images/rhcos.qcow2
    checksum: http://172.22.0.1/images/rhcos.qcow2.md5sum
    checksumType: md5
    format: qcow2
  rootDeviceHints:
    deviceName: /dev/sda
  automatedCleaningMode: metadata
  somethingNewUpstream: 3
---
apiVersion: ipam.metal3.io/v1alpha1
kind: IPPool
metadata:
  name: provisioning-pool
spec:
  namePrefix: prov
  pools:
    - start: 192.168.0.10
      end: 192.168.0.30
  prefix: 24
  gateway: 192.168.0.1
  dnsServers: [8.8.8.8]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
"#;

    #[test]
    fn upstream_shaped_manifests_load_with_their_field_names() {
        let mut m = Manifests::default();
        m.add_yaml(UPSTREAM_SAMPLE, "sample")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(m.hosts.len(), 1);
        let h = &m.hosts[0];
        assert_eq!(h.metadata.key(), "default/example-baremetalhost");
        assert_eq!(
            h.spec.boot_mac_address.as_deref(),
            Some("00:c2:fc:4b:c6:8a")
        );
        assert!(h.spec.bmc.disable_certificate_verification);
        assert_eq!(
            h.spec.image.as_ref().and_then(|i| i.checksum_type.clone()),
            Some(provision_fsm::ChecksumType::Md5)
        );
        assert!(h.reboot_requested() && !h.paused() && !h.live_iso());
        assert_eq!(
            h.spec
                .root_device_hints
                .as_ref()
                .and_then(|r| r.device_name.as_deref()),
            Some("/dev/sda")
        );
        let secret = m.secret("default", "example-baremetalhost-secret");
        assert_eq!(
            secret
                .and_then(|s| s.get("username").ok().flatten())
                .as_deref(),
            Some("admin")
        );
        assert_eq!(m.pools.len(), 1);
        assert_eq!(m.skipped, ["ConfigMap"]);
    }

    #[test]
    fn a_claim_names_its_pool_as_an_object_and_its_host_as_owner() {
        let mut m = Manifests::default();
        m.add_yaml(
            "kind: IPClaim\nmetadata:\n  name: node-0-prov\n  namespace: lab\n  ownerReferences:\n  - {apiVersion: metal3.io/v1alpha1, kind: BareMetalHost, name: node-0}\nspec: {pool: {name: provisioning}}\n",
            "inline",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let claim = &m.claims[0];
        assert_eq!(claim.spec.pool.key(&claim.metadata), "lab/provisioning");
        assert_eq!(claim.owner_host().as_deref(), Some("lab/node-0"));
    }

    #[test]
    fn broken_documents_name_their_origin() {
        let mut m = Manifests::default();
        let err = m
            .add_yaml("kind: BareMetalHost\nspec: [1, 2]\n", "hosts.yaml")
            .unwrap_err();
        assert!(
            err.starts_with("hosts.yaml: BareMetalHost (document 1)"),
            "{err}"
        );
        let err = m.add_yaml("a: [", "x.yaml").unwrap_err();
        assert!(err.starts_with("x.yaml: document 1"), "{err}");
        let s = Secret {
            data: [("password".to_string(), "%%%".to_string())].into(),
            ..Secret::default()
        };
        assert!(s.get("password").is_err());
    }
}
