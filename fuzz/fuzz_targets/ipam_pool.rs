//! IPAM: arbitrary specs are validated without panics; on a valid pool, arbitrary
//! claim/release/request/restore sequences never hand out an address twice and restore
//! exactly.
#![no_main]

use std::collections::HashSet;
use std::net::IpAddr;

use ipam::{IpPool, IpPoolSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, Vec<(u8, u8, u16)>)| {
    let (spec_json, ops) = input;
    let Ok(spec) = serde_json::from_str::<IpPoolSpec>(spec_json) else {
        return;
    };
    let Ok(mut pool) = IpPool::new(&spec) else {
        return;
    };
    let pre: HashSet<IpAddr> = spec.pre_allocations.values().copied().collect();
    for (op, claim, n) in ops.into_iter().take(256) {
        let name = format!("c{}", claim % 32);
        match op % 4 {
            0 => {
                let _ = pool.claim(&name);
            }
            1 => {
                let _ = pool.release(&name);
            }
            2 => {
                // Request an address near a pre-allocated or held one.
                let base = pool.allocations().next().map(|(_, a)| a).or(pre.iter().next().copied());
                if let Some(IpAddr::V4(a)) = base {
                    let v = u32::from(a).wrapping_add(u32::from(n) % 64);
                    let _ = pool.claim_address(&name, IpAddr::V4(v.into()));
                }
            }
            _ => {
                let state = pool.state();
                let restored = IpPool::restore(&spec, &state).expect("a pool's own state restores");
                assert!(restored == pool, "restore is exact");
                pool = restored;
            }
        }
        let held: Vec<IpAddr> = pool.allocations().map(|(_, a)| a).collect();
        let distinct: HashSet<&IpAddr> = held.iter().collect();
        assert_eq!(distinct.len(), held.len(), "an address handed out twice");
    }
});
