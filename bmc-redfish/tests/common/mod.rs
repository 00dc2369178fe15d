//! The recorded Redfish trees in `shared/fixtures/redfish`, read as a BMC would serve them
//! (paths matched case-insensitively when the exact one is missing, as real BMCs do).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bmc_core::BmcError;
use bmc_redfish::discovery::Fetch;
use serde_json::Value;

pub const TREES: [&str; 5] = [
    "dmtf-public-rackmount1",
    "dell-poweredge-r750-idrac9-fw6.00.30.00",
    "hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72",
    "lenovo-thinksystem-sr670v2-xcc-fw2.83",
    "supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01",
];

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/redfish")
}

pub struct FixtureTree {
    root: PathBuf,
    /// Every path requested, in order.
    pub requests: Mutex<Vec<String>>,
}

impl FixtureTree {
    pub fn new(tree: &str) -> FixtureTree {
        let root = fixtures_dir().join(tree);
        assert!(
            root.is_dir(),
            "{} missing (tests expect shared/ beside the repository)",
            root.display()
        );
        FixtureTree {
            root,
            requests: Mutex::new(Vec::new()),
        }
    }

    fn locate(&self, path: &str) -> Option<PathBuf> {
        let mut dir = self.root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let exact = dir.join(segment);
            dir = if exact.is_dir() {
                exact
            } else {
                std::fs::read_dir(&dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .find(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .eq_ignore_ascii_case(segment)
                    })?
                    .path()
            };
        }
        let file = dir.join("index.json");
        file.is_file().then_some(file)
    }
}

#[bmc_core::async_trait]
impl Fetch for FixtureTree {
    async fn get_json(&self, path: &str) -> Result<Value, BmcError> {
        self.requests.lock().unwrap().push(path.to_string());
        let file = self
            .locate(path)
            .ok_or_else(|| BmcError::not_found(path.to_string()))?;
        let text = std::fs::read_to_string(&file).map_err(|e| BmcError::Protocol {
            context: path.into(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| BmcError::Protocol {
            context: path.into(),
            reason: e.to_string(),
        })
    }
}
