//! Config images as ISO9660, made by xorriso the way Ironic makes them (Joliet and Rock
//! Ridge, label config-2), and with Rock Ridge only: every file read back by its long name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use metal3_agent::config::{find_config_devices, read_config_image};

fn make(dir: &Path, name: &str, options: &[&str], label: &str) -> std::path::PathBuf {
    let tree = dir.join("tree");
    let latest = tree.join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    std::fs::write(latest.join("meta_data.json"), br#"{"uuid":"u-1"}"#).unwrap();
    std::fs::write(latest.join("network_data.json"), br#"{"links":[]}"#).unwrap();
    std::fs::create_dir_all(tree.join("metal3")).unwrap();
    std::fs::write(
        tree.join("metal3/agent.json"),
        br#"{"conductor_url":"http://192.0.2.1:6385"}"#,
    )
    .unwrap();
    let iso = dir.join(name);
    test_peers::iso_from_tree(&tree, &iso, label, options);
    iso
}

#[test]
fn iso9660_config_images_read_with_their_long_names() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-iso-config");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, options) in [
        ("joliet-rr.iso", &["-J", "-r"][..]),
        ("rr.iso", &["-r"][..]),
    ] {
        let iso = make(&dir, name, options, "config-2");
        let files = read_config_image(&iso).unwrap_or_else(|e| panic!("{name}: {e}"));
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "metal3/agent.json",
                "openstack/latest/meta_data.json",
                "openstack/latest/network_data.json"
            ],
            "{name}"
        );
        assert_eq!(
            files["openstack/latest/meta_data.json"], br#"{"uuid":"u-1"}"#,
            "{name}"
        );
    }
    // Found among the block devices by its label, beside a disk that is not one.
    let root = dir.join("host");
    let _ = std::fs::remove_dir_all(&root);
    for dev in ["sda", "sr1"] {
        std::fs::create_dir_all(root.join("sys/block").join(dev)).unwrap();
    }
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev/sda"), vec![0u8; 1 << 20]).unwrap();
    std::fs::copy(dir.join("rr.iso"), root.join("dev/sr1")).unwrap();
    assert_eq!(
        find_config_devices(&root, &root.join("dev")),
        [root.join("dev/sr1")]
    );

    let other = make(&dir, "other.iso", &["-J", "-r"], "OTHER");
    let err = read_config_image(&other).unwrap_err();
    assert!(err.contains("\"OTHER\""), "{err}");
}

/// The shared agent ISO's config-image slot: empty as built (no configuration from it),
/// filled by the conductor for a one-slot BMC (the host's configuration).
#[test]
fn the_booted_isos_slot_configures_the_agent_only_when_filled() {
    use metal3_agent::config::find_iso_slot;
    use metal3_agent::configdrive::{ConfigFiles, fat_image};
    use metal3_agent_protocol::config_image::{iso_slot_contents, iso_slot_placeholder};

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-iso-slot");
    let _ = std::fs::remove_dir_all(&dir);
    let (root, dev) = (dir.join("root"), dir.join("dev"));
    std::fs::create_dir_all(root.join("sys/block/sr0")).unwrap();
    std::fs::create_dir_all(&dev).unwrap();
    let iso = |slot: Vec<u8>| {
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("metal3")).unwrap();
        std::fs::write(tree.join("metal3/config.img"), slot).unwrap();
        test_peers::iso_from_tree(&tree, &dev.join("sr0"), "METAL3_AGENT", &["-J", "-r"]);
        let size = std::fs::metadata(dev.join("sr0")).unwrap().len();
        std::fs::write(root.join("sys/block/sr0/size"), format!("{}\n", size / 512)).unwrap();
    };
    iso(iso_slot_placeholder());
    assert!(find_iso_slot(&root, &dev).is_none());

    let files = ConfigFiles::new().with(
        "metal3/agent.json",
        br#"{"conductor_url":"http://192.0.2.1:6386"}"#.to_vec(),
    );
    iso(iso_slot_contents(&fat_image(&files, "config-2").unwrap()).unwrap());
    let (device, found) = find_iso_slot(&root, &dev).unwrap();
    assert_eq!(device, dev.join("sr0"));
    assert_eq!(found, files.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
