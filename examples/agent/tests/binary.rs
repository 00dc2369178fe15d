//! The `metal3-agent` binary's start: where it takes its configuration from, and the
//! clear failure when there is none or it is broken.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use metal3_agent::configdrive::{ConfigFiles, fat_image};

fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-agent"))
        .args(args)
        .env_remove("METAL3_AGENT_CONDUCTOR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn without_a_conductor_anywhere_the_agent_says_so_and_fails() {
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-bin-empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let e = empty.to_str().unwrap();
    let (code, err) = agent(&["--root", e, "--dev", e]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no conductor"), "{err}");

    let image = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-bin-broken.img");
    let files = ConfigFiles::new().with("metal3/agent.json", b"{\"conductor\":".to_vec());
    std::fs::write(&image, fat_image(&files, "config-2").unwrap()).unwrap();
    let (code, err) = agent(&["--root", e, "--config-image", image.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("metal3/agent.json"), "{err}");

    let (code, _) = agent(&["--no-such-flag"]);
    assert_eq!(code, 2);
}
