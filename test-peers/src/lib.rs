//! The real peers the example tests run against (`shared/peers`): sushy-emulator,
//! sushy-static ([`SushyStatic`]), the IPMI simulators and a Kubernetes API server
//! ([`KubeApiServer`]), each stopped by its script when dropped, ipmitool to check them, and
//! DMTF's Redfish validators and client ([`DmtfTools`]). Test support only: no production crate depends on it.
//!
//! ```
//! let port = test_peers::free_tcp_port();
//! assert!(port > 0);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "kube")]
pub mod kube_objects;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

/// A file of the upstream manifests the tests load unchanged
/// (`shared/reference/metal3-manifests/PATH`).
pub fn metal3_manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/metal3-manifests")
        .join(path)
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running sushy-emulator with basic auth.
pub struct SushyPeer {
    /// The script's working folder (logs, state).
    pub dir: PathBuf,
    /// What the script wrote to `peer.env` (URL, systems, CA path).
    pub env: HashMap<String, String>,
}

impl SushyPeer {
    /// Starts an emulator with `systems` systems, over TLS or plain HTTP.
    pub fn start(dir: &Path, systems: usize, tls: bool, user: &str, password: &str) -> SushyPeer {
        let out = Command::new("bash")
            .arg(peers_dir().join("sushy-emulator.sh"))
            .args(["-d", dir.to_str().unwrap(), "start"])
            .args([systems.to_string(), free_tcp_port().to_string()])
            .env("SUSHY_PEER_USER", user)
            .env("SUSHY_PEER_PASSWORD", password)
            .env("SUSHY_PEER_TLS", if tls { "1" } else { "0" })
            .output()
            .expect("bash runs the peer script");
        assert!(
            out.status.success(),
            "sushy-emulator did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("peer.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        SushyPeer {
            dir: dir.to_path_buf(),
            env,
        }
    }

    /// `host:port` of the emulator.
    pub fn host(&self) -> String {
        self.env["SUSHY_PEER_URL"]
            .split("://")
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// The systems' ids.
    pub fn systems(&self) -> Vec<String> {
        self.env["SUSHY_PEER_SYSTEMS"]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The Metal3 address of the first system.
    pub fn address(&self) -> String {
        let transport = if self.env["SUSHY_PEER_URL"].starts_with("https") {
            "https"
        } else {
            "http"
        };
        format!(
            "redfish-virtualmedia+{transport}://{}/redfish/v1/Systems/{}",
            self.host(),
            self.systems()[0]
        )
    }

    /// The CA that signed the emulator's certificate (TLS).
    pub fn ca(&self) -> Option<PathBuf> {
        self.env.get("SUSHY_PEER_CACERT").map(PathBuf::from)
    }
}

impl Drop for SushyPeer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(peers_dir().join("sushy-emulator.sh"))
            .args(["-d", self.dir.to_str().unwrap(), "stop"])
            .output();
    }
}

/// Where `kube-apiserver.sh install` put its build (`KW` of the script).
const KUBE_BUILD: &str = "/var/cache/kube-apiserver-lab";

/// A real kube-apiserver v1.20 on a real etcd (and a controller manager for garbage
/// collection and ServiceAccount tokens), started by `kube-apiserver.sh` in a folder of
/// its own: fresh certificates, a fresh etcd and free ports, so nothing of an earlier
/// run is seen. Stopped by the script (by PID) when dropped; each process is also capped
/// at 30 minutes by the script itself.
pub struct KubeApiServer {
    /// The script's working folder for this server (`KW`).
    pub dir: PathBuf,
    /// The admin kubeconfig the script wrote.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
}

impl KubeApiServer {
    /// Whether `kube-apiserver.sh install` has been run on this machine.
    pub fn installed() -> bool {
        Path::new(KUBE_BUILD).join("bin/kube-apiserver").is_file()
    }

