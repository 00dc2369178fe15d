//! `operator`: the example operator as a process: reads Metal3 manifests, reconciles
//! every BareMetalHost against a `conductor` over its admin API, keeps state in an
//! embedded store, and prints each host's status in Metal3's layout.
//!
//! `operator --help` tells every option; logs go to standard error (`--log`, `RUST_LOG`,
//! `--log-format json`). Exit status: 0, or with `--until-settled` 1 when a host ended in
//! error; 1 when the operator fails; 2 for a wrong command line. Each host is reconciled one level-triggered step at a time, stepped again when its
//! conductor node changes (the conductor's change feed) or when its step asks to be.
//! Inspection is by the agent (Metal3's default; the conductor needs `--agent-image`),
//! out of band through the BMC (`fast`), or off.
//!
//! Built with `--features kube`, `--kube [--namespace NS]` takes the hosts from a
//! Kubernetes cluster instead of `--manifests`: a kube-rs controller over the
//! `metal3.io/v1alpha1` BareMetalHost CRD (see `metal3_operator::kube_controller`).
//! Runs until Ctrl-C or SIGTERM, printing a line whenever the hosts' states change; with
//! `--until-settled` it stops once every host is provisioned, available or externally
//! provisioned with its power known and nothing in flight, or reports an error. On the way out it prints every host's `status` as
//! JSON. Restarting it on the same `--state` carries on where it stopped. With
//! `--status-dir DIR` it also keeps `DIR/<namespace>.<name>.yaml` up to date: each host's
//! object with its `status` written back in Metal3's layout, as `kubectl get -o yaml`
//! would show it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bmc_core::Credentials;
use clap::Parser;
use metal3_cli::{EXIT_FAILED, EXIT_USAGE, LogArgs, Shell};
use metal3_conductor::{ConductorApi, HttpConductor};
use metal3_operator::addresses::{AddressRegistry, LocalAddresses};
use metal3_operator::manifests::Manifests;
use metal3_operator::operator::{Operator, OperatorConfig};
use metal3_operator::progress::progress_line;
use metal3_operator::render::status_json;
use metal3_operator::store::Store;
use provision_fsm::{HostStateKind, InspectionMode};

/// How hosts are inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Inspection {
    /// By the agent, booted by virtual media (Metal3's default; the conductor needs
    /// `--agent-image`).
    Agent,
    /// Out of band through the BMC.
    Fast,
    /// Not at all.
    Disabled,
}

/// The example operator (baremetal-operator's role): reconciles every BareMetalHost
/// against a conductor one level-triggered step at a time, keeps state in an embedded
/// store and prints each host's status in Metal3's layout.
#[derive(Debug, Parser)]
#[command(name = "operator", version)]
struct Cli {
    /// The conductor's admin API (`http://127.0.0.1:6385`, `https://conductor:6385`).
    #[arg(long, value_name = "URL", env = "OPERATOR_CONDUCTOR")]
    conductor: Option<String>,
    /// CA certificates (PEM) that the conductor's TLS certificate must chain to (default:
    /// the system's).
    #[arg(long, value_name = "FILE", env = "OPERATOR_CONDUCTOR_CA")]
    conductor_ca: Option<PathBuf>,
    /// A file holding the conductor's credentials as `user:password` on one line (never
    /// on the command line). `OPERATOR_CONDUCTOR_USERNAME` and
    /// `OPERATOR_CONDUCTOR_PASSWORD` in the environment do the same.
    #[arg(long, value_name = "FILE")]
    conductor_credentials_file: Option<PathBuf>,
    /// A folder of Metal3 manifests (Secrets, IPPools, BareMetalHosts).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["kube", "completions"])]
    manifests: Option<PathBuf>,
    /// Takes the hosts from a Kubernetes cluster instead (needs the `kube` feature).
    #[arg(long)]
    kube: bool,
    /// With `--kube`: only this namespace.
    #[arg(long, value_name = "NS", requires = "kube")]
    namespace: Option<String>,
    /// With `--kube`: reconcile only while holding the Lease `--lease-name` in
    /// `--lease-namespace`, so several replicas can run and one works at a time; a
    /// replica that loses the lease exits.
    #[arg(long, requires = "kube")]
    leader_election: bool,
    /// The leader-election Lease's namespace (default: `POD_NAMESPACE`, else `metal3`).
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = "metal3"
    )]
    lease_namespace: String,
    /// The leader-election Lease's name.
    #[arg(long, value_name = "NAME", default_value = "metal3-operator")]
    lease_name: String,
    /// How long the lease holds without renewal; a replica takes over after that long.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// The embedded store; restarting on the same file carries on where it stopped.
    #[arg(long, value_name = "FILE", default_value = "operator-state.redb")]
    state: PathBuf,
    /// Also keeps `DIR/<namespace>.<name>.yaml` up to date: each host with its status.
    #[arg(long, value_name = "DIR")]
    status_dir: Option<PathBuf>,
    /// How soon a step that failed to reach the conductor is tried again.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    poll_ms: u64,
    /// How hosts are inspected.
    #[arg(long, value_enum, default_value_t = Inspection::Agent)]
    inspection: Inspection,
    /// Stops once every host is provisioned, available, externally provisioned or in
    /// error; exits 1 if any host is in error.
    #[arg(long)]
    until_settled: bool,
    /// Serves Prometheus metrics as `GET /metrics` on this address (port 0 picks one;
    /// the address is printed). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,
    #[command(flatten)]
    log: LogArgs,
}

