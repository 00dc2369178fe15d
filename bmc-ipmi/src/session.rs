//! An RMCP+ session over tokio UDP: open (Open Session, RAKP 1–4, privilege), commands
//! with retransmission and stale-reply filtering, close.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout_at};

use crate::transport::IpmiTransport;

use bmc_core::observe::{BmcCall, Observer};
use bmc_core::{BmcError, BmcMessage};

use crate::codec::crypto::{Hash, SessionKeys, password_key};
use crate::codec::lan::{Request, Response};
use crate::codec::packet::{self, Datagram, Protection, payload};
use crate::codec::rakp::{
    CipherSuite, Exchange, OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp4,
    encode_rakp3,
};

/// IPMI privilege levels.
pub mod privilege {
    /// CALLBACK.
    pub const CALLBACK: u8 = 1;
    /// USER.
    pub const USER: u8 = 2;
    /// OPERATOR.
    pub const OPERATOR: u8 = 3;
    /// ADMINISTRATOR.
    pub const ADMINISTRATOR: u8 = 4;

    /// Parses Metal3's `privilegelevel` values.
    pub fn from_name(name: &str) -> Option<u8> {
        match name.to_ascii_uppercase().as_str() {
            "CALLBACK" => Some(CALLBACK),
            "USER" => Some(USER),
            "OPERATOR" => Some(OPERATOR),
            "ADMINISTRATOR" => Some(ADMINISTRATOR),
            _ => None,
        }
    }
}

/// How to open a session.
#[derive(Clone)]
pub struct SessionConfig {
    /// The BMC's UDP address.
    pub addr: SocketAddr,
    /// User name (at most 16 bytes).
    pub user: String,
    /// Password (at most 20 bytes).
    pub password: String,
    /// BMC key Kg, when the BMC has one (else the password keys the session).
    pub kg: Option<Vec<u8>>,
    /// Privilege to raise the session to.
    pub privilege: u8,
    /// Force a cipher suite; `None` tries 17, then 3.
    pub suite: Option<CipherSuite>,
    /// Wait for one answer.
    pub attempt_timeout: Duration,
    /// Sends per request (first try included).
    pub attempts: u32,
    /// A socket shared with other sessions; `None` gives the session its own.
    pub transport: Option<Arc<IpmiTransport>>,
    /// Told of every command in the session and its answer.
    pub observer: Observer,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("privilege", &self.privilege)
            .field("suite", &self.suite)
            .finish()
    }
}

struct Keyed {
    hash: Hash,
    keys: SessionKeys,
    inbound: Inbound,
}

struct State {
    suite: Option<CipherSuite>,
    bmc_session_id: u32,
    console_session_id: u32,
    out_seq: u32,
    rq_seq: u8,
    keyed: Option<Keyed>,
}

/// What a session accepts from the wire. Pure (no socket), so it is unit-tested and fuzzed
/// with arbitrary datagrams.
///
/// A datagram is accepted only if it is an IPMI 2.0 packet for this console session id,
/// its AuthCode verifies with K1, it decrypts, its session sequence number is new and
/// inside the spec's window (not zero, not seen, not more than 16 behind the highest), and
/// it answers the command asked (netFn, command, requester sequence number).
pub struct Inbound {
    console_session_id: u32,
    hash: Hash,
    k1: Vec<u8>,
    aes_key: [u8; 16],
    seen: VecDeque<u32>,
    highest: u32,
}

impl Inbound {
    /// A filter for a session with these keys.
    pub fn new(console_session_id: u32, hash: Hash, keys: &SessionKeys) -> Inbound {
        Inbound {
            console_session_id,
            hash,
            k1: keys.k1.clone(),
            aes_key: keys.aes_key(),
            seen: VecDeque::new(),
            highest: 0,
        }
    }

    /// The response in `datagram`, if it is an authentic, fresh answer to the request.
    pub fn accept(&mut self, datagram: &[u8], netfn: u8, cmd: u8, rq_seq: u8) -> Option<Response> {
        let Ok(Datagram::V20(p)) = packet::parse(datagram, self.hash.truncated_len()) else {
            return None;
        };
        if p.session_id != self.console_session_id
            || p.payload_type != payload::IPMI
            || !p.authenticated
        {
            return None;
        }
        let plain = p.open(self.hash, &self.k1, Some(&self.aes_key)).ok()?;
        if p.seq == 0 || self.seen.contains(&p.seq) || p.seq.saturating_add(16) < self.highest {
            return None; // replayed or too old
        }
        self.seen.push_back(p.seq);
        if self.seen.len() > 32 {
            self.seen.pop_front();
        }
        self.highest = self.highest.max(p.seq);
        let r = Response::decode(&plain).ok()?;
        (r.seq == rq_seq && r.cmd == cmd && r.netfn == (netfn | 1)).then_some(r)
    }
}

