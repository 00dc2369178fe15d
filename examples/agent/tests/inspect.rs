//! Inspection of a fake `/proc` + `/sys` tree laid out as a two-socket server's (SATA SSD
//! behind a SAS HBA, NVMe, a virtio disk, loop and RAM devices, a bond and a VLAN beside
//! two physical NICs), and of this machine's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use metal3_agent::inspect::{InspectOptions, addresses_from_ip, inspect, inspect_with};
use metal3_agent_protocol::RootDeviceHints;

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

fn fake_server() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-fake-sysfs");
    let _ = std::fs::remove_dir_all(&root);
    let mut cpuinfo = String::new();
    for n in 0..4 {
        cpuinfo.push_str(&format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: fpu vmx avx2 aes\n\n"
        ));
    }
    put(&root, "proc/cpuinfo", &cpuinfo);
    put(
        &root,
        "proc/meminfo",
        "MemTotal:       16318480 kB\nMemFree:  1000 kB\n",
    );
    put(
        &root,
        "sys/devices/system/memory/block_size_bytes",
        "8000000\n",
    );
    for n in 0..128 {
        put(
            &root,
            &format!("sys/devices/system/memory/memory{n}/online"),
            "1\n",
        );
    }
    put(&root, "sys/devices/system/memory/memory128/online", "0\n");
    put(&root, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
    put(&root, "sys/class/dmi/id/product_name", "PowerEdge R750\n");
    put(&root, "sys/class/dmi/id/product_serial", "7XR1138\n");
    std::fs::create_dir_all(root.join("sys/firmware/efi/efivars")).unwrap();

    // NICs: two physical, plus lo, a bond and a VLAN (no `device`).
    for (name, mac, driver, speed, carrier) in [
        ("eno1", "b0:7b:25:00:00:01", "bnxt_en", "25000", "1"),
        ("eno2", "b0:7b:25:00:00:02", "bnxt_en", "-1", "0"),
    ] {
        put(
            &root,
            &format!("sys/class/net/{name}/address"),
            &format!("{mac}\n"),
        );
        put(&root, &format!("sys/class/net/{name}/speed"), speed);
        put(&root, &format!("sys/class/net/{name}/carrier"), carrier);
        std::fs::create_dir_all(root.join(format!("sys/bus/pci/drivers/{driver}"))).unwrap();
        std::fs::create_dir_all(root.join(format!("sys/devices/pci/{name}"))).unwrap();
        link(
            &root,
            &format!("sys/class/net/{name}/device"),
            &root
                .join(format!("sys/devices/pci/{name}"))
                .to_string_lossy(),
        );
        link(
            &root,
            &format!("sys/devices/pci/{name}/driver"),
            &root
                .join(format!("sys/bus/pci/drivers/{driver}"))
                .to_string_lossy(),
        );
    }
    for virtual_if in ["lo", "bond0", "eno1.100"] {
        put(
            &root,
            &format!("sys/class/net/{virtual_if}/address"),
            "00:00:00:00:00:00\n",
        );
    }

    // Disks.
    let scsi = root.join("sys/devices/pci/host0/target0:0:1/0:0:1:0");
    std::fs::create_dir_all(&scsi).unwrap();
    put(
        &root,
        "sys/devices/pci/host0/target0:0:1/0:0:1:0/model",
        "MZ7LH480HAHQ0D3 \n",
    );
    put(
        &root,
        "sys/devices/pci/host0/target0:0:1/0:0:1:0/vendor",
        "ATA     \n",
    );
    put(
        &root,
        "sys/devices/pci/host0/target0:0:1/0:0:1:0/wwid",
        "naa.5002538E40A1B2C3\n",
    );
    let mut vpd = vec![0u8, 0x80, 0, 12];
    vpd.extend_from_slice(b"S45NNE0M1234");
    std::fs::write(scsi.join("vpd_pg80"), vpd).unwrap();
    link(&root, "sys/block/sda/device", &scsi.to_string_lossy());
    put(&root, "sys/block/sda/size", "937703088\n");
    put(&root, "sys/block/sda/queue/rotational", "0\n");
    std::fs::create_dir_all(root.join("sys/devices/pci/nvme0")).unwrap();
    put(
        &root,
        "sys/devices/pci/nvme0/model",
        "Dell Ent NVMe P5600 MU U.2 1.6TB\n",
    );
    put(&root, "sys/devices/pci/nvme0/serial", "PHAB1234\n");
    link(
        &root,
        "sys/block/nvme0n1/device",
        &root.join("sys/devices/pci/nvme0").to_string_lossy(),
    );
    put(&root, "sys/block/nvme0n1/size", "3125627568\n");
    put(&root, "sys/block/nvme0n1/wwid", "eui.0025388b91b2c3d4\n");
    put(&root, "sys/block/nvme0n1/queue/rotational", "0\n");
    put(&root, "sys/block/vda/size", "41943040\n");
    put(&root, "sys/block/vda/queue/rotational", "1\n");
    put(&root, "sys/block/loop0/size", "2097152\n");
    put(&root, "sys/block/loop1/size", "0\n");
    put(&root, "sys/block/ram0/size", "8192\n");
    put(&root, "sys/block/sr0/size", "2097152\n");
    link(
        &root,
        "dev/disk/by-path/pci-0000:18:00.0-sas-phy1-lun-0",
        "../../sda",
    );
    link(
        &root,
        "dev/disk/by-path/pci-0000:65:00.0-nvme-1",
        "../../nvme0n1",
    );
    root
}

