//! The conductor's node store: an embedded transactional store (redb), one file, with the
//! BMC passwords sealed by a key kept in a file of its own.
//!
//! Every node state change is committed before the action it leads to starts, and
//! before the API call that caused it is answered. Commits are grouped: callers that
//! commit while a commit runs share the next one, so a fleet's many changes cost a few
//! fsyncs, not one each.
//!
//! The store keeps its own clock origin (`epoch`): node deadlines are times on the
//! conductor's clock, and a restarted conductor continues that clock, so a node waiting
//! for its agent keeps its deadline across restarts.
//!
//! BMC passwords are sealed with ChaCha20-Poly1305 (a random nonce per seal, the node's
//! name as associated data, so a sealed password moved to another node does not open).
//! The key is 32 random bytes, hex-encoded in its own file (mode 0600), created on first
//! use. Keep the key file apart from the state file (another disk, a secret mount): a copy
//! of the state file alone opens no BMC.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use bmc_core::sync::lock;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Inventories apart from their nodes: written once per inspection, not with every
/// state change.
const INVENTORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("inventories");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const EPOCH: &str = "epoch_unix_ms";

/// What went wrong with the node store.
#[derive(Debug, Clone, thiserror::Error)]
#[error("node store: {0}")]
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

/// The key that seals BMC passwords at rest.
pub struct SealingKey(ChaCha20Poly1305);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// Bytes as lower-case hex (keys, tokens, digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `n` random bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| err(format!("no random bytes from the OS: {e}")))?;
    Ok(bytes)
}