/// Where a session's datagrams go and come from.
enum Link {
    Own(UdpSocket),
    Shared {
        transport: Arc<IpmiTransport>,
        rx: Mutex<mpsc::Receiver<Vec<u8>>>,
    },
}

impl Link {
    async fn send(&self, buf: &[u8], peer: SocketAddr) -> std::io::Result<usize> {
        match self {
            Link::Own(s) => s.send(buf).await,
            Link::Shared { transport, .. } => transport.send_to(buf, peer).await,
        }
    }

    /// The next datagram before `deadline` (`None` when it passes), copied into `buf`.
    async fn recv(&self, buf: &mut [u8], deadline: Instant) -> std::io::Result<Option<usize>> {
        match self {
            Link::Own(s) => match timeout_at(deadline, s.recv(buf)).await {
                Err(_) => Ok(None),
                Ok(r) => r.map(Some),
            },
            Link::Shared { rx, .. } => {
                let mut rx = rx.lock().await;
                match timeout_at(deadline, rx.recv()).await {
                    Err(_) | Ok(None) => Ok(None),
                    Ok(Some(d)) => {
                        let n = d.len().min(buf.len());
                        buf[..n].copy_from_slice(&d[..n]);
                        Ok(Some(n))
                    }
                }
            }
        }
    }
}

/// An open RMCP+ session to one BMC.
pub struct IpmiSession {
    link: Link,
    config: SessionConfig,
    state: Mutex<State>,
}

impl Drop for IpmiSession {
    fn drop(&mut self) {
        if let Link::Shared { transport, .. } = &self.link {
            transport.unregister(self.config.addr);
        }
    }
}

fn random<const N: usize>() -> Result<[u8; N], BmcError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| BmcError::Protocol {
        context: "random numbers".to_string(),
        reason: e.to_string(),
    })?;
    Ok(b)
}

fn protocol(context: &str, reason: impl std::fmt::Display) -> BmcError {
    BmcError::Protocol {
        context: context.to_string(),
        reason: reason.to_string(),
    }
}

/// RMCP+ status codes that mean the credentials are wrong.
fn status_text(status: u8) -> &'static str {
    match status {
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x04 => "invalid or unsupported authentication algorithm",
        0x05 => "invalid or unsupported integrity algorithm",
        0x09 => "invalid role",
        0x0d => "unauthorized name",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "RMCP+ error",
    }
}

/// The error for a refused Open Session (RMCP+ status), `Ok` for success.
pub fn check_open_session(resp: &OpenSessionResponse) -> Result<(), BmcError> {
    if resp.status == 0 {
        return Ok(());
    }
    Err(BmcError::Rejected {
        operation: "IPMI Open Session".to_string(),
        status: Some(u16::from(resp.status)),
        messages: vec![BmcMessage {
            id: format!("RMCP+ {:#04x}", resp.status),
            text: status_text(resp.status).to_string(),
        }],
    })
}

/// Checks RAKP 2: a refusal by status (unknown user, bad role) or an auth code that does not
/// verify with the password (wrong password) is an authentication failure, each with its
/// own reason; never retried.
pub fn check_rakp2(
    r2: &Rakp2,
    exchange: &Exchange,
    hash: Hash,
    kuid: &[u8],
) -> Result<(), BmcError> {
    if r2.status != 0 {
        return Err(BmcError::AuthenticationFailed {
            reason: format!(
                "RAKP 2 status {:#04x}: {}",
                r2.status,
                status_text(r2.status)
            ),
        });
    }
    exchange
        .verify_rakp2(hash, kuid, &r2.auth_code)
        .map_err(|_| BmcError::AuthenticationFailed {
            reason: "RAKP 2 does not verify with this password".to_string(),
        })
}