#[test]
fn a_fake_server_tree_reads_into_the_inventory_metal3_shows() {
    let root = fake_server();
    let addresses = addresses_from_ip(
        "2: eno1    inet 192.0.2.10/24 brd 192.0.2.255 scope global eno1\\   valid_lft forever\n",
    );
    let inv = inspect_with(&root, &InspectOptions::default(), &addresses);
    assert_eq!(inv.system_vendor.manufacturer.as_deref(), Some("Dell Inc."));
    assert_eq!(
        inv.system_vendor.product_name.as_deref(),
        Some("PowerEdge R750")
    );
    assert_eq!(inv.system_vendor.serial_number.as_deref(), Some("7XR1138"));
    assert_eq!(inv.cpu.count, Some(4));
    assert_eq!(
        inv.cpu.model_name.as_deref(),
        Some("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
    );
    assert!(inv.cpu.flags.iter().any(|f| f == "vmx"));
    // 128 online blocks of 128 MiB: 16 GiB, more than MemTotal shows.
    assert_eq!(inv.memory.physical_mb, Some(16384));
    assert_eq!(inv.memory.total, Some(16_318_480 * 1024));
    assert_eq!(inv.boot.current_boot_mode.as_deref(), Some("uefi"));

    let nics: Vec<&str> = inv.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(nics, ["eno1", "eno2"]);
    let eno1 = &inv.interfaces[0];
    assert_eq!(eno1.mac_address.as_deref(), Some("b0:7b:25:00:00:01"));
    assert_eq!(eno1.speed_mbps, Some(25000));
    assert_eq!(eno1.has_carrier, Some(true));
    assert_eq!(eno1.driver.as_deref(), Some("bnxt_en"));
    assert_eq!(eno1.ipv4_address.as_deref(), Some("192.0.2.10"));
    assert_eq!(
        inv.interfaces[1].speed_mbps, None,
        "a down link's -1 is no speed"
    );
    assert_eq!(inv.interfaces[1].has_carrier, Some(false));

    let disks: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(disks, ["/dev/nvme0n1", "/dev/sda", "/dev/vda"]);
    let sda = &inv.disks[1];
    assert_eq!(sda.size, Some(937_703_088 * 512));
    assert_eq!(sda.model.as_deref(), Some("MZ7LH480HAHQ0D3"));
    assert_eq!(sda.vendor.as_deref(), Some("ATA"));
    assert_eq!(sda.serial.as_deref(), Some("S45NNE0M1234"));
    assert_eq!(sda.wwn.as_deref(), Some("0x5002538e40a1b2c3"));
    assert_eq!(sda.hctl.as_deref(), Some("0:0:1:0"));
    assert_eq!(sda.rotational, Some(false));
    assert_eq!(
        sda.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:18:00.0-sas-phy1-lun-0")
    );
    let nvme = &inv.disks[0];
    assert_eq!(nvme.serial.as_deref(), Some("PHAB1234"));
    assert_eq!(nvme.hctl, None);
    assert_eq!(inv.disks[2].rotational, Some(true));

    // What the hints then choose from it.
    let hints: RootDeviceHints =
        serde_json::from_value(serde_json::json!({"hctl": "0:0:1:0"})).unwrap();
    assert_eq!(hints.choose(&inv.disks).unwrap().name, "/dev/sda");
    assert_eq!(
        RootDeviceHints::default().choose(&inv.disks).unwrap().name,
        "/dev/vda"
    );

    // Loop devices count only when asked, and never an unbound one.
    let with_loops = inspect(&root, &InspectOptions { loop_devices: true });
    let names: Vec<&str> = with_loops.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["/dev/loop0", "/dev/nvme0n1", "/dev/sda", "/dev/vda"]
    );

    // A host without the files says nothing rather than something wrong.
    std::fs::remove_dir_all(root.join("sys/firmware")).unwrap();
    assert_eq!(
        inspect(&root, &InspectOptions::default())
            .boot
            .current_boot_mode
            .as_deref(),
        Some("bios")
    );
}

#[test]
fn this_machine_inspects_to_what_its_kernel_says() {
    let inv = inspect(Path::new("/"), &InspectOptions::default());
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count() as u32;
    assert_eq!(inv.cpu.count, Some(cpus));
    assert!(inv.memory.total.unwrap() > 0);
    assert!(inv.memory.physical_mb.unwrap() << 20 >= inv.memory.total.unwrap() - (1 << 20));
    assert!(
        inv.disks
            .iter()
            .all(|d| d.size.unwrap() > 0 && !d.name.starts_with("/dev/loop"))
    );
}
