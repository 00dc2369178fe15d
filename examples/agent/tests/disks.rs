//! Partition tables and erasing checked by the tools that own them: tables made by
//! `sfdisk`, file systems by `mkfs.ext4` and `mkswap`, the result read by `sgdisk -v`,
//! `sfdisk --json`, `blkid` and `wipefs`, on disk files laid out as an image leaves them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use metal3_agent::configdrive::{ConfigFiles, fat_image};
use metal3_agent::erase::erase_metadata;
use metal3_agent::partition::{Table, add_partition_at_end, read_table};
use test_peers::{tool, tool_ok};

const MIB: u64 = 1 << 20;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("agent-disks")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A disk file of `size` bytes holding an "image" of `image` bytes partitioned by sfdisk
/// with `script`: the table's backup (GPT) sits at the image's end, as after `dd`.
fn imaged_disk(d: &Path, label: &str, image: u64, size: u64, script: &str) -> PathBuf {
    let img = d.join("image.raw");
    std::fs::File::create(&img).unwrap().set_len(image).unwrap();
    tool_ok(
        "sfdisk",
        &["--quiet", img.to_str().unwrap()],
        Some(&format!("label: {label}\n{script}")),
    );
    let disk = d.join("disk.raw");
    std::fs::copy(&img, &disk).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(size)
        .unwrap();
    disk
}

fn open(p: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap()
}

fn sfdisk_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&tool_ok("sfdisk", &["--json", p.to_str().unwrap()], None)).unwrap()
}

#[test]
fn the_config_drive_partition_goes_at_the_end_of_a_gpt_disk_with_its_backup_moved() {
    let d = dir("gpt");
    let disk = imaged_disk(
        &d,
        "gpt",
        40 * MIB,
        200 * MIB,
        "start=2048, size=16MiB, type=uefi\nsize=20MiB, type=linux\n",
    );
    let p = disk.to_str().unwrap();
    // Before: sgdisk sees the backup table in the wrong place.
    let (_, before) = tool("sgdisk", &["-v", p], None);
    assert!(!before.contains("No problems found"), "{before}");

    let mut file = open(&disk);
    let part = add_partition_at_end(&mut file, 512, 64 * MIB, "config-2").unwrap();
    assert_eq!(part.number, 3);
    assert_eq!(part.start % MIB, 0);
    assert_eq!(
        part.start + part.len,
        199 * MIB,
        "the last MiB holds the backup table"
    );
    assert_eq!(part.len, 64 * MIB);
    let (clean, after) = tool("sgdisk", &["-v", p], None);
    assert!(clean && after.contains("No problems found"), "{after}");
    let json = sfdisk_json(&disk);
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{json}");
    assert_eq!(parts[2]["start"].as_u64(), Some(part.start / 512));
    assert_eq!(parts[2]["name"].as_str(), Some("config-2"));
    assert_eq!(
        parts[0]["size"].as_u64(),
        Some(16 * MIB / 512),
        "the image's partitions kept"
    );

    // The config drive written into it is found there by label.
    let image = fat_image(
        &ConfigFiles::new().with("openstack/latest/meta_data.json", b"{}".to_vec()),
        "config-2",
    )
    .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &image, part.start).unwrap();
    let probe = tool_ok(
        "blkid",
        &["-p", "-o", "export", "-O", &part.start.to_string(), p],
        None,
    );
    assert!(
        probe.contains("LABEL=config-2") && probe.contains("TYPE=vfat"),
        "{probe}"
    );

    // Our reader agrees with sfdisk, and a second partition still fits.
    let Table::Gpt(gpt) = read_table(&file, 512).unwrap() else {
        unreachable!()
    };
    assert_eq!(gpt.partitions().len(), 3);
    assert_eq!(gpt.backup_lba(), 200 * MIB / 512 - 1);
    let err = add_partition_at_end(&mut file, 512, 200 * MIB, "too-big").unwrap_err();
    assert!(err.to_string().contains("no 209715200 bytes free"), "{err}");
}

#[test]
fn the_config_drive_partition_takes_a_free_mbr_slot_and_a_tableless_image_is_refused() {
    let d = dir("mbr");
    let disk = imaged_disk(
        &d,
        "dos",
        40 * MIB,
        120 * MIB,
        "start=2048, size=30MiB, type=83, bootable\n",
    );
    let mut file = open(&disk);
    let part = add_partition_at_end(&mut file, 512, 64 * MIB, "config-2").unwrap();
    assert_eq!(part.number, 2);
    assert_eq!(part.start + part.len, 120 * MIB);
    let json = sfdisk_json(&disk);
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{json}");
    assert_eq!(parts[1]["start"].as_u64(), Some(part.start / 512));
    assert_eq!(parts[1]["type"].as_str(), Some("83"));
    assert_eq!(parts[0]["bootable"].as_bool(), Some(true));

    let blank = d.join("blank.raw");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(10 * MIB)
        .unwrap();
    let err = add_partition_at_end(&mut open(&blank), 512, MIB, "config-2").unwrap_err();
    assert!(err.to_string().contains("no partition table"), "{err}");
}

#[test]
fn erasing_metadata_leaves_nothing_for_blkid_wipefs_or_sfdisk_to_find() {
    let d = dir("erase");
    let disk = imaged_disk(
        &d,
        "gpt",
        300 * MIB,
        300 * MIB,
        "start=2048, size=150MiB, type=linux\nsize=64MiB, type=swap\n",
    );
    let p = disk.to_str().unwrap();
    let json = sfdisk_json(&disk);
    let parts = json["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    let p1 = parts[0]["start"].as_u64().unwrap() * 512;
    let p2 = parts[1]["start"].as_u64().unwrap() * 512;
    tool_ok(
        "mkfs.ext4",
        &["-q", "-F", "-E", &format!("offset={p1}"), p, "150M"],
        None,
    );
    // mkswap on the partition's bytes, copied in (it has no offset option).
    let swap = d.join("swap.raw");
    std::fs::File::create(&swap)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    tool_ok("mkswap", &[swap.to_str().unwrap()], None);
    let bytes = std::fs::read(&swap).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&open(&disk), &bytes, p2).unwrap();
    // Before: every signature is there to be found.
    assert!(tool_ok("wipefs", &["-n", p], None).contains("gpt"));
    assert!(tool_ok("blkid", &["-p", "-O", &p1.to_string(), p], None).contains("ext4"));
    assert!(tool_ok("blkid", &["-p", "-O", &p2.to_string(), p], None).contains("swap"));

    let erased = erase_metadata(&mut open(&disk), 512).unwrap();
    assert_eq!(erased.partitions, 2);
    println!("erased {:?}", erased.ranges);

    assert_eq!(
        tool_ok("wipefs", &["-n", p], None).trim(),
        "",
        "no signature on the disk"
    );
    for offset in [p1, p2] {
        let (found, text) = tool("blkid", &["-p", "-O", &offset.to_string(), p], None);
        assert!(!found, "a signature is left at {offset}: {text}");
    }
    let (has_table, text) = tool("sfdisk", &["--json", p], None);
    assert!(!has_table || !text.contains("partitions"), "{text}");
    // The data between the signatures is left as it was (metadata cleaning, not a wipe).
    assert_eq!(read_table(&open(&disk), 512).unwrap(), Table::None);
    let total: u64 = erased.ranges.iter().map(|r| r.end - r.start).sum();
    assert!(total < 10 * MIB, "{total} bytes zeroed");
}
