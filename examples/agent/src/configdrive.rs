//! Config drives and config images: small FAT file systems labelled `config-2` in the
//! OpenStack layout cloud-init and the agent read (`openstack/latest/meta_data.json`,
//! `user_data`, `network_data.json`). The same builder makes the config drive the agent
//! writes after the image and the per-host config image the agent boots with.
//!
//! ```
//! use metal3_agent::configdrive::{ConfigFiles, fat_image, read_fat_image};
//! let files = ConfigFiles::new().with("openstack/latest/meta_data.json", b"{}".to_vec());
//! let image = fat_image(&files, "config-2").unwrap();
//! assert_eq!(read_fat_image(&image).unwrap().get("openstack/latest/meta_data.json").map(Vec::as_slice), Some(&b"{}"[..]));
//! ```

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read};

pub use metal3_agent_protocol::config_image::{ConfigFiles, LABEL, fat_image};

/// Every file of a FAT image, by path, and its label must be `config-2` (either case).
pub fn read_fat_image(image: &[u8]) -> io::Result<BTreeMap<String, Vec<u8>>> {
    // fatfs opens read-write only: read a copy (a config image is a few KiB).
    let mut copy = image.to_vec();
    let fs = fatfs::FileSystem::new(Cursor::new(&mut copy), fatfs::FsOptions::new())?;
    if !fs.volume_label().trim().eq_ignore_ascii_case(LABEL) {
        return Err(io::Error::other(format!(
            "the FAT volume is labelled {:?}, not {LABEL}",
            fs.volume_label().trim()
        )));
    }
    let mut files = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                stack.push((format!("{path}/"), entry.to_dir()));
            } else {
                let mut data = Vec::new();
                entry.to_file().read_to_end(&mut data)?;
                files.insert(path, data);
            }
        }
    }
    Ok(files)
}
