//! `operator`: the example operator as a process: reads Metal3 manifests, reconciles
//! every BareMetalHost against a `conductor` over its admin API, keeps state in an
//! embedded store, and prints each host's status in Metal3's layout.
//!
//! ```text
//! operator --conductor URL --manifests DIR [--state FILE] [--poll-ms MS]
//!          [--inspection agent|fast|disabled] [--until-settled]
//! ```
//! Each host is reconciled one level-triggered step at a time, stepped again when its
//! conductor node changes (the conductor's change feed) or when its step asks to be.
//! Inspection is by the agent (Metal3's default; the conductor needs `--agent-image`),
//! out of band through the BMC (`fast`), or off.
//!
//! Built with `--features kube`, `--kube [--namespace NS]` takes the hosts from a
//! Kubernetes cluster instead of `--manifests`: a kube-rs controller over the
//! `metal3.io/v1alpha1` BareMetalHost CRD (see `metal3_operator::kube_controller`).
//! Runs until Ctrl-C or SIGTERM, printing a line whenever the hosts' states change; with
//! `--until-settled` it stops once every host is provisioned, available, externally
//! provisioned or reports an error. On the way out it prints every host's `status` as
//! JSON. Restarting it on the same `--state` carries on where it stopped. With
//! `--status-dir DIR` it also keeps `DIR/<namespace>.<name>.yaml` up to date: each host's
//! object with its `status` written back in Metal3's layout, as `kubectl get -o yaml`
//! would show it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use metal3_conductor::{ConductorApi, HttpConductor};
use metal3_operator::manifests::Manifests;
use metal3_operator::operator::{Operator, OperatorConfig};
use metal3_operator::progress::progress_line;
use metal3_operator::render::status_json;
use metal3_operator::store::Store;
use provision_fsm::{HostStateKind, InspectionMode};

const USAGE: &str = "usage: operator --conductor URL (--manifests DIR | --kube [--namespace NS]) \
[--state FILE] [--status-dir DIR] [--poll-ms MS] [--inspection agent|fast|disabled] [--until-settled]";

struct Cli {
    conductor: String,
    manifests: PathBuf,
    kube: bool,
    namespace: Option<String>,
    status_dir: Option<PathBuf>,
    state: PathBuf,
    poll: Duration,
    inspection: InspectionMode,
    until_settled: bool,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut conductor = None;
    let mut manifests = None;
    let mut cli = Cli {
        conductor: String::new(),
        manifests: PathBuf::new(),
        kube: false,
        namespace: None,
        status_dir: None,
        state: PathBuf::from("operator-state.redb"),
        poll: Duration::from_millis(500),
        inspection: InspectionMode::Agent,
        until_settled: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--conductor" => conductor = Some(value()?),
            "--manifests" => manifests = Some(PathBuf::from(value()?)),
            "--state" => cli.state = PathBuf::from(value()?),
            "--poll-ms" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("--poll-ms needs milliseconds, not {v:?}"))?;
                cli.poll = Duration::from_millis(ms.max(1));
            }
            "--until-settled" => cli.until_settled = true,
            "--kube" if cfg!(feature = "kube") => cli.kube = true,
            "--kube" => return Err("--kube needs the operator built with --features kube".into()),
            "--namespace" => cli.namespace = Some(value()?),
            "--status-dir" => cli.status_dir = Some(PathBuf::from(value()?)),
            "--inspection" => {
                cli.inspection = match value()?.as_str() {
                    "agent" => InspectionMode::Agent,
                    "fast" => InspectionMode::Fast,
                    "disabled" => InspectionMode::Disabled,
                    other => {
                        return Err(format!(
                            "--inspection: agent, fast or disabled, not {other:?}"
                        ));
                    }
                }
            }
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    cli.conductor = conductor.ok_or_else(|| format!("--conductor is required\n{USAGE}"))?;
    match manifests {
        Some(m) => cli.manifests = m,
        None if cli.kube => {}
        None => return Err(format!("--manifests (or --kube) is required\n{USAGE}")),
    }
    Ok(cli)
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
        let mut status = status_json(record);
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
            "status": status_json(record),
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
            r.host.error.is_some()
                || matches!(
                    r.host.state.kind(),
                    HostStateKind::Provisioned
                        | HostStateKind::Available
                        | HostStateKind::ExternallyProvisioned
                )
        })
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let manifests = if cli.kube {
        Ok(Manifests::default())
    } else {
        Manifests::load_dir(&cli.manifests)
    };
    let manifests = match manifests {
        Ok(m) => m,
        Err(e) => {
            eprintln!("operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match Store::open(&cli.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conductor: Arc<dyn ConductorApi> = Arc::new(HttpConductor::new(&cli.conductor));
    let config = OperatorConfig {
        poll: cli.poll,
        inspection: cli.inspection,
        ..OperatorConfig::default()
    };
    let operator = match Operator::open(conductor, store, config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = operator.apply(&manifests) {
        eprintln!("operator: {e}");
        return ExitCode::FAILURE;
    }
    #[cfg(feature = "kube")]
    if cli.kube {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("operator: no Kubernetes cluster: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = metal3_operator::kube_controller::run(client, operator.clone(), cli.namespace.as_deref()) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        operator.stop().await;
        return ExitCode::SUCCESS;
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
                eprintln!("operator: {e}");
                return ExitCode::FAILURE;
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
        .map(|(k, r)| (k.clone(), status_json(r)))
        .collect();
    match serde_json::to_string_pretty(&statuses) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("operator: {e}"),
    }
    operator.stop().await;
    ExitCode::SUCCESS
}