impl IpmiSession {
    /// Opens a session: Open Session (suite 17, then 3 unless forced), RAKP 1–4 with the
    /// password checked against RAKP 2, then Set Session Privilege Level.
    pub async fn open(config: SessionConfig) -> Result<IpmiSession, BmcError> {
        let link = match &config.transport {
            Some(t) => Link::Shared {
                transport: t.clone(),
                rx: Mutex::new(t.register(config.addr)?),
            },
            None => {
                let bind = if config.addr.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let socket = UdpSocket::bind(bind)
                    .await
                    .map_err(|e| protocol("UDP socket", e))?;
                socket
                    .connect(config.addr)
                    .await
                    .map_err(|e| BmcError::Unreachable {
                        endpoint: config.addr.to_string(),
                        reason: e.to_string(),
                    })?;
                Link::Own(socket)
            }
        };
        let session = IpmiSession {
            link,
            config,
            state: Mutex::new(State {
                suite: None,
                bmc_session_id: 0,
                console_session_id: 0,
                out_seq: 0,
                rq_seq: 0,
                keyed: None,
            }),
        };
        session.establish().await?;
        Ok(session)
    }

    async fn exchange_raw(
        &self,
        datagram: &[u8],
        integrity_len: usize,
        what: &str,
    ) -> Result<Datagram, BmcError> {
        let mut buf = vec![0u8; 1024];
        for _ in 0..self.config.attempts.max(1) {
            self.link
                .send(datagram, self.config.addr)
                .await
                .map_err(|e| BmcError::Unreachable {
                    endpoint: self.config.addr.to_string(),
                    reason: e.to_string(),
                })?;
            let deadline = Instant::now() + self.config.attempt_timeout;
            loop {
                match self.link.recv(&mut buf, deadline).await {
                    Ok(None) => break,
                    Err(e) => {
                        return Err(BmcError::Unreachable {
                            endpoint: self.config.addr.to_string(),
                            reason: e.to_string(),
                        });
                    }
                    Ok(Some(n)) => {
                        if let Ok(d) = packet::parse(&buf[..n], integrity_len) {
                            return Ok(d);
                        }
                        // Not a datagram we can read: ignore it, keep waiting.
                    }
                }
            }
        }
        Err(BmcError::Timeout {
            operation: format!("IPMI {what} to {}", self.config.addr),
            after: self.config.attempt_timeout * self.config.attempts.max(1),
            detail: Some("no answer".to_string()),
        })
    }

    /// The cipher suite of the session.
    pub async fn suite(&self) -> Option<CipherSuite> {
        self.state.lock().await.suite
    }

    /// Asks the BMC which cipher suites it offers (Get Channel Cipher Suites, outside a
    /// session). `None` when it does not answer that command.
    async fn offered_suites(&self) -> Option<Vec<u8>> {
        let mut records = Vec::new();
        for index in 0..8u8 {
            let req = crate::codec::channel::cipher_suites_request(index, index).encode();
            let none = Protection {
                integrity: None,
                confidentiality: None,
            };
            let wire = packet::seal(payload::IPMI, 0, 0, &req, &none);
            let message = match self
                .exchange_raw(&wire, 0, "Get Channel Cipher Suites")
                .await
                .ok()?
            {
                Datagram::V15(v) => v.message,
                Datagram::V20(v) => v.payload,
            };
            let r = Response::decode(&message).ok()?;
            if r.completion != 0 || r.cmd != 0x54 {
                return None;
            }
            let chunk = r.data.get(1..).unwrap_or_default();
            records.extend_from_slice(chunk);
            if chunk.len() < 16 {
                break;
            }
        }
        Some(crate::codec::channel::parse_cipher_suite_records(&records))
    }

    async fn establish(&self) -> Result<(), BmcError> {
        let suites: Vec<CipherSuite> = match self.config.suite {
            Some(s) => vec![s],
            // What the BMC offers, best first; without an answer, 17 then 3.
            None => match self.offered_suites().await {
                Some(offered) => {
                    let usable: Vec<CipherSuite> = [CipherSuite::Suite17, CipherSuite::Suite3]
                        .into_iter()
                        .filter(|s| offered.contains(&s.id()))
                        .collect();
                    if usable.is_empty() {
                        return Err(BmcError::Unsupported {
                            operation: format!("IPMI cipher suites {offered:?} (17 or 3 needed)"),
                            driver: "ipmi".to_string(),
                        });
                    }
                    usable
                }
                None => vec![CipherSuite::Suite17, CipherSuite::Suite3],
            },
        };
        let console_id = loop {
            let id = random::<4>()?;
            if id != [0; 4] {
                break id;
            }
        };
        let mut last = None;
        for suite in suites {
            let tag = random::<1>()?[0];
            let open = OpenSessionRequest {
                tag,
                max_privilege: self.config.privilege,
                console_session_id: console_id,
                suite,
            };
            let none = Protection {
                integrity: None,
                confidentiality: None,
            };
            let d = self
                .exchange_raw(
                    &packet::seal(payload::OPEN_SESSION_REQUEST, 0, 0, &open.encode(), &none),
                    0,
                    "Open Session",
                )
                .await?;
            let Datagram::V20(p) = d else {
                return Err(protocol("Open Session", "answer is not RMCP+"));
            };
            let resp =
                OpenSessionResponse::decode(&p.payload).map_err(|e| protocol("Open Session", e))?;
            if let Err(e) = check_open_session(&resp) {
                last = Some(e);
                continue;
            }
            return self.rakp(suite, console_id, resp.bmc_session_id).await;
        }
        Err(last.unwrap_or_else(|| protocol("Open Session", "no cipher suite to try")))
    }