/// Serves the operator's metrics until the process ends; the address it listens on.
async fn serve_metrics(
    operator: Arc<Operator>,
    listen: &str,
) -> Result<std::net::SocketAddr, String> {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--metrics-listen {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--metrics-listen {listen}: {e}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let operator = operator.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        metal3_operator::metrics::CONTENT_TYPE,
                    )],
                    operator.encode_metrics(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(addr)
}

/// Writes each host whose status changed as `DIR/<namespace>.<name>.yaml`.
fn write_statuses(
    dir: &std::path::Path,
    manifests: &Manifests,
    operator: &Operator,
    written: &mut BTreeMap<String, serde_json::Value>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let records = operator.records();
    for host in &manifests.hosts {
        let key = host.metadata.key();
        let Some(record) = records.get(&key) else {
            continue;
        };
        let mut status = status_json(&key, record);
        if let Some(o) = status.as_object_mut() {
            o.remove("lastUpdated");
        }
        if written.get(&key) == Some(&status) {
            continue;
        }
        let object = serde_json::json!({
            "apiVersion": "metal3.io/v1alpha1",
            "kind": "BareMetalHost",
            "metadata": host.metadata,
            "spec": host.spec,
            "status": status_json(&key, record),
        });
        let text = serde_norway::to_string(&object).map_err(|e| e.to_string())?;
        let file = dir.join(format!(
            "{}.{}.yaml",
            host.metadata.namespace(),
            host.metadata.name
        ));
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        written.insert(key, status);
    }
    Ok(())
}

fn settled(operator: &Operator, keys: &[String]) -> bool {
    let records = operator.records();
    keys.iter().all(|k| {
        records.get(k).is_some_and(|r| {
            // Settled in a stable state means nothing left in flight either: a host just
            // provisioned may still be waiting for its power to be read or set.
            r.host.error.is_some()
                || (matches!(
                    r.host.state.kind(),
                    HostStateKind::Provisioned
                        | HostStateKind::Available
                        | HostStateKind::ExternallyProvisioned
                ) && r.host.pending.is_none()
                    && r.host.powered_on.is_some())
        })
    })
}

