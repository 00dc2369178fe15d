//! IPMI: the chassis and application answers the driver decodes (chassis status, boot
//! flags, device id, system GUID), over arbitrary bytes; boot flags that decode must
//! encode back to the same flags.
#![no_main]

use bmc_ipmi::codec::chassis::{BootFlags, ChassisStatus, DeviceId, decode_guid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ChassisStatus::decode(data);
    if let Ok(id) = DeviceId::decode(data) {
        let _ = id.firmware();
    }
    if let Ok(uuid) = decode_guid(data) {
        assert_eq!(uuid.len(), 36);
    }
    if let Ok(flags) = BootFlags::decode(data) {
        let request = flags.encode();
        // The answer to reading them back echoes version and parameter first.
        let answer = [0x01, request[0], request[1], request[2]];
        assert_eq!(BootFlags::decode(&answer), Ok(flags));
    }
});
