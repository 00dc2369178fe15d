//! One UDP socket serving many sessions to different BMCs: a receive task routes each
//! datagram to the session talking to its sender.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use bmc_core::BmcError;

type Routes = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// A shared UDP socket for IPMI sessions (one session per BMC address at a time).
pub struct IpmiTransport {
    socket: Arc<UdpSocket>,
    routes: Routes,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for IpmiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiTransport")
            .field("local", &self.socket.local_addr().ok())
            .finish()
    }
}

impl IpmiTransport {
    /// Binds `local` (e.g. `0.0.0.0:0`) and starts routing.
    pub async fn bind(local: SocketAddr) -> std::io::Result<Arc<IpmiTransport>> {
        let socket = Arc::new(UdpSocket::bind(local).await?);
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let task = {
            let socket = socket.clone();
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    let route = routes.lock().ok().and_then(|r| r.get(&from).cloned());
                    if let Some(tx) = route {
                        // A session that is not reading loses the datagram, as UDP would.
                        let _ = tx.try_send(buf[..n].to_vec());
                    }
                }
            })
        };
        Ok(Arc::new(IpmiTransport {
            socket,
            routes,
            task,
        }))
    }

    /// The local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sessions routed now.
    pub fn sessions(&self) -> usize {
        self.routes.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub(crate) fn register(&self, peer: SocketAddr) -> Result<mpsc::Receiver<Vec<u8>>, BmcError> {
        let mut routes = self
            .routes
            .lock()
            .map_err(|_| BmcError::InvalidRequest("transport poisoned".to_string()))?;
        if routes.get(&peer).is_some_and(|tx| !tx.is_closed()) {
            return Err(BmcError::InvalidRequest(format!(
                "this transport already has a session with {peer}"
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        routes.insert(peer, tx);
        Ok(rx)
    }

    pub(crate) fn unregister(&self, peer: SocketAddr) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&peer);
        }
    }

    pub(crate) async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> std::io::Result<usize> {
        self.socket.send_to(buf, peer).await
    }
}

impl Drop for IpmiTransport {
    fn drop(&mut self) {
        self.task.abort();
    }
}
