//! Config drives and config images checked by the tools the host side uses: `blkid`
//! sees a `vfat` file system labelled `config-2` (what cloud-init looks for),
//! `fsck.vfat` finds nothing to repair, and mtools (a FAT reader we did not write) and
//! fatfs read back every file by its long name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use metal3_agent::configdrive::{ConfigFiles, fat_image, read_fat_image};
use metal3_agent_protocol::ConfigDrive;
use test_peers::tool_ok;

#[test]
fn a_config_drive_is_a_vfat_volume_labelled_config_2_that_fsck_accepts() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-configdrive");
    std::fs::create_dir_all(&dir).unwrap();
    let drive = ConfigDrive {
        user_data: Some("#cloud-config\nhostname: worker-0\n".into()),
        network_data: Some(
            serde_json::json!({"links": [{"id": "eno1", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:01"}], "networks": [], "services": []}),
        ),
        meta_data: serde_json::json!({"uuid": "3f1c…", "name": "worker-0"}),
    };
    let files = ConfigFiles::from_config_drive(&drive);
    let image = fat_image(&files, "config-2").unwrap();
    let path = dir.join("config-2.img");
    std::fs::write(&path, &image).unwrap();
    println!("config drive: {} bytes", image.len());
    let p = path.to_str().unwrap();
    let probe = tool_ok("blkid", &["-p", "-o", "export", p], None);
    assert!(probe.contains("TYPE=vfat"), "{probe}");
    assert!(probe.contains("LABEL=config-2"), "{probe}");
    tool_ok("fsck.vfat", &["-n", p], None);
    let back = read_fat_image(&image).unwrap();
    assert_eq!(back, files.0);
    assert_eq!(
        back["openstack/latest/user_data"],
        b"#cloud-config\nhostname: worker-0\n"
    );
    assert!(
        image.len() <= 128 << 10,
        "a config image stays small: {}",
        image.len()
    );
    // Another label is refused when read as a config drive.
    let other = fat_image(&files, "OTHER").unwrap();
    assert!(
        read_fat_image(&other)
            .unwrap_err()
            .to_string()
            .contains("OTHER")
    );
}
