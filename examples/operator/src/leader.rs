//! Leader election on a `coordination.k8s.io/v1` Lease (the `kube` feature), as
//! client-go's leaderelection does it: one Lease names the replica that reconciles; it
//! renews the Lease every [`LeaseConfig::renew_every`]; the others watch it and take it
//! over once it has gone unrenewed for [`LeaseConfig::duration`], as *they* measure
//! time (their own clock since they last saw it change, so no two clocks are compared).
//! Every write carries the `resourceVersion` read, so of two replicas that try at once
//! the API server lets one win. A leader that cannot renew within the lease's duration
//! stops ([`hold`] returns): another replica may have taken over by then.
//!
//! ```no_run
//! # async fn run(client: kube::Client) -> Result<(), kube::Error> {
//! use metal3_operator::leader::{LeaseConfig, acquire, hold};
//! let config = LeaseConfig::new("metal3", "metal3-operator", "replica-a");
//! acquire(&client, &config).await?;
//! // … reconcile while this replica holds the lease …
//! let lost = hold(&client, &config).await;
//! eprintln!("leadership lost: {lost}");
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// Which Lease, who this replica is, and the timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (`holderIdentity`): unique per process.
    pub identity: String,
    /// How long a Lease holds without renewal (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a replica that is not the leader looks at the Lease.
    pub retry_every: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: a 15 s lease, renewed every 5 s, looked at every 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }

    /// The same with a lease of `duration` (renewed every third of it, looked at every
    /// sixth, at least every 100 ms).
    pub fn with_duration(mut self, duration: Duration) -> LeaseConfig {
        self.duration = duration.max(Duration::from_secs(1));
        self.renew_every = self.duration / 3;
        self.retry_every = (self.duration / 6).max(Duration::from_millis(100));
        self
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// The Lease as this replica, newly leader, writes it over `old` (`None`: a new one).
fn taken(config: &LeaseConfig, old: Option<&Lease>) -> Lease {
    let old_spec = old.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = old_spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let transitions = old_spec.lease_transitions.unwrap_or(0);
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: old.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(seconds(config.duration)),
            acquire_time: if ours {
                old_spec.acquire_time.clone()
            } else {
                Some(now())
            },
            renew_time: Some(now()),
            lease_transitions: Some(if ours || old.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }),
    }
}

/// What a replica has seen of the Lease: its content and when (by this replica's clock)
/// that content last changed.
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    duration: Duration,
    since: Instant,
}

impl Observed {
    fn update(seen: &mut Option<Observed>, lease: &Lease, fallback: Duration) {
        let spec = lease.spec.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(fallback, Duration::from_secs);
        let changed = seen
            .as_ref()
            .is_none_or(|o| o.holder != spec.holder_identity || o.renew != spec.renew_time);
        if changed {
            *seen = Some(Observed {
                holder: spec.holder_identity,
                renew: spec.renew_time,
                duration,
                since: Instant::now(),
            });
        }
    }

    fn free(&self) -> bool {
        self.holder.as_deref().is_none_or(str::is_empty) || self.since.elapsed() > self.duration
    }
}

/// Waits until this replica holds the Lease (creating it when there is none). Errors
/// other than a lost race (409) end the wait: the caller decides whether to try again.
pub async fn acquire(client: &Client, config: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut seen: Option<Observed> = None;
    loop {
        let attempt = match api.get_opt(&config.name).await? {
            None => {
                api.create(&PostParams::default(), &taken(config, None))
                    .await
            }
            Some(lease) => {
                Observed::update(&mut seen, &lease, config.duration);
                let ours = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(config.identity.as_str());
                if ours || seen.as_ref().is_some_and(Observed::free) {
                    api.replace(
                        &config.name,
                        &PostParams::default(),
                        &taken(config, Some(&lease)),
                    )
                    .await
                } else {
                    tokio::time::sleep(config.retry_every).await;
                    continue;
                }
            }
        };
        match attempt {
            Ok(_) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "leader");
                return Ok(());
            }
            // Another replica wrote first: look again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(config.retry_every).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Renews the Lease while this replica holds it; returns why it stopped holding it: the
/// Lease names another replica, or it could not be renewed within its duration.
pub async fn hold(client: &Client, config: &LeaseConfig) -> String {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        let result = match api.get(&config.name).await {
            Ok(lease) => {
                let holder = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default();
                if holder != config.identity {
                    return format!("the lease {} is held by {holder:?}", config.name);
                }
                api.replace(
                    &config.name,
                    &PostParams::default(),
                    &taken(config, Some(&lease)),
                )
                .await
                .map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => renewed = Instant::now(),
            Err(e) => {
                tracing::warn!(lease = %config.name, error = %e, "cannot renew the lease");
                // Stop before the others may take over: by their clocks the lease runs
                // out `duration` after they last saw it renewed.
                if renewed.elapsed() + config.renew_every >= config.duration {
                    return format!("the lease {} was not renewed in time: {e}", config.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_transitions: Some(transitions),
                acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let config = LeaseConfig::new("metal3", "op", "b").with_duration(Duration::from_secs(6));
        assert_eq!(
            (config.renew_every, config.retry_every),
            (Duration::from_secs(2), Duration::from_secs(1))
        );
        let took = taken(&config, Some(&lease("a", 3)));
        let spec = took.spec.clone().unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(6));
        assert_ne!(spec.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        // The write is conditional on the version read.
        assert_eq!(took.metadata.resource_version.as_deref(), Some("7"));
        let renewed = taken(&config, Some(&lease("b", 4)))
            .spec
            .unwrap_or_default();
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(
            taken(&config, None)
                .spec
                .unwrap_or_default()
                .lease_transitions,
            Some(0)
        );
    }

    #[test]
    fn a_lease_is_free_once_unchanged_for_its_duration_by_the_observers_clock() {
        let mut seen = None;
        let mut l = lease("a", 0);
        if let Some(s) = l.spec.as_mut() {
            s.lease_duration_seconds = Some(0);
        }
        Observed::update(&mut seen, &l, Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(5));
        assert!(seen.as_ref().is_some_and(Observed::free));
        let mut seen = None;
        Observed::update(&mut seen, &lease("a", 0), Duration::from_secs(15));
        assert!(!seen.as_ref().is_some_and(Observed::free));
        let mut empty = lease("", 0);
        if let Some(s) = empty.spec.as_mut() {
            s.holder_identity = None;
        }
        let mut seen = None;
        Observed::update(&mut seen, &empty, Duration::from_secs(15));
        assert!(seen.as_ref().is_some_and(Observed::free));
    }
}
