//! Redfish discovery over an arbitrary resource map: whatever the BMC's tree looks like
//! (missing links, loops, odd members, wrong types), discovery returns or errors, and never
//! panics or runs forever.
#![no_main]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bmc_core::BmcError;
use bmc_redfish::discovery::{Fetch, complete, discover};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A BMC that is a map from path to JSON.
struct MapBmc(HashMap<String, Value>);

#[async_trait::async_trait]
impl Fetch for MapBmc {
    async fn get_json(&self, path: &str) -> Result<Value, BmcError> {
        let key = bmc_redfish::path::identity(path);
        self.0
            .get(&key)
            .cloned()
            .ok_or(BmcError::not_found(path.to_string()))
    }
}

/// Runs a future that never waits on anything outside (the map answers at once).
fn block_on<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    // The input is a JSON object: path -> resource.
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let bmc = MapBmc(
        map.into_iter()
            .map(|(k, v)| (bmc_redfish::path::identity(&k), v))
            .collect(),
    );
    for system in [None, Some("/redfish/v1/Systems/1")] {
        let result = block_on(async {
            if let Ok(mut d) = discover(&bmc, system).await {
                complete(&bmc, &mut d).await;
                assert!(d.cd_slot.is_none_or(|i| i < d.slots.len()));
                assert!(d.usb_slot.is_none_or(|i| i < d.slots.len()));
            }
        });
        assert!(result.is_some(), "discovery must finish");
    }
});
