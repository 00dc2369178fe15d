//! A broken or hostile BMC cannot fill the memory or hold a request: answers above the
//! size limit fail with a clear error (announced or streamed without end), and a body
//! that dribbles is cut off by the request timeout. A raw TCP server plays the BMC, as no
//! well-behaved HTTP server sends such answers.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use bmc_core::{BmcError, ConnectOptions, Credentials};
use bmc_redfish::client::{AuthMode, ClientSettings, RedfishClient, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy)]
enum Answer {
    /// `Content-Length` of 1 GiB, then zeros as fast as they go.
    Huge,
    /// A chunked body that never ends.
    Endless,
    /// One byte every 200 ms.
    Slow,
}

/// Serves `answer` to every request; returns the base URL.
async fn hostile_bmc(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let chunk = vec![b' '; 64 * 1024];
                match answer {
                    Answer::Huge => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        while socket.write_all(&chunk).await.is_ok() {}
                    }
                    Answer::Endless => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                        framed.extend_from_slice(&chunk);
                        framed.extend_from_slice(b"\r\n");
                        while socket.write_all(&framed).await.is_ok() {}
                    }
                    Answer::Slow => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        loop {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            if socket.write_all(b" ").await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn client(base: &str) -> RedfishClient {
    RedfishClient::new(
        base,
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            connect: ConnectOptions::default()
                .with_request_timeout(Duration::from_secs(2))
                .with_operation_timeout(Duration::from_secs(5))
                .with_max_response_bytes(4 << 20),
            auth: AuthMode::Basic,
            retry: RetryPolicy {
                attempts: 1,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(10),
            },
        },
    )
    .unwrap()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_endless_and_slow_answers_fail_clearly_with_the_memory_flat() {
    let huge = client(&hostile_bmc(Answer::Huge).await);
    let endless = client(&hostile_bmc(Answer::Endless).await);
    let slow = client(&hostile_bmc(Answer::Slow).await);
    // Once each first, so that what the runtime and the client allocate once is counted
    // before the baseline.
    let _ = endless.get("/redfish/v1").await;
    let before = rss_kib();
    for _ in 0..20 {
        let e = huge.get("/redfish/v1").await.err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.contains("larger than the limit of 4194304 bytes (1073741824 bytes announced)"),
            "{e}"
        );
        let e = endless.get("/redfish/v1").await;
        match &e {
            Err(BmcError::Protocol { reason, .. }) => {
                assert!(reason.contains("larger than the limit"), "{reason}");
            }
            other => panic!("an endless body was taken: {other:?}"),
        }
    }
    let grown = rss_kib().saturating_sub(before);
    // 20 endless bodies cut at 4 MiB each would be 80 MiB if any were kept.
    assert!(grown < 24 * 1024, "the memory grew by {grown} KiB");

    let started = Instant::now();
    let e = slow.get("/redfish/v1").await;
    assert!(matches!(e, Err(BmcError::Timeout { .. })), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
