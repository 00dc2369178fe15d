//! The `kube` feature's address registry: IPPools, IPClaims and IPAddresses
//! (`ipam.metal3.io/v1alpha1`, upstream's ip-address-manager CRDs) as API objects.
//!
//! - [`load`] reads every IPPool with the claims its `IPAddress` objects record, and the
//!   IPClaims hosts own, before any host is reconciled: a replica that takes over, or a
//!   restarted operator whose store is gone, knows who holds what from the API server,
//!   not from its own store. [`watch`] keeps that up to date (a new or changed pool, a
//!   claim created or deleted).
//! - [`KubeAddresses`] records an address as upstream's IPAM does: an `IPAddress` named
//!   after the pool's `namePrefix` and the address, owned by the pool and the claim,
//!   then the claim's `status.address` and the pool's `status.indexes`. The name is the
//!   lock: when a create finds the name taken by another claim (another replica, or
//!   upstream's controller beside this one), the address is that claim's and the
//!   operator picks the next one. A host with no IPClaim of its own gets one named after
//!   it and owned by it, so the garbage collector removes the claim and its address
//!   with the host.
//!
//! Upstream's CRDs are optional: without them (`load` finds no `ippools` resource) hosts
//! take their network data from their Secrets only.
//!
//! ```
//! use metal3_operator::kube_ipam::{address_object, ip_addresses};
//! use metal3_operator::manifests::IpPoolObject;
//!
//! assert_eq!(ip_addresses().plural, "ipaddresses");
//! let pool: IpPoolObject = serde_json::from_str(
//!     r#"{"metadata": {"name": "prov", "namespace": "lab", "uid": "u1"},
//!         "spec": {"namePrefix": "prov", "pools": [{"start": "10.0.0.10", "end": "10.0.0.20"}], "prefix": 24}}"#,
//! ).map_err(|e| e.to_string())?;
//! let address: ipam::IpAddress = serde_json::from_str(r#"{"address": "10.0.0.10", "prefix": 24}"#)
//!     .map_err(|e| e.to_string())?;
//! let object = address_object(&pool, "node-0", "u2", &address, "prov-10-0-0-10");
//! assert_eq!(object["spec"]["claim"]["name"], "node-0");
//! # Ok::<(), String>(())
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, Preconditions,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::addresses::{AddressRegistry, Allocation, Recorded};
use crate::manifests::{IpClaimObject, IpPoolObject};
use crate::operator::Operator;

const GROUP: &str = "ipam.metal3.io";
const API_VERSION: &str = "ipam.metal3.io/v1alpha1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1alpha1", kind), plural)
}

/// The IPPool resource (`ippools`).
pub fn ip_pools() -> ApiResource {
    resource("IPPool", "ippools")
}

/// The IPClaim resource (`ipclaims`).
pub fn ip_claims() -> ApiResource {
    resource("IPClaim", "ipclaims")
}

/// The IPAddress resource (`ipaddresses`).
pub fn ip_addresses() -> ApiResource {
    resource("IPAddress", "ipaddresses")
}

