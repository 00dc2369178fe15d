//! BMC address parsing: never panics, and every accepted address's canonical form parses
//! back to the same address.
#![no_main]

use bmc_core::BmcAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = BmcAddress::parse(input) {
        let shown = address.to_string();
        let again = BmcAddress::parse(&shown)
            .unwrap_or_else(|e| panic!("{input:?} -> {shown:?} no longer parses: {e}"));
        assert_eq!(again, address, "{input:?} -> {shown:?}");
        // Accessors used by drivers must not panic either.
        let _ = (address.redfish_endpoint(), address.redfish_system_id());
        let _ = (address.ipmi_port(), address.ipmi_privilege_level(), address.path());
    }
});