    /// Starts a server in `dir` (created; the build is linked in, not copied).
    pub fn start(dir: &Path) -> KubeApiServer {
        assert!(
            Self::installed(),
            "no kube-apiserver build: run `bash ../shared/peers/kube-apiserver.sh install` (CI does)"
        );
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::symlink(Path::new(KUBE_BUILD).join("bin"), dir.join("bin")).unwrap();
        let (api_port, etcd_port) = loop {
            // The script takes etcd's peer port as its client port + 10.
            let (a, e) = (free_tcp_port(), free_tcp_port());
            if std::net::TcpListener::bind(("127.0.0.1", e + 10)).is_ok() && a != e + 10 {
                break (a, e);
            }
        };
        let out = Command::new("bash")
            .arg(peers_dir().join("kube-apiserver.sh"))
            .arg("start")
            .env("KW", dir)
            .env("APISERVER_PORT", api_port.to_string())
            .env("ETCD_PORT", etcd_port.to_string())
            .env("KUBE_MAX_SECONDS", "1800")
            .output()
            .expect("bash runs the peer script");
        let server = KubeApiServer {
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("run/kubeconfig"),
            url: format!("https://127.0.0.1:{api_port}"),
        };
        assert!(
            out.status.success(),
            "kube-apiserver did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    /// The CA (PEM) that signed the API server's certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("run/pki/ca.crt")).unwrap()
    }

    /// The admin's bearer token (group `system:masters`).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("run/pki/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The API server's log (for a failing test's message).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("run/logs/kube-apiserver.log"))
            .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(peers_dir().join("kube-apiserver.sh"))
            .arg("stop")
            .env("KW", &self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// sushy-tools' `sushy-static` serving a recorded tree's files as they are, on 127.0.0.1:
/// a second Redfish server we did not write, for read paths. It strips a trailing slash
/// from every path, serves nothing outside `/redfish/v1`, speaks HTTP/1.0 (one request
/// per connection), ignores credentials, and answers every POST and PATCH with 204
/// without changing anything. Killed by PID when dropped.
pub struct SushyStatic {
    child: std::process::Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl SushyStatic {
    /// Serves `tree` (a folder holding `redfish/v1/index.json`), with sushy-tools from the
    /// sushy-emulator script's venv in `venv_dir` (installed first when missing) and the
    /// server's output in `log`.
    pub fn start(venv_dir: &Path, tree: &Path, log: &Path) -> SushyStatic {
        {
            let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
            run(
                Command::new("bash")
                    .arg(peers_dir().join("sushy-emulator.sh"))
                    .args(["-d", venv_dir.to_str().unwrap(), "install"]),
                "installing sushy-tools",
            );
        }
        let mockup = tree.join("redfish/v1");
        assert!(mockup.join("index.json").is_file(), "{}", mockup.display());
        let port = free_tcp_port();
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(venv_dir.join("venv/bin/sushy-static"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m"])
            .arg(&mockup)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("sushy-static starts");
        let mut peer = SushyStatic { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = peer.child.try_wait().unwrap() {
                panic!(
                    "sushy-static exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sushy-static did not listen on {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        peer
    }

    /// `host:port` of the server.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SushyStatic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running IPMI simulator (`pyghmi` or `openipmi`) with user admin / password.
pub struct IpmiPeer {
    dir: PathBuf,
    /// Its UDP port.
    pub port: u16,
}

impl IpmiPeer {
    /// Starts a simulator of `kind` on a free port.
    pub fn start(kind: &str, dir: &Path) -> IpmiPeer {
        let port = free_udp_port();
        let out = Command::new("bash")
            .arg(peers_dir().join("ipmi-sim.sh"))
            .args(["start", "--kind", kind, "--dir", dir.to_str().unwrap()])
            .args(["--port", &port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        IpmiPeer {
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Runs ipmitool against the simulator; its standard output.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "admin", "-P", "password"])
            .args(args)
            .output()
            .expect("ipmitool runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for IpmiPeer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(peers_dir().join("ipmi-sim.sh"))
            .args(["stop", "--dir", self.dir.to_str().unwrap()])
            .output();
    }
}

/// Runs `program` with `args`, `input` on its standard input: whether it succeeded, and
/// its standard output and error together (for messages and `contains` checks).
pub fn tool(program: &str, args: &[&str], input: Option<&str>) -> (bool, String) {
    let (success, stdout, stderr) = tool_output(program, args, input);
    (success, format!("{stdout}{stderr}"))
}

/// An ISO9660 image of the folder `tree` at `iso`, labelled `label`, made by xorriso as
/// mkisofs (`options` such as `-J -r` for Joliet and Rock Ridge).
pub fn iso_from_tree(tree: &Path, iso: &Path, label: &str, options: &[&str]) {
    let _ = std::fs::remove_file(iso);
    let (tree, iso) = (tree.to_string_lossy(), iso.to_string_lossy());
    let mut args = vec!["-as", "mkisofs", "-quiet", "-V", label];
    args.extend_from_slice(options);
    args.extend_from_slice(&["-o", &iso, &tree]);
    tool_ok("xorriso", &args, None);
}

/// Runs `program` as [`tool`] does and checks it succeeded: its standard output.
pub fn tool_ok(program: &str, args: &[&str], input: Option<&str>) -> String {
    let (success, stdout, stderr) = tool_output(program, args, input);
    assert!(success, "{program} {args:?}: {stdout}{stderr}");
    stdout
}

fn tool_output(program: &str, args: &[&str], input: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks a binary's `--help` (and each listed subcommand's) against the snapshot file
/// `snapshot`: the text a user sees, so a changed option shows up in review. Run with
/// `UPDATE_SNAPSHOTS=1` to write the file anew. The environment is emptied first: help
/// shows the values of the environment variables options fall back on.
pub fn assert_help_snapshot(binary: &str, subcommands: &[&[&str]], snapshot: &Path) {
    let mut text = String::new();
    let mut invocations: Vec<Vec<&str>> = vec![vec!["--help"]];
    invocations.extend(subcommands.iter().map(|s| {
        let mut v = s.to_vec();
        v.push("--help");
        v
    }));
    for args in invocations {
        let out = Command::new(binary)
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{binary} {args:?}");
        text.push_str(&format!(
            "$ {} {}\n",
            Path::new(binary).file_name().unwrap().to_string_lossy(),
            args.join(" ")
        ));
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        text.push('\n');
    }
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        std::fs::write(snapshot, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(snapshot).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run the test with UPDATE_SNAPSHOTS=1 to write it",
            snapshot.display()
        )
    });
    if expected != text {
        let first = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(text.lines().count()));
        panic!(
            "--help of {binary} differs from {} from line {}:\n--- expected\n{}\n--- got\n{}\n(UPDATE_SNAPSHOTS=1 writes it anew)",
            snapshot.display(),
            first + 1,
            expected
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
            text.lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

/// Held while something is installed for the tests (a venv, the schemas).
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs an install step: its standard output, after checking it succeeded.
fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// DMTF's own Redfish tools from PyPI, in a venv of their own: the protocol validator
/// (`rf_protocol_validator`), the service validator, and the `redfish` library with its
/// utilities (`rf_power_reset.py`, `rf_boot_override.py`, `rf_virtual_media.py`), a client
/// we did not write. Versions pinned; installed once per folder.
pub struct DmtfTools {
    /// The venv's `bin` folder.
    pub bin: PathBuf,
}

/// What the venv holds, resolved and tested together on Python 3.11.
const DMTF_REQUIREMENTS: &str = "redfish-protocol-validator==1.3.2
redfish-service-validator==3.1.8
redfish==3.4.2
redfish_utilities==3.5.2
aenum==3.1.17
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
colorama==0.4.6
cryptography==50.0.2
et_xmlfile==2.0.0
idna==3.20
jsonpatch==1.48
jsonpath-ng==1.16.0
jsonpointer==3.12
openpyxl==3.1.5
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pyOpenSSL==26.4.0
requests==2.34.2
requests-toolbelt==1.0.0
requests-unixsocket==0.4.1
sseclient-py==1.9.0
typing_extensions==4.16.0
urllib3==2.8.0
xlsxwriter==3.3.1
";

impl DmtfTools {
    /// The tools in `dir/venv`, installed first when missing (a few seconds from PyPI).
    pub fn install(dir: &Path) -> DmtfTools {
        // Tests of one run may all ask at once: one installs, the others wait.
        let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        let venv = dir.join("venv");
        let bin = venv.join("bin");
        let done = dir.join("installed");
        if std::fs::read_to_string(&done).ok().as_deref() == Some(DMTF_REQUIREMENTS) {
            return DmtfTools { bin };
        }
        std::fs::create_dir_all(dir).unwrap();
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&python)
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "python3 -m venv",
        );
        let requirements = dir.join("requirements.txt");
        std::fs::write(&requirements, DMTF_REQUIREMENTS).unwrap();
        run(
            Command::new(bin.join("pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            "pip install DMTF's Redfish tools",
        );
        std::fs::write(&done, DMTF_REQUIREMENTS).unwrap();
        DmtfTools { bin }
    }

    /// A command for one of the venv's programs.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join("python"));
        command.arg(self.bin.join(program));
        command
    }
}

/// The crate on crates.io that bundles DMTF's Redfish CSDL schemas (DSP8010), and its
/// sha256: the schemas the service validator checks against, since DMTF's own site is
/// not reachable from here.
const CSDL_CRATE: &str =
    "https://static.crates.io/crates/nv-redfish-schema/nv-redfish-schema-0.10.1.crate";
const CSDL_CRATE_SHA256: &str = "1bdee22eb005df9021012e5014584c282b50b6d80c3aa49aca5480760920b05d";

/// DMTF's Redfish CSDL schema files in `dir` (downloaded and checked once): the folder
/// to give the service validator as `--schema_directory`.
pub fn redfish_csdl_schemas(dir: &Path) -> PathBuf {
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let schemas = dir.join("csdl");
    if schemas.join("ServiceRoot_v1.xml").exists() {
        return schemas;
    }
    std::fs::create_dir_all(dir).unwrap();
    let archive = dir.join("schemas.crate");
    run(
        Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&archive)
            .arg(CSDL_CRATE),
        "downloading the Redfish CSDL schemas",
    );
    let sum = run(Command::new("sha256sum").arg(&archive), "sha256sum");
    assert!(
        sum.starts_with(CSDL_CRATE_SHA256),
        "{CSDL_CRATE}: sha256 {sum}, expected {CSDL_CRATE_SHA256}"
    );
    let unpacked = dir.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked).unwrap();
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
        "unpacking the schemas",
    );
    let from = unpacked.join("nv-redfish-schema-0.10.1/redfish-csdl/csdl");
    let staging = dir.join("csdl.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    for entry in std::fs::read_dir(&from).unwrap().flatten() {
        std::fs::copy(entry.path(), staging.join(entry.file_name())).unwrap();
    }
    std::fs::rename(&staging, &schemas).unwrap();
    schemas
}