fn api(client: &Client, namespace: Option<&str>, r: &ApiResource) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, r),
        None => Api::all_with(client.clone(), r),
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The `IPAddress` object upstream's IPAM makes for an address: owned by its pool and
/// (as controller) its claim, labelled with the pool's name.
pub fn address_object(
    pool: &IpPoolObject,
    claim: &str,
    claim_uid: &str,
    address: &ipam::IpAddress,
    name: &str,
) -> Value {
    let namespace = pool.metadata.namespace();
    let mut spec = json!({
        "address": address.address.to_string(),
        "prefix": address.prefix,
        "pool": {"name": pool.metadata.name, "namespace": namespace},
        "claim": {"name": claim, "namespace": namespace},
    });
    if let Some(gateway) = address.gateway {
        spec["gateway"] = json!(gateway.to_string());
    }
    if !address.dns_servers.is_empty() {
        spec["dnsServers"] = json!(
            address
                .dns_servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    let mut owners = Vec::new();
    if let Some(uid) = &pool.metadata.uid {
        owners.push(json!({"apiVersion": API_VERSION, "kind": "IPPool", "name": pool.metadata.name, "uid": uid}));
    }
    owners.push(json!({"apiVersion": API_VERSION, "kind": "IPClaim", "name": claim, "uid": claim_uid, "controller": true}));
    json!({
        "apiVersion": API_VERSION,
        "kind": "IPAddress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"ipam.metal3.io/ippool-name": pool.metadata.name},
            "ownerReferences": owners,
        },
        "spec": spec,
    })
}

/// The claim an `IPAddress` object names (`spec.claim.name`).
fn claim_of(object: &DynamicObject) -> &str {
    object
        .data
        .pointer("/spec/claim/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// [`AddressRegistry`] over the API server's `ipam.metal3.io` objects.
#[derive(Clone)]
pub struct KubeAddresses {
    client: Client,
}

impl std::fmt::Debug for KubeAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeAddresses")
    }
}

impl KubeAddresses {
    /// A registry writing through `client`.
    pub fn new(client: Client) -> KubeAddresses {
        KubeAddresses { client }
    }

    /// The uid of the allocation's IPClaim, made (owned by the host) when the host has
    /// none of its own.
    async fn claim_uid(&self, a: &Allocation<'_>) -> Result<String, String> {
        if let Some(uid) = a.claim_object.and_then(|c| c.metadata.uid.clone()) {
            return Ok(uid);
        }
        let namespace = a.pool.metadata.namespace();
        let claims = api(&self.client, Some(namespace), &ip_claims());
        let key = format!("{namespace}/{}", a.claim);
        let owned_uid = |c: DynamicObject| -> Result<String, String> {
            let owned = c.metadata.owner_references.iter().flatten().any(|o| {
                o.kind == "BareMetalHost"
                    && o.name == a.host.name
                    && a.host.uid.as_ref().is_none_or(|uid| *uid == o.uid)
            });
            if !owned {
                return Err(format!(
                    "IPClaim {key} exists and is not host {}'s",
                    a.host.key()
                ));
            }
            c.metadata
                .uid
                .ok_or_else(|| format!("IPClaim {key} has no uid"))
        };
        let found = claims
            .get_opt(a.claim)
            .await
            .map_err(|e| format!("reading IPClaim {key}: {e}"))?;
        if let Some(c) = found {
            return owned_uid(c);
        }
        let host_uid = a
            .host
            .uid
            .clone()
            .ok_or_else(|| format!("host {} has no uid to own IPClaim {key}", a.host.key()))?;
        let claim: DynamicObject = serde_json::from_value(json!({
            "apiVersion": API_VERSION,
            "kind": "IPClaim",
            "metadata": {
                "name": a.claim,
                "namespace": namespace,
                "ownerReferences": [{"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "name": a.host.name, "uid": host_uid}],
            },
            "spec": {"pool": {"name": a.pool.metadata.name, "namespace": namespace}},
        }))
        .map_err(|e| format!("IPClaim {key}: {e}"))?;
        match claims.create(&PostParams::default(), &claim).await {
            Ok(c) => c
                .metadata
                .uid
                .ok_or_else(|| format!("IPClaim {key} has no uid")),
            Err(e) if is_code(&e, 409) => {
                let c = claims
                    .get(a.claim)
                    .await
                    .map_err(|e| format!("reading IPClaim {key}: {e}"))?;
                owned_uid(c)
            }
            Err(e) => Err(format!("creating IPClaim {key}: {e}")),
        }
    }

    /// The pool's uid: from the watched object, or read.
    async fn pool_uid(&self, pool: &IpPoolObject) -> Result<String, String> {
        if let Some(uid) = &pool.metadata.uid {
            return Ok(uid.clone());
        }
        let pools = api(&self.client, Some(pool.metadata.namespace()), &ip_pools());
        pools
            .get(&pool.metadata.name)
            .await
            .map_err(|e| format!("reading IPPool {}: {e}", pool.metadata.key()))?
            .metadata
            .uid
            .ok_or_else(|| format!("IPPool {} has no uid", pool.metadata.key()))
    }

    /// Writes the claim's `status.address` and the pool's `status.indexes` entry (`None`:
    /// removes them). A claim or pool that is gone has nothing to write.
    async fn write_statuses(&self, a: &Allocation<'_>, held: bool) -> Result<(), String> {
        let namespace = a.pool.metadata.namespace();
        let params = PatchParams::default();
        let address = held.then(|| json!({"name": a.name, "namespace": namespace}));
        let claims = api(&self.client, Some(namespace), &ip_claims());
        let patch = json!({"status": {"address": address, "errorMessage": null}});
        match claims
            .patch_status(a.claim, &params, &Patch::Merge(&patch))
            .await
        {
            Err(e) if !is_code(&e, 404) => {
                return Err(format!(
                    "writing the status of IPClaim {namespace}/{}: {e}",
                    a.claim
                ));
            }
            _ => {}
        }
        let index = held.then(|| json!(a.address.address.to_string()));
        let now = crate::render::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        let patch = json!({"status": {"indexes": {a.claim: index}, "lastUpdated": now}});
        let pools = api(&self.client, Some(namespace), &ip_pools());
        match pools
            .patch_status(&a.pool.metadata.name, &params, &Patch::Merge(&patch))
            .await
        {
            Err(e) if !is_code(&e, 404) => Err(format!(
                "writing the status of IPPool {}: {e}",
                a.pool.metadata.key()
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl AddressRegistry for KubeAddresses {
    async fn record(&self, a: &Allocation<'_>) -> Result<Recorded, String> {
        let namespace = a.pool.metadata.namespace();
        let claim_uid = self.claim_uid(a).await?;
        let mut pool = a.pool.clone();
        pool.metadata.uid = Some(self.pool_uid(a.pool).await?);
        let object: DynamicObject = serde_json::from_value(address_object(
            &pool, a.claim, &claim_uid, a.address, a.name,
        ))
        .map_err(|e| format!("IPAddress {namespace}/{}: {e}", a.name))?;
        let addresses = api(&self.client, Some(namespace), &ip_addresses());
        match addresses.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            // The name is the address: whoever made it first holds it.
            Err(e) if is_code(&e, 409) => {
                let existing = addresses
                    .get(a.name)
                    .await
                    .map_err(|e| format!("reading IPAddress {namespace}/{}: {e}", a.name))?;
                let holder = claim_of(&existing);
                if holder != a.claim {
                    return Ok(Recorded::TakenBy(holder.to_string()));
                }
            }
            Err(e) => return Err(format!("creating IPAddress {namespace}/{}: {e}", a.name)),
        }
        self.write_statuses(a, true).await?;
        Ok(Recorded::Ours)
    }

    async fn forget(&self, a: &Allocation<'_>) -> Result<(), String> {
        let namespace = a.pool.metadata.namespace();
        let addresses = api(&self.client, Some(namespace), &ip_addresses());
        let found = addresses
            .get_opt(a.name)
            .await
            .map_err(|e| format!("reading IPAddress {namespace}/{}: {e}", a.name))?;
        // Only the claim's own object: a name another claim holds is not this one's to
        // delete.
        if let Some(object) = found.filter(|o| claim_of(o) == a.claim) {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: object.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match addresses.delete(a.name, &params).await {
                Err(e) if !is_code(&e, 404) => {
                    return Err(format!("deleting IPAddress {namespace}/{}: {e}", a.name));
                }
                _ => {}
            }
        }
        self.write_statuses(a, false).await
    }
}

/// The pools, claims and addresses in the API server, read into the operator.
fn pool_from(object: &DynamicObject) -> Result<IpPoolObject, String> {
    let key = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or("default"),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("IPPool {key}: {e}"))
}

fn claim_from(object: &DynamicObject) -> Option<IpClaimObject> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .ok()
}

/// The claims the `IPAddress` objects of `pool` record (claim name, address).
fn allocations_of(pool: &IpPoolObject, addresses: &[DynamicObject]) -> Vec<(String, IpAddr)> {
    let namespace = pool.metadata.namespace();
    addresses
        .iter()
        .filter(|a| a.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|a| {
            a.data.pointer("/spec/pool/name").and_then(Value::as_str)
                == Some(pool.metadata.name.as_str())
        })
        .filter_map(|a| {
            let address = a.data.pointer("/spec/address")?.as_str()?.parse().ok()?;
            Some((claim_of(a).to_string(), address))
        })
        .collect()
}

async fn put_pool(client: &Client, operator: &Operator, pool: IpPoolObject) -> Result<(), String> {
    let namespace = pool.metadata.namespace().to_string();
    let addresses = api(client, Some(&namespace), &ip_addresses())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing the IPAddresses of {namespace}: {e}"))?
        .items;
    let allocations = allocations_of(&pool, &addresses);
    let key = pool.metadata.key();
    operator.put_pool(pool, &allocations)?;
    tracing::info!(pool = %key, allocated = allocations.len(), "IPPool taken from the API server");
    Ok(())
}

/// Reads every IPPool (with the claims its IPAddresses record) and the IPClaims hosts
/// own into `operator`. `Ok(false)` when upstream's IPAM CRDs are not installed.
pub async fn load(
    client: &Client,
    operator: &Operator,
    namespace: Option<&str>,
) -> Result<bool, String> {
    let pools = match api(client, namespace, &ip_pools())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) if is_code(&e, 404) => {
            tracing::info!("no ipam.metal3.io CRDs: addresses come from the hosts' Secrets only");
            return Ok(false);
        }
        Err(e) => return Err(format!("listing IPPools: {e}")),
    };
    let addresses = api(client, namespace, &ip_addresses())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing IPAddresses: {e}"))?
        .items;
    for object in &pools {
        match pool_from(object) {
            Ok(pool) => {
                let allocations = allocations_of(&pool, &addresses);
                let key = pool.metadata.key();
                match operator.put_pool(pool, &allocations) {
                    Ok(()) => {
                        tracing::info!(pool = %key, allocated = allocations.len(), "IPPool taken from the API server");
                    }
                    Err(e) => tracing::warn!(error = %e, "an IPPool this operator cannot use"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "an IPPool this operator cannot read"),
        }
    }
    let claims = api(client, namespace, &ip_claims())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing IPClaims: {e}"))?
        .items;
    for claim in claims.iter().filter_map(claim_from) {
        operator.put_claim(claim);
    }
    Ok(true)
}

/// Whether an IPClaim object has its address already (`status.address.name`).
fn has_address(object: &DynamicObject) -> bool {
    object
        .data
        .pointer("/status/address/name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
}

/// Serves an IPClaim no host owns (another controller's: a Cluster API provider's claim
/// for one machine on one pool) as upstream's IPAM controller does: an address from its
/// pool, recorded as an `IPAddress` owned by the claim, then the claim's
/// `status.address`. A claim that cannot be served (no such pool, the pool exhausted)
/// gets the reason in `status.errorMessage` and the error back, to be tried again.
async fn serve_claim(
    client: &Client,
    operator: &Operator,
    object: &DynamicObject,
) -> Result<(), String> {
    let Some(claim) = claim_from(object) else {
        return Ok(());
    };
    if claim.owner_host().is_some() || object.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    if has_address(object) {
        // Served before (by this operator before a restart, or another replica): its
        // IPAddress is in the pool's allocations already.
        operator.put_claim(claim);
        return Ok(());
    }
    let key = claim.metadata.key();
    let served = match claim.pool_and_name() {
        Ok((pool, name)) => operator
            .claim_pool_address(&pool, &name, Some(&claim), &claim.metadata)
            .await
            .map(|a| (pool, a)),
        Err(e) => Err(e),
    };
    match served {
        Ok((pool, address)) => {
            tracing::info!(claim = %key, %pool, address = %address.address, "IPClaim served");
            Ok(())
        }
        Err(e) => {
            let claims = api(client, Some(claim.metadata.namespace()), &ip_claims());
            let patch = json!({"status": {"errorMessage": e}});
            if let Err(w) = claims
                .patch_status(
                    &claim.metadata.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(claim = %key, error = %w, "cannot write the IPClaim's error");
            }
            Err(format!("IPClaim {key}: {e}"))
        }
    }
}

/// Releases the address of a deleted IPClaim no host owns.
async fn release_claim(operator: &Operator, object: &DynamicObject) {
    let Some(claim) = claim_from(object) else {
        return;
    };
    if claim.owner_host().is_some() {
        return;
    }
    if let Ok((pool, name)) = claim.pool_and_name() {
        match operator
            .release_pool_address(&pool, &name, &claim.metadata)
            .await
        {
            Ok(()) => {
                tracing::info!(claim = %claim.metadata.key(), %pool, "IPClaim gone: address released")
            }
            Err(e) => {
                tracing::warn!(claim = %claim.metadata.key(), error = %e, "cannot release the address of a deleted IPClaim")
            }
        }
    }
}

/// How often claims that could not be served are tried again.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps `operator`'s pools and host claims up to date with the API server until the
/// watches end: a pool whose spec changes is read again with its IPAddresses. IPClaims
/// no host owns are served as upstream's IPAM controller serves them ([`serve_claim`]):
/// the operator is the IPAM controller of its namespace(s), so a Cluster API provider
/// beside it needs no other; a deleted one has its address released.
pub async fn watch(client: Client, operator: Arc<Operator>, namespace: Option<String>) {
    enum Seen {
        Pool(watcher::Event<DynamicObject>),
        Claim(watcher::Event<DynamicObject>),
    }
    let ns = namespace.as_deref();
    let pools = watcher(api(&client, ns, &ip_pools()), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(Seen::Pool));
    let claims = watcher(api(&client, ns, &ip_claims()), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(Seen::Claim));
    let mut events = std::pin::pin!(futures_util::stream::select(pools, claims));
    // A watch that broke is listed again (Init, InitApply…, InitDone): a claim deleted
    // while it was broken is the one not listed.
    let mut listed: Option<std::collections::BTreeSet<(String, String)>> = None;
    // Claims to serve again (no pool yet, the pool exhausted): by namespace and name.
    let mut unserved: std::collections::BTreeMap<(String, String), DynamicObject> =
        Default::default();
    let mut retry = tokio::time::interval(CLAIM_RETRY);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => event,
                None => break,
            },
            _ = retry.tick(), if !unserved.is_empty() => {
                for (id, object) in std::mem::take(&mut unserved) {
                    if let Err(e) = serve_claim(&client, &operator, &object).await {
                        tracing::debug!(error = %e, "IPClaim still not served");
                        unserved.insert(id, object);
                    }
                }
                continue;
            }
        };
        match event {
            Ok(Seen::Claim(watcher::Event::Init)) => listed = Some(Default::default()),
            Ok(Seen::Claim(watcher::Event::InitDone)) => {
                if let Some(listed) = listed.take() {
                    for claim in operator.host_claims() {
                        let id = (
                            claim.metadata.namespace().to_string(),
                            claim.metadata.name.clone(),
                        );
                        if !listed.contains(&id) {
                            operator.remove_claim(&claim);
                        }
                    }
                }
            }
            Ok(Seen::Pool(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                match pool_from(&o) {
                    Ok(pool)
                        if operator.pool_spec(&pool.metadata.key()).as_ref()
                            != Some(&pool.spec) =>
                    {
                        if let Err(e) = put_pool(&client, &operator, pool).await {
                            tracing::warn!(error = %e, "cannot take up an IPPool");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "an IPPool this operator cannot read"),
                }
            }
            Ok(Seen::Claim(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                if let Some(claim) = claim_from(&o) {
                    let id = (
                        claim.metadata.namespace().to_string(),
                        claim.metadata.name.clone(),
                    );
                    if let Some(listed) = listed.as_mut() {
                        listed.insert(id.clone());
                    }
                    if claim.owner_host().is_some() {
                        operator.put_claim(claim);
                    } else if let Err(e) = serve_claim(&client, &operator, &o).await {
                        tracing::warn!(error = %e, "cannot serve an IPClaim yet; trying again");
                        unserved.insert(id, o);
                    } else {
                        unserved.remove(&id);
                    }
                }
            }
            Ok(Seen::Claim(watcher::Event::Delete(o))) => {
                if let Some(claim) = claim_from(&o) {
                    unserved.remove(&(
                        claim.metadata.namespace().to_string(),
                        claim.metadata.name.clone(),
                    ));
                    operator.remove_claim(&claim);
                    release_claim(&operator, &o).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watch of IPPools or IPClaims failed; trying again")
            }
        }
    }
}