impl SealingKey {
    /// Reads the key file, or creates it (32 random bytes, hex, mode 0600) when it does
    /// not exist.
    pub fn load_or_create(path: &Path) -> Result<SealingKey, StoreError> {
        let bytes = match std::fs::read_to_string(path) {
            Ok(text) => unhex(&text)
                .filter(|b| b.len() == 32)
                .ok_or_else(|| err(format!("{}: not a key (64 hex digits)", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = random_bytes::<32>()?;
                write_private(path, hex(&bytes).as_bytes())
                    .map_err(|e| err(format!("cannot create the key {}: {e}", path.display())))?;
                tracing::info!(key = %path.display(), "created the key that seals BMC passwords");
                bytes.to_vec()
            }
            Err(e) => return Err(err(format!("cannot read the key {}: {e}", path.display()))),
        };
        Ok(SealingKey(ChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    /// Seals `secret` for the node `name`: base64 of nonce and ciphertext.
    pub fn seal(&self, name: &str, secret: &str) -> Result<String, StoreError> {
        let nonce = random_bytes::<12>()?;
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| err("cannot seal a password"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`SealingKey::seal`] sealed for the node `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, StoreError> {
        let wrong = || {
            err(format!(
                "the password of node {name} does not open with this key (another key file?)"
            ))
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| wrong())?;
        if bytes.len() < 12 {
            return Err(wrong());
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The key file's default place: beside the state file, `FILE.key`.
pub fn default_key_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// One node's change to commit.
#[derive(Debug, Clone)]
pub struct NodeWrite {
    /// The node's name.
    pub name: String,
    /// Its record; `None` removes the node and its inventory.
    pub node: Option<Vec<u8>>,
    /// Its inventory, when that changed.
    pub inventory: Option<Vec<u8>>,
}

/// A stored node: its record and its inventory, if any.
pub type StoredBytes = (String, Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct Pending {
    writes: Vec<NodeWrite>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    committing: bool,
}

/// The node store.
pub struct NodeStore {
    db: Arc<Database>,
    key: SealingKey,
    /// Milliseconds since the Unix epoch at which the conductor's clock reads zero.
    epoch_unix_ms: u64,
    pending: Arc<Mutex<Pending>>,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore")
            .field("epoch_unix_ms", &self.epoch_unix_ms)
            .finish()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl NodeStore {
    /// Opens (or creates) the store file, with the key that seals its passwords.
    pub fn open(path: &Path, key: SealingKey) -> Result<NodeStore, StoreError> {
        let db = Database::create(path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        let epoch_unix_ms = {
            txn.open_table(NODES).map_err(err)?;
            txn.open_table(INVENTORIES).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let stored = meta
                .get(EPOCH)
                .map_err(err)?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_le_bytes);
            match stored {
                Some(ms) => ms,
                None => {
                    let ms = unix_ms(SystemTime::now());
                    meta.insert(EPOCH, ms.to_le_bytes().as_slice())
                        .map_err(err)?;
                    ms
                }
            }
        };
        txn.commit().map_err(err)?;
        Ok(NodeStore {
            db: Arc::new(db),
            key,
            epoch_unix_ms,
            pending: Arc::new(Mutex::new(Pending::default())),
        })
    }

    /// The conductor's clock now: time since the store's epoch (zero when a wall clock
    /// stepped back past it).
    pub fn clock_now(&self) -> Duration {
        Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(self.epoch_unix_ms))
    }

    /// The key that seals the store's passwords.
    pub fn key(&self) -> &SealingKey {
        &self.key
    }

    /// Every stored node: name, record and inventory.
    pub fn load(&self) -> Result<Vec<StoredBytes>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(NODES).map_err(err)?;
        let inventories = txn.open_table(INVENTORIES).map_err(err)?;
        let mut nodes = Vec::new();
        for entry in table.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let inventory = inventories
                .get(k.value())
                .map_err(err)?
                .map(|i| i.value().to_vec());
            nodes.push((k.value().to_string(), v.value().to_vec(), inventory));
        }
        Ok(nodes)
    }

    /// Commits a node's change; answers once it is durable. Changes that arrive while a
    /// commit runs are grouped into the next one.
    pub async fn commit(&self, write: NodeWrite) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let start = {
            let mut p = lock(&self.pending);
            p.writes.push(write);
            p.waiters.push(done);
            !std::mem::replace(&mut p.committing, true)
        };
        if start {
            tokio::spawn(commit_pending(self.db.clone(), self.pending.clone()));
        }
        committed.await.map_err(|_| err("the committer stopped"))?
    }
}

async fn commit_pending(db: Arc<Database>, pending: Arc<Mutex<Pending>>) {
    loop {
        let (writes, waiters) = {
            let mut p = lock(&pending);
            if p.waiters.is_empty() {
                p.committing = false;
                return;
            }
            (
                std::mem::take(&mut p.writes),
                std::mem::take(&mut p.waiters),
            )
        };
        let db = db.clone();
        let result = tokio::task::spawn_blocking(move || write_all(&db, writes))
            .await
            .map_err(err)
            .and_then(|r| r);
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot commit node changes");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn write_all(db: &Database, writes: Vec<NodeWrite>) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(err)?;
    {
        let mut nodes = txn.open_table(NODES).map_err(err)?;
        let mut inventories = txn.open_table(INVENTORIES).map_err(err)?;
        // Later writes of a node win: only its last state is kept.
        for w in &writes {
            let name = w.name.as_str();
            match &w.node {
                Some(v) => {
                    nodes.insert(name, v.as_slice()).map_err(err)?;
                    if let Some(i) = &w.inventory {
                        inventories.insert(name, i.as_slice()).map_err(err)?;
                    }
                }
                None => {
                    nodes.remove(name).map_err(err)?;
                    inventories.remove(name).map_err(err)?;
                }
            }
        }
    }
    txn.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_password_opens_only_with_its_key_and_node() -> Result<(), StoreError> {
        let dir = std::env::temp_dir().join(format!("seal-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let (a, b) = (dir.join("a.key"), dir.join("b.key"));
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        let key = SealingKey::load_or_create(&a)?;
        let sealed = key.seal("lab/n0", "s3cret")?;
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.open("lab/n0", &sealed)?, "s3cret");
        assert!(key.open("lab/n1", &sealed).is_err(), "another node's name");
        let again = SealingKey::load_or_create(&a)?;
        assert_eq!(
            again.open("lab/n0", &sealed)?,
            "s3cret",
            "the same key file"
        );
        let other = SealingKey::load_or_create(&b)?;
        let e = other.open("lab/n0", &sealed).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("does not open")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&a).map_err(err)?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
