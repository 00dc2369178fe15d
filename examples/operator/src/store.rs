//! The operator's embedded transactional store (redb): one file, no server. Each
//! reconcile step commits the host's record and any address-pool change together, so a
//! killed operator restarts where the last commit left it: no status lost, no address
//! handed out twice.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const SALT: &str = "credentials_salt";

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this text.
    pub fn new(text: impl Into<String>) -> StoreError {
        StoreError(text.into())
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// One change to commit: a host record written or removed, pool states written.
#[derive(Debug, Default)]
pub struct Change {
    /// `(key, Some(json))` writes, `(key, None)` removes.
    pub hosts: Vec<(String, Option<Vec<u8>>)>,
    /// Pool states.
    pub pools: Vec<(String, Vec<u8>)>,
    /// Other controllers' objects beside the operator (a Cluster API provider's
    /// machines and data): `(key, Some(json))` writes, `(key, None)` removes.
    pub objects: Vec<(String, Option<Vec<u8>>)>,
}

/// The store.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(HOSTS).map_err(err)?;
        txn.open_table(POOLS).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.open_table(OBJECTS).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Store { db })
    }

    /// The store's secret salt (16 random bytes, made on first use): credentials versions
    /// are digests of the credentials under it, so a version in a host's status tells
    /// nothing of the password to whoever cannot read the store.
    pub fn credentials_salt(&self) -> Result<[u8; 16], StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let salt = {
            let mut meta = txn.open_table(META).map_err(err)?;
            let stored = meta
                .get(SALT)
                .map_err(err)?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
            match stored {
                Some(salt) => salt,
                None => {
                    let mut salt = [0u8; 16];
                    getrandom::fill(&mut salt)
                        .map_err(|e| err(format!("no random bytes from the OS: {e}")))?;
                    meta.insert(SALT, salt.as_slice()).map_err(err)?;
                    salt
                }
            }
        };
        txn.commit().map_err(err)?;
        Ok(salt)
    }

    /// Commits a change atomically.
    pub fn commit(&self, change: Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut hosts = txn.open_table(HOSTS).map_err(err)?;
            for (key, value) in &change.hosts {
                match value {
                    Some(v) => {
                        hosts.insert(key.as_str(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        hosts.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
            let mut pools = txn.open_table(POOLS).map_err(err)?;
            for (name, state) in &change.pools {
                pools.insert(name.as_str(), state.as_slice()).map_err(err)?;
            }
            let mut objects = txn.open_table(OBJECTS).map_err(err)?;
            for (key, value) in &change.objects {
                match value {
                    Some(v) => {
                        objects.insert(key.as_str(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        objects.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }

    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(table).map_err(err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let value = serde_json::from_slice(v.value())
                .map_err(|e| err(format!("record {}: {e}", k.value())))?;
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }

    /// Every host record.
    pub fn hosts<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        self.all(HOSTS)
    }

    /// Every pool state.
    pub fn pools<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        self.all(POOLS)
    }

    /// Every object other controllers keep here whose key starts with `prefix`.
    pub fn objects<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut all: Vec<(String, T)> = self.all(OBJECTS)?;
        all.retain(|(k, _)| k.starts_with(prefix));
        Ok(all)
    }
}

/// Serializes a record for a [`Change`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_records_survive_reopening_and_removals_stick() {
        let dir = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let s = Store::open(&dir).unwrap_or_else(|e| unreachable!("{e}"));
            s.commit(Change {
                hosts: vec![
                    ("a".into(), Some(b"1".to_vec())),
                    ("b".into(), Some(b"2".to_vec())),
                ],
                pools: vec![("p".into(), b"{}".to_vec())],
                objects: vec![
                    ("x/1".into(), Some(b"1".to_vec())),
                    ("y/1".into(), Some(b"2".to_vec())),
                ],
            })
            .unwrap_or_else(|e| unreachable!("{e}"));
            s.commit(Change {
                hosts: vec![("a".into(), None)],
                pools: Vec::new(),
                objects: vec![("y/1".into(), None)],
            })
            .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let s = Store::open(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let hosts: Vec<(String, u32)> = s.hosts().unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(hosts, [("b".to_string(), 2)]);
        let pools: Vec<(String, serde_json::Value)> =
            s.pools().unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(pools.len(), 1);
        let objects: Vec<(String, u32)> = s.objects("x/").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(objects, [("x/1".to_string(), 1)]);
        let gone: Vec<(String, u32)> = s.objects("y/").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(gone.is_empty());
        let _ = std::fs::remove_file(&dir);
    }
}