/// The conductor's client with the CA and credentials the command line and environment
/// name.
fn conductor_client(cli: &Cli, url: &str) -> Result<HttpConductor, String> {
    let ca = match &cli.conductor_ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("cannot read the conductor CA {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let credentials = match &cli.conductor_credentials_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read the conductor credentials {}: {e}",
                    path.display()
                )
            })?;
            let line = text.lines().next().unwrap_or_default().trim_end();
            let (user, password) = line.split_once(':').ok_or_else(|| {
                format!("{}: not user:password on its first line", path.display())
            })?;
            Some(Credentials::new(user, password).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => match (
            std::env::var("OPERATOR_CONDUCTOR_USERNAME"),
            std::env::var("OPERATOR_CONDUCTOR_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => Some(
                Credentials::new(user, password)
                    .map_err(|e| format!("the conductor credentials in the environment: {e}"))?,
            ),
            _ => None,
        },
    };
    HttpConductor::with_security(url, ca.as_deref(), credentials.as_ref())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = cli.log.init("info") {
        tracing::error!(error = %e, "operator failed");
        eprintln!("operator: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if cli.kube && !cfg!(feature = "kube") {
        eprintln!("operator: --kube needs the operator built with --features kube");
        return ExitCode::from(EXIT_USAGE);
    }
    let Some(conductor_url) = cli.conductor.clone() else {
        eprintln!("operator: --conductor URL (or OPERATOR_CONDUCTOR) is required");
        return ExitCode::from(EXIT_USAGE);
    };
    let inspection = match cli.inspection {
        Inspection::Agent => InspectionMode::Agent,
        Inspection::Fast => InspectionMode::Fast,
        Inspection::Disabled => InspectionMode::Disabled,
    };
    let manifests = if cli.kube {
        Ok(Manifests::default())
    } else {
        Manifests::load_dir(
            cli.manifests
                .as_deref()
                .unwrap_or(std::path::Path::new(".")),
        )
    };
    let manifests = match manifests {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("operator: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let store = match Store::open(&cli.state) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("operator: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let conductor = match conductor_client(&cli, &conductor_url) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("operator: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let conductor: Arc<dyn ConductorApi> = Arc::new(conductor);
    let config = OperatorConfig {
        poll: Duration::from_millis(cli.poll_ms.max(1)),
        inspection,
        ..OperatorConfig::default()
    };
    #[cfg(feature = "kube")]
    let kube_client = if cli.kube {
        match kube::Client::try_default().await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("operator: no Kubernetes cluster: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        None
    };
    // In kube mode an address is the API server's IPAddress object before it is used.
    #[cfg(feature = "kube")]
    let addresses: Arc<dyn AddressRegistry> = match &kube_client {
        Some(c) => Arc::new(metal3_operator::kube_ipam::KubeAddresses::new(c.clone())),
        None => Arc::new(LocalAddresses),
    };
    #[cfg(not(feature = "kube"))]
    let addresses: Arc<dyn AddressRegistry> = Arc::new(LocalAddresses);
    let operator = match Operator::open_with(conductor, store, config, addresses) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("operator: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if let Some(listen) = &cli.metrics_listen {
        match serve_metrics(operator.clone(), listen).await {
            Ok(addr) => {
                println!("metrics http://{addr}/metrics");
                tracing::info!(%addr, "serving metrics");
            }
            Err(e) => {
                eprintln!("operator: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    if let Err(e) = operator.apply(&manifests) {
        tracing::error!(error = %e, "operator failed");
        eprintln!("operator: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    #[cfg(feature = "kube")]
    if let Some(client) = kube_client {
        let lease = cli.leader_election.then(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .unwrap_or_default();
            let identity = format!("{}-{}", host.trim(), std::process::id());
            metal3_operator::leader::LeaseConfig::new(
                &cli.lease_namespace,
                &cli.lease_name,
                &identity,
            )
            .with_duration(Duration::from_secs(cli.lease_seconds))
        });
        if let Some(lease) = &lease {
            tracing::info!(lease = %lease.name, identity = %lease.identity, "waiting to lead");
            tokio::select! {
                acquired = metal3_operator::leader::acquire(&client, lease) => {
                    if let Err(e) = acquired {
                        tracing::error!(error = %e, "leader election failed");
                        eprintln!("operator: leader election: {e}");
                        return ExitCode::from(EXIT_FAILED);
                    }
                }
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
        let held = async {
            match &lease {
                Some(lease) => metal3_operator::leader::hold(&client, lease).await,
                None => std::future::pending().await,
            }
        };
        let code = tokio::select! {
            ran = metal3_operator::kube_controller::run(client.clone(), operator.clone(), cli.namespace.as_deref()) => match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator failed");
                    eprintln!("operator: {e}");
                    ExitCode::from(EXIT_FAILED)
                }
            },
            lost = held => {
                // Another replica may lead now: stop at once rather than reconcile beside it.
                tracing::error!(reason = %lost, "leadership lost");
                eprintln!("operator: leadership lost: {lost}");
                return ExitCode::from(EXIT_FAILED);
            }
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        };
        operator.stop().await;
        return code;
    }
    operator.run_embedded();
    let keys: Vec<String> = manifests.hosts.iter().map(|h| h.metadata.key()).collect();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut last = String::new();
    let mut written: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    loop {
        let line = progress_line(&operator, &keys);
        if line != last {
            println!("{line}");
            last = line;
        }
        if let Some(dir) = &cli.status_dir {
            if let Err(e) = write_statuses(dir, &manifests, &operator, &mut written) {
                tracing::error!(error = %e, "operator failed");
                eprintln!("operator: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
        if cli.until_settled && settled(&operator, &keys) {
            break;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let statuses: BTreeMap<String, serde_json::Value> = operator
        .records()
        .iter()
        .map(|(k, r)| (k.clone(), status_json(k, r)))
        .collect();
    match serde_json::to_string_pretty(&statuses) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("operator: {e}"),
    }
    let failed: Vec<String> = operator
        .records()
        .iter()
        .filter_map(|(k, r)| r.host.error.as_ref().map(|e| format!("{k}: {}", e.message)))
        .collect();
    operator.stop().await;
    if cli.until_settled && !failed.is_empty() {
        for f in &failed {
            tracing::error!(host = %f, "host settled in error");
            eprintln!("operator: {f}");
        }
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::SUCCESS
}