    async fn rakp(
        &self,
        suite: CipherSuite,
        console_id: [u8; 4],
        bmc_id: [u8; 4],
    ) -> Result<(), BmcError> {
        let hash = suite.hash();
        let none = Protection {
            integrity: None,
            confidentiality: None,
        };
        let role = 0x10 | self.config.privilege;
        let user = self.config.user.as_bytes().to_vec();
        let rm = random::<16>()?;
        let tag = random::<1>()?[0];
        let r1 = Rakp1 {
            tag,
            bmc_session_id: bmc_id,
            rm,
            role,
            user: user.clone(),
        };
        let d = self
            .exchange_raw(
                &packet::seal(payload::RAKP1, 0, 0, &r1.encode(), &none),
                0,
                "RAKP 1",
            )
            .await?;
        let Datagram::V20(p) = d else {
            return Err(protocol("RAKP 2", "answer is not RMCP+"));
        };
        let r2 = Rakp2::decode(&p.payload, hash).map_err(|e| protocol("RAKP 2", e))?;
        let ex = Exchange {
            console_session_id: console_id,
            bmc_session_id: bmc_id,
            rm,
            rc: r2.rc,
            guid: r2.guid,
            role,
            user: user.clone(),
        };
        let kuid = password_key(self.config.password.as_bytes());
        check_rakp2(&r2, &ex, hash, &kuid)?;
        let key = self.config.kg.clone().unwrap_or_else(|| kuid.clone());
        let keys = SessionKeys::derive(hash, &key, &rm, &r2.rc, role, &user);
        let r3 = encode_rakp3(tag, 0, bmc_id, &ex.rakp3_code(hash, &kuid));
        let d = self
            .exchange_raw(&packet::seal(payload::RAKP3, 0, 0, &r3, &none), 0, "RAKP 3")
            .await?;
        let Datagram::V20(p) = d else {
            return Err(protocol("RAKP 4", "answer is not RMCP+"));
        };
        let r4 = Rakp4::decode(&p.payload, hash).map_err(|e| protocol("RAKP 4", e))?;
        if r4.status != 0 {
            return Err(BmcError::AuthenticationFailed {
                reason: format!(
                    "RAKP 4 status {:#04x}: {}",
                    r4.status,
                    status_text(r4.status)
                ),
            });
        }
        if r4.icv != ex.rakp4_icv(hash, &keys.sik) {
            return Err(protocol("RAKP 4", "integrity check value does not verify"));
        }
        {
            let mut s = self.state.lock().await;
            s.bmc_session_id = u32::from_le_bytes(bmc_id);
            s.console_session_id = u32::from_le_bytes(console_id);
            let inbound = Inbound::new(s.console_session_id, hash, &keys);
            s.suite = Some(suite);
            s.keyed = Some(Keyed {
                hash,
                keys,
                inbound,
            });
        }
        // Set Session Privilege Level.
        let r = self.command(0x06, 0x3b, &[self.config.privilege]).await?;
        if r.completion != 0 {
            return Err(BmcError::PermissionDenied {
                operation: "set session privilege level".to_string(),
                reason: format!("completion code {:#04x}", r.completion),
            });
        }
        Ok(())
    }

