//! `bmcctl`'s command line as a user meets it, on a bmc-sim Redfish BMC: help and usage
//! errors, the password from a file, human tables, and `watch power` seeing a change
//! made meanwhile.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};

fn bmcctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmcctl"))
        .args(args)
        .env_remove("BMC_PASSWORD")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_names_every_command_and_usage_errors_exit_2() {
    let out = bmcctl(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for word in [
        "power",
        "boot",
        "media",
        "inventory",
        "info",
        "watch",
        "--password-file",
        "--json",
    ] {
        assert!(help.contains(word), "{word} missing:\n{help}");
    }
    let out = bmcctl(&["redfish://192.0.2.1", "power", "sideways"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("sideways"));
    let out = bmcctl(&["--completions", "zsh"]);
    assert!(out.status.success() && text(&out).contains("watch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_a_password_file_and_watching_power() {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/redfish/dmtf-public-rackmount1"),
        ),
        credentials: Some(("admin".into(), "from-a-file".into())),
        power_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("bmcctl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "from-a-file\n").unwrap();
    let password = password.to_str().unwrap().to_string();
    let address = format!(
        "redfish-virtualmedia+{}/redfish/v1/Systems/437XR1138R2",
        sim.url()
    );
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bmcctl(&args)
        })
    };
    let with = |rest: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--password-file".to_string(),
            password.clone(),
            address.clone(),
        ];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    // Without the password anywhere: a clear error, status 1.
    let out = run(vec![address.clone(), "info".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("BMC_PASSWORD"), "{}", text(&out));

    let out = run(with(&["power", "off"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = run(with(&["media", "status"])).await.unwrap();
    let media = text(&out);
    assert!(out.status.success(), "{media}");
    let header = media.lines().next().unwrap();
    assert!(
        header.starts_with("SLOT") && header.contains("IMAGE"),
        "{media}"
    );

    let out = run(with(&["inventory"])).await.unwrap();
    let inventory = text(&out);
    assert!(out.status.success(), "{inventory}");
    assert!(
        inventory.lines().any(|l| l.starts_with("CPU ")),
        "{inventory}"
    );
    assert!(
        inventory.lines().any(|l| l.starts_with("NIC ")),
        "{inventory}"
    );

    // Watch for 3 s while the host is powered on meanwhile.
    let watch = run(with(&[
        "watch",
        "power",
        "--interval-ms",
        "50",
        "--for",
        "3",
    ]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let on = run(with(&["power", "on"])).await.unwrap();
    assert!(on.status.success(), "{}", text(&on));
    let watched = watch.await.unwrap();
    let lines = text(&watched);
    assert!(watched.status.success(), "{lines}");
    let states: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.split("power ").nth(1))
        .collect();
    assert_eq!(states.first(), Some(&"Off"), "{lines}");
    assert!(states.contains(&"On"), "{lines}");
    assert!(lines.contains("after 1 changes"), "{lines}");

    std::fs::remove_dir_all(&dir).unwrap();
    sim.stop().await;
}

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_bmcctl"),
        &[
            &["power"],
            &["boot", "set"],
            &["media", "boot"],
            &["watch", "power"],
        ],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/bmcctl-help.txt"),
    );
}
