//! The conductor's APIs let no one in: the admin API with HTTP basic auth (htpasswd,
//! bcrypt) over TLS, the agent API over TLS, bounded request bodies, and loopback only
//! when started without authentication. Every refused request is listed in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bmc_core::Credentials;
use metal3_conductor::service::{Service, ServiceConfig, TlsFiles, drivers};
use metal3_conductor::{ApiError, ConductorApi, HttpConductor, NodeSpec};

const PASSWORD: &str = "correct-horse-battery";
const BMC_PASSWORD: &str = "bmc-secret-in-the-body";

struct Pki {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost.
fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert_path,
        key: key_path,
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: "redfish-virtualmedia+https://192.0.2.10/redfish/v1/Systems/1"
            .parse()
            .unwrap(),
        credentials: Credentials::new("admin", BMC_PASSWORD).unwrap(),
        disable_certificate_verification: false,
        boot_mac: None,
        automated_clean: true,
        preprovisioning_network_data: None,
        legacy_boot: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_good_credentials_over_trusted_tls_get_in() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .try_init();

    let dir = std::env::temp_dir().join(format!("api-security-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = pki(&dir, "server");
    let stranger = pki(&dir, "stranger");
    let htpasswd = dir.join("htpasswd");
    let mut f = std::fs::File::create(&htpasswd).unwrap();
    writeln!(f, "operator:{}", bcrypt::hash(PASSWORD, 4).unwrap()).unwrap();
    drop(f);

    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            admin_htpasswd: Some(htpasswd),
            admin_tls: Some(TlsFiles {
                cert: server.cert.clone(),
                key: server.key.clone(),
            }),
            agent_tls: Some(TlsFiles {
                cert: server.cert.clone(),
                key: server.key.clone(),
            }),
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap();
    let admin = service.admin_url();
    assert!(admin.starts_with("https://"), "{admin}");
    let good = Credentials::new("operator", PASSWORD).unwrap();

    // Good credentials, the server's CA: in.
    let client =
        HttpConductor::with_security(&admin, Some(server.ca_pem.as_bytes()), Some(&good)).unwrap();
    client.create_node(node("lab/n0")).await.unwrap();
    assert_eq!(client.node("lab/n0").await.unwrap().name, "lab/n0");
    let changes = client.changes(0, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(changes.changes.len(), 1);

    // Refused: no credentials, a wrong password, an unknown user, another scheme.
    let raw = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("{admin}/v1/nodes");
    let refused = [
        ("no credentials", raw.get(&url)),
        (
            "a wrong password",
            raw.get(&url).basic_auth("operator", Some("wrong")),
        ),
        (
            "an empty password",
            raw.get(&url).basic_auth("operator", Some("")),
        ),
        (
            "an unknown user",
            raw.get(&url).basic_auth("root", Some(PASSWORD)),
        ),
        ("a bearer token", raw.get(&url).bearer_auth(PASSWORD)),
        (
            "metrics without credentials",
            raw.get(format!("{admin}/metrics")),
        ),
    ];
    for (what, request) in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}"
        );
    }
    let wrong = Credentials::new("operator", "wrong-password-123").unwrap();
    let client_wrong =
        HttpConductor::with_security(&admin, Some(server.ca_pem.as_bytes()), Some(&wrong)).unwrap();
    let e = client_wrong.node("lab/n0").await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Unavailable(m) if m.contains("authentication required")),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong-password-123"), "{e}");

    // Refused: a CA that did not sign the server's certificate; plain HTTP.
    let distrusting =
        HttpConductor::with_security(&admin, Some(stranger.ca_pem.as_bytes()), Some(&good))
            .unwrap();
    let e = distrusting.node("lab/n0").await.unwrap_err();
    assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    let plain = HttpConductor::new(&admin.replace("https://", "http://"));
    assert!(plain.node("lab/n0").await.is_err());

    // Refused: a request body past the limit (413), even with good credentials.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let response = raw
        .post(&url)
        .basic_auth("operator", Some(PASSWORD))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    // The server answers 413 from the headers and may close before the whole body is
    // sent: the client then sees its write fail. Either way the body was not taken.
    match response {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(format!("{e:?}").contains("BodyWrite"), "{e:?}"),
    }

    // The agent API over TLS with the same CA (no node waits: 404, but over TLS).
    let lookup = raw
        .get(format!(
            "{}/v1/lookup?addresses=52:54:00:00:00:09",
            service.agent_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 404);
    let untrusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(stranger.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(format!("{}/v1/lookup?addresses=x", service.agent_url()))
        .send()
        .await;
    assert!(untrusted.is_err());

    // No password in anything logged.
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(!logged.is_empty());
    for secret in [PASSWORD, "wrong-password-123", BMC_PASSWORD] {
        assert!(!logged.contains(secret), "{secret} was logged");
    }
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without an htpasswd file the admin API takes no address but loopback.
#[tokio::test]
async fn without_authentication_the_admin_api_listens_on_loopback_only() {
    let service = Service::start(
        ServiceConfig {
            admin_listen: "0.0.0.0:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap();
    assert!(
        service.admin_addr.ip().is_loopback(),
        "{}",
        service.admin_addr
    );
}
