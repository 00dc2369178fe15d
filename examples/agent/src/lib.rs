//! The example agent (the Ironic-Python-Agent's role): the program a booted host runs to
//! be inspected, cleaned and provisioned. Its parts are pure where they can be and work
//! on files as well as block devices, so each is tested on files and loop devices:
//!
//! - [`qcow2`]: a qcow2 file read as a stream into the raw disk it describes;
//! - [`image`]: an image streamed to a disk, its format checked and checksum computed;
//! - [`inspect`]: the host read from `/proc` and `/sys` into the protocol's inventory;
//! - [`configdrive`]: FAT images labelled `config-2` in the OpenStack layout;
//! - [`partition`]: MBR and GPT read, and the config drive's partition added at the end;
//! - [`erase`]: Metal3's metadata cleaning: partition tables and signatures removed;
//! - [`agent`]: the agent's life: look-up, heartbeats, and the commands carried out;
//! - [`config`]: where the agent learns its conductor (config image, kernel command line);
//! - [`network`]: static networking from `network_data.json`, so no DHCP server is needed;
//! - [`iso9660`]: ISO9660 config images (Joliet and Rock Ridge names), as Ironic builds them.
//!
//! ```
//! use metal3_agent::qcow2::Qcow2Stream;
//! let stream = Qcow2Stream::new(64 << 20);
//! assert_eq!(stream.virtual_size(), None);
//! ```

pub mod agent;
pub mod config;
pub mod configdrive;
pub mod erase;
pub mod image;
pub mod inspect;
pub mod iso9660;
pub mod network;
pub mod partition;
pub mod qcow2;