    /// Sends one IPMI command in the session and returns the BMC's response (any completion
    /// code; callers decide what a non-zero one means). Retransmits on silence; replies to
    /// an earlier try or another command are ignored.
    pub async fn command(&self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Response, BmcError> {
        if !self.config.observer.is_some() {
            return self.exchange_command(netfn, cmd, data).await;
        }
        let started = Instant::now();
        let result = self.exchange_command(netfn, cmd, data).await;
        let target = format!("netfn {netfn:#04x} cmd {cmd:#04x}");
        let failure = result.as_ref().err().map(|e| e.to_string());
        self.config.observer.observe(&BmcCall {
            protocol: "ipmi",
            method: command_name(netfn, cmd),
            target: &target,
            status: result.as_ref().ok().map(|r| u16::from(r.completion)),
            latency: started.elapsed(),
            failure: failure.as_deref(),
        });
        result
    }

    async fn exchange_command(
        &self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<Response, BmcError> {
        let mut s = self.state.lock().await;
        let Some(keyed) = &s.keyed else {
            return Err(BmcError::InvalidRequest(
                "the IPMI session is not open".to_string(),
            ));
        };
        let hash = keyed.hash;
        let k1 = keyed.keys.k1.clone();
        let aes = keyed.keys.aes_key();
        s.rq_seq = (s.rq_seq + 1) & 0x3f;
        let rq_seq = s.rq_seq;
        let message = Request {
            netfn,
            cmd,
            seq: rq_seq,
            data: data.to_vec(),
        }
        .encode();
        let mut buf = vec![0u8; 1024];
        let what = format!("command netFn {netfn:#04x} cmd {cmd:#04x}");
        for _ in 0..self.config.attempts.max(1) {
            s.out_seq = s.out_seq.wrapping_add(1).max(1);
            let iv = random::<16>()?;
            let wire = packet::seal(
                payload::IPMI,
                s.bmc_session_id,
                s.out_seq,
                &message,
                &Protection {
                    integrity: Some((hash, &k1)),
                    confidentiality: Some((&aes, iv)),
                },
            );
            self.link
                .send(&wire, self.config.addr)
                .await
                .map_err(|e| BmcError::Unreachable {
                    endpoint: self.config.addr.to_string(),
                    reason: e.to_string(),
                })?;
            let deadline = Instant::now() + self.config.attempt_timeout;
            loop {
                let n = match self.link.recv(&mut buf, deadline).await {
                    Ok(None) => break,
                    Err(e) => {
                        return Err(BmcError::Unreachable {
                            endpoint: self.config.addr.to_string(),
                            reason: e.to_string(),
                        });
                    }
                    Ok(Some(n)) => n,
                };
                let Some(keyed) = s.keyed.as_mut() else {
                    return Err(BmcError::InvalidRequest(
                        "the IPMI session was closed".to_string(),
                    ));
                };
                let Some(r) = keyed.inbound.accept(&buf[..n], netfn, cmd, rq_seq) else {
                    continue; // not ours, forged, replayed, or an answer to an earlier try
                };
                return Ok(r);
            }
        }
        Err(BmcError::Timeout {
            operation: format!("IPMI {what} to {}", self.config.addr),
            after: self.config.attempt_timeout * self.config.attempts.max(1),
            detail: Some("no answer".to_string()),
        })
    }

    /// Session packets sent so far (commands, retransmissions and keep-alives).
    pub async fn packets_sent(&self) -> u32 {
        self.state.lock().await.out_seq
    }

    /// Keeps the session alive while idle: a Get Device ID every `every` (BMCs drop
    /// sessions idle for about a minute). The task ends when the session is closed or the
    /// handle is aborted.
    pub fn spawn_keep_alive(
        self: &std::sync::Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let session = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(s) = session.upgrade() else { return };
                if s.state.lock().await.keyed.is_none() {
                    return;
                }
                if let Err(e) = s.command(0x06, 0x01, &[]).await {
                    tracing::debug!(error = %e, "IPMI keep-alive failed");
                }
            }
        })
    }

    /// Closes the session (Close Session); later commands fail.
    pub async fn close(&self) -> Result<(), BmcError> {
        let id = self.state.lock().await.bmc_session_id;
        let result = self.command(0x06, 0x3c, &id.to_le_bytes()).await;
        self.state.lock().await.keyed = None;
        result.map(|_| ())
    }
}

/// The name of the commands the driver sends, for histories and metrics.
fn command_name(netfn: u8, cmd: u8) -> &'static str {
    match (netfn, cmd) {
        (0x00, 0x01) => "GetChassisStatus",
        (0x00, 0x02) => "ChassisControl",
        (0x00, 0x08) => "SetSystemBootOptions",
        (0x00, 0x09) => "GetSystemBootOptions",
        (0x06, 0x01) => "GetDeviceId",
        (0x06, 0x37) => "GetSystemGuid",
        (0x06, 0x3c) => "CloseSession",
        (0x0a, 0x10) => "GetFruInventoryAreaInfo",
        (0x0a, 0x11) => "ReadFruData",
        _ => "command",
    }
}
