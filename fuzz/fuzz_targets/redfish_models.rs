//! Every Redfish model over arbitrary JSON: no panics, whatever the BMC sends.
#![no_main]

use bmc_redfish::model::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = ServiceRoot::from_json(&v);
    let _ = Collection::from_json(&v);
    let _ = ComputerSystem::from_json(&v);
    let _ = Manager::from_json(&v);
    let _ = VirtualMedia::from_json(&v).map(|m| (m.takes_cd(), m.takes_usb(), m.is_inserted()));
    let _ = ActionInfo::from_json(&v).map(|a| a.allowable("ResetType"));
    let _ = EthernetInterface::from_json(&v);
    let _ = Processor::from_json(&v);
    let _ = Memory::from_json(&v);
    let _ = Storage::from_json(&v);
    let _ = Drive::from_json(&v);
    let _ = SimpleStorage::from_json(&v);
    let _ = SessionService::from_json(&v);
    let _ = Task::from_json(&v).map(|t| t.succeeded());
    let _ = ErrorBody::from_json(&v).map(|e| e.all_messages());
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = bmc_redfish::path::normalize(s);
        let _ = bmc_redfish::path::identity(s);
    }
});
