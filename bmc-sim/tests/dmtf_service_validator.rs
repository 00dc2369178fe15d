//! DMTF's Redfish service validator (from PyPI) against bmc-sim: every resource the
//! service links to is read and checked against DMTF's CSDL schemas, on the built-in tree
//! and on every recorded tree. The schemas come from crates.io (`nv-redfish-schema`
//! bundles DMTF's CSDL files; DMTF's own site is not reachable here). Each run prints its
//! counts; findings are grouped by kind (result, error class, property) and every group
//! must be listed with its count and reason in `tests/dmtf/service-validator-known.txt`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bmc_sim::{RedfishSim, SimConfig};
use test_peers::DmtfTools;

const USER: &str = "admin";
const PASSWORD: &str = "validator-pw-2";

fn tmp() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf()
}

fn tools() -> (DmtfTools, PathBuf) {
    let tools = DmtfTools::install(&tmp().join("dmtf-tools"));
    let schemas = test_peers::redfish_csdl_schemas(&tmp().join("redfish-csdl"));
    (tools, schemas)
}

/// The kind of a finding: `FAIL Required Property Error`, `WARN Deprecated Property
/// Warning`, `FAIL Resource Error HTTP 404`.
fn kind(result: &str, text: &str) -> String {
    // `/Prop (value): Class Error: explanation`, or `Class Error: explanation`.
    let explained = text.split_once("): ").map_or(text, |(_, rest)| rest).trim();
    let (class, explanation) = explained.split_once(':').unwrap_or((explained, ""));
    let status = explanation
        .split("HTTP ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(|s| format!(" HTTP {s}"))
        .unwrap_or_default();
    format!("{result} {}{status}", class.trim())
}

fn known(tree: &str) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dmtf/service-validator-known.txt"),
    )
    .unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut words = l.splitn(3, ' ');
            let (who, count, kind) = (words.next()?, words.next()?, words.next()?);
            (who == tree).then(|| (kind.trim().to_string(), count.parse().unwrap()))
        })
        .collect()
}

async fn validate(tree: Option<&str>) {
    let name = tree.unwrap_or("builtin");
    let (tools, schemas) = tokio::task::spawn_blocking(tools).await.unwrap();
    let sim = RedfishSim::start(SimConfig {
        tree: tree.map(|t| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/redfish")
                .join(t)
        }),
        credentials: Some((USER.into(), PASSWORD.into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let logs = tmp().join(format!("service-validator-{name}"));
    let _ = std::fs::remove_dir_all(&logs);
    let mut command = tools.command("rf_service_validator");
    command
        .args(["-u", USER, "-p", PASSWORD, "-r", &sim.url(), "--skipschema"])
        .arg("--schema_directory")
        .arg(&schemas)
        .arg("--logdir")
        .arg(&logs);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // The summary table: `|  PASS  |  WARN  |  FAIL  |  NOT TESTED  |` and its numbers.
    let counts = stdout
        .lines()
        .skip_while(|l| !l.contains("NOT TESTED"))
        .nth(2)
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|| panic!("{name}: no summary\n{stdout}"));
    println!("service validator on {name}: PASS/WARN/FAIL/NOT TESTED {counts}");
    let log = walk(&logs)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("Debug"))
        .unwrap_or_else(|| panic!("{name}: no debug log in {}", logs.display()));
    let text = std::fs::read_to_string(log).unwrap();
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let mut missing = Vec::new();
    for line in text.lines() {
        // A URI the validator could not read must be one the recording does not have (or
        // has as the BMC's error answer): a 404 for a recorded resource would be the
        // simulator refusing a spelling the BMC answered.
        if let Some((_, uri)) = line.split_once("Could not access ") {
            if let Some((uri, status)) = uri.split_once("; HTTP status: ") {
                // (A recorded error body is the BMC's own 404.)
                let recorded = sim.resource(uri).is_some_and(|v| v.get("error").is_none());
                if status.trim() == "404" && recorded {
                    missing.push(uri.to_string());
                }
            }
        }
        for (marker, result) in [
            (" - ERROR - FAIL - ", "FAIL"),
            (" - WARNING - WARN - ", "WARN"),
        ] {
            if let Some((_, rest)) = line.split_once(marker) {
                *found.entry(kind(result, rest)).or_default() += 1;
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{name}: recorded resources answered 404: {missing:#?}"
    );
    let listed = known(name);
    let differ: Vec<String> = found
        .keys()
        .chain(listed.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| found.get(*k) != listed.get(*k))
        .map(|k| format!("{name} {} {k}", found.get(k).copied().unwrap_or(0)))
        .collect();
    assert!(
        differ.is_empty(),
        "{name}: findings that differ from the known list (found counts):\n{}",
        differ.join("\n")
    );
    sim.stop().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_tree() {
    validate(None).await
}

macro_rules! recorded {
    ($($name:ident => $tree:expr),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            validate(Some($tree)).await
        }
    )*};
}

recorded!(
    dmtf => "dmtf-public-rackmount1",
    dell => "dell-poweredge-r750-idrac9-fw6.00.30.00",
    hpe => "hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72",
    lenovo => "lenovo-thinksystem-sr670v2-xcc-fw2.83",
    supermicro => "supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01"
);
