//! DMTF's Redfish protocol validator (from PyPI) against bmc-sim, on the built-in tree and
//! on every recorded tree. Each run prints its pass, warn and fail counts; every finding
//! must be listed, with its reason, in `tests/dmtf/protocol-validator-known.txt`, and every
//! line there must still match a finding.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bmc_sim::{RedfishSim, SimConfig};
use test_peers::DmtfTools;

const USER: &str = "admin";
const PASSWORD: &str = "validator-pw-1";

fn tools() -> DmtfTools {
    DmtfTools::install(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmtf-tools"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/redfish")
}

/// `TREE RESULT ASSERTION METHOD URI` of every finding the known list names for `tree`.
fn known(tree: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dmtf/protocol-validator-known.txt"),
    )
    .unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (who, finding) = l.split_once(' ')?;
            (who == "*" || who == tree)
                .then(|| finding.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

async fn validate(tree: Option<&str>) {
    let name = tree.unwrap_or("builtin");
    let tools = tokio::task::spawn_blocking(tools).await.unwrap();
    let sim = RedfishSim::start(SimConfig {
        tree: tree.map(|t| fixtures().join(t)),
        credentials: Some((USER.into(), PASSWORD.into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("protocol-validator-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut command = tools.command("rf_protocol_validator");
    command
        .args([
            "-r",
            &sim.url(),
            "-u",
            USER,
            "-p",
            PASSWORD,
            "--no-cert-check",
        ])
        .current_dir(&work);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = stdout
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .find(|l| l.starts_with("Summary"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{name}: no summary\n{stdout}"));
    println!("protocol validator on {name}: {summary}");
    let report = std::fs::read_dir(work.join("reports"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tsv"))
        .unwrap_or_else(|| panic!("{name}: no report"));
    let text = std::fs::read_to_string(report).unwrap();
    // Assertion, method, status, URI, result, message, requirement.
    let findings: BTreeSet<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            matches!(f.get(4), Some(&"FAIL") | Some(&"WARN"))
                .then(|| format!("{} {} {} {}", f[4], f[0], f[1], f[3]))
        })
        .collect();
    let listed = known(name);
    let new: Vec<_> = findings.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&findings).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "{name}: {summary}\nnot in the known list: {new:#?}\nlisted but no longer found: {gone:#?}"
    );
    sim.stop().await;
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
