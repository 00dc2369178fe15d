//! The client's behaviour on the exchanges a recorded tree cannot show: sessions, 401 in
//! the middle of a session, a wrong password, 412, 503, 202 tasks, slow and broken BMCs.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use bmc_core::{BmcError, ConnectOptions, Credentials};
use bmc_redfish::client::{AuthMode, ClientSettings, RedfishClient, RetryPolicy};
use mockito::{Matcher, Server};
use serde_json::json;

fn settings() -> ClientSettings {
    ClientSettings {
        connect: ConnectOptions::default()
            .with_request_timeout(Duration::from_secs(5))
            .with_operation_timeout(Duration::from_secs(10)),
        auth: AuthMode::Auto,
        retry: RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
    }
}

fn client(server: &Server, password: &str) -> RedfishClient {
    RedfishClient::new(
        &server.url(),
        Credentials::new("admin", password).unwrap(),
        settings(),
    )
    .unwrap()
}

async fn root(server: &mut Server) -> mockito::Mock {
    server
        .mock("GET", "/redfish/v1")
        .with_body(
            json!({"Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}})
                .to_string(),
        )
        .create_async()
        .await
}

async fn login(server: &mut Server, token: &str, times: usize) -> mockito::Mock {
    server
        .mock("POST", "/redfish/v1/SessionService/Sessions")
        .match_body(Matcher::Json(
            json!({"UserName": "admin", "Password": "pw"}),
        ))
        .with_status(201)
        .with_header("X-Auth-Token", token)
        .with_header("Location", "/redfish/v1/SessionService/Sessions/7")
        .with_body("{}")
        .expect(times)
        .create_async()
        .await
}

#[tokio::test]
async fn session_is_created_used_and_deleted_on_close() {
    let mut server = Server::new_async().await;
    let _root = root(&mut server).await;
    let login = login(&mut server, "tok-1", 1).await;
    let get = server
        .mock("GET", "/redfish/v1/Systems/1")
        .match_header("X-Auth-Token", "tok-1")
        .match_header("OData-Version", "4.0")
        .with_header("ETag", "W/\"e1\"")
        .with_body(json!({"PowerState": "On"}).to_string())
        .expect(2)
        .create_async()
        .await;
    let delete = server
        .mock("DELETE", "/redfish/v1/SessionService/Sessions/7")
        .match_header("X-Auth-Token", "tok-1")
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let c = client(&server, "pw");
    let r = c.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(r.body["PowerState"], "On");
    assert_eq!(r.etag.as_deref(), Some("W/\"e1\""));
    c.get("/redfish/v1/Systems/1").await.unwrap();
    c.close().await.unwrap();
    login.assert_async().await;
    get.assert_async().await;
    delete.assert_async().await;
    assert_eq!(c.request_count(), 5, "root, login, 2 GETs, DELETE");
}

#[tokio::test]
async fn a_401_mid_session_logs_in_once_more_and_replays() {
    let mut server = Server::new_async().await;
    let _root = root(&mut server).await;
    // The first session expires: requests with it get 401; the second one works.
    let first = login(&mut server, "tok-old", 1).await;
    let second = login(&mut server, "tok-new", 1).await;
    let expired = server
        .mock("GET", "/redfish/v1/Systems/1")
        .match_header("X-Auth-Token", "tok-old")
        .with_status(401)
        .expect(1)
        .create_async()
        .await;
    let fresh = server
        .mock("GET", "/redfish/v1/Systems/1")
        .match_header("X-Auth-Token", "tok-new")
        .with_body("{\"PowerState\":\"Off\"}")
        .expect(1)
        .create_async()
        .await;
    let c = client(&server, "pw");
    let r = c.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(r.body["PowerState"], "Off", "the caller never sees the 401");
    first.assert_async().await;
    second.assert_async().await;
    expired.assert_async().await;
    fresh.assert_async().await;
}

#[tokio::test]
async fn a_session_rejected_twice_is_an_authentication_error_not_a_loop() {
    let mut server = Server::new_async().await;
    let _root = root(&mut server).await;
    let logins = login(&mut server, "tok", 2).await;
    let rejected = server
        .mock("GET", "/redfish/v1/Systems/1")
        .with_status(401)
        .expect(2)
        .create_async()
        .await;
    let c = client(&server, "pw");
    let err = c.get("/redfish/v1/Systems/1").await.unwrap_err();
    assert!(
        matches!(err, BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    logins.assert_async().await;
    rejected.assert_async().await;
}

#[tokio::test]
async fn a_wrong_password_is_tried_exactly_once() {
    let mut server = Server::new_async().await;
    let _root = root(&mut server).await;
    let login = server
        .mock("POST", "/redfish/v1/SessionService/Sessions")
        .with_status(401)
        .with_body(json!({"error": {"code": "Base.1.8.GeneralError", "message": "x",
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.NoValidSession", "Message": "There is no valid session"}]}}).to_string())
        .expect(1)
        .create_async()
        .await;
    let basic = server
        .mock("GET", "/redfish/v1/Systems")
        .expect(0)
        .create_async()
        .await;
    let c = client(&server, "wrong");
    let err = c.get("/redfish/v1/Systems").await.unwrap_err();
    match &err {
        BmcError::AuthenticationFailed { reason } => {
            assert!(reason.contains("Base.1.8.NoValidSession"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    login.assert_async().await;
    basic.assert_async().await;
}

#[tokio::test]
async fn without_a_session_service_basic_auth_is_used() {
    let mut server = Server::new_async().await;
    let _root = server
        .mock("GET", "/redfish/v1")
        .with_body("{}")
        .create_async()
        .await;
    let _no_sessions = server
        .mock("POST", "/redfish/v1/SessionService/Sessions")
        .with_status(404)
        .create_async()
        .await;
    let get = server
        .mock("GET", "/redfish/v1/Systems")
        .match_header("authorization", "Basic YWRtaW46cHc=")
        .with_body("{\"Members\":[]}")
        .create_async()
        .await;
    let c = client(&server, "pw");
    c.get("/redfish/v1/Systems").await.unwrap();
    get.assert_async().await;
}

#[tokio::test]
async fn patch_walks_the_etag_ladder_on_412() {
    let mut server = Server::new_async().await;
    let c = RedfishClient::new(
        &server.url(),
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let weak = server
        .mock("PATCH", "/redfish/v1/Systems/1")
        .match_header("if-match", "W/\"abc\"")
        .with_status(412)
        .expect(1)
        .create_async()
        .await;
    let strong = server
        .mock("PATCH", "/redfish/v1/Systems/1")
        .match_header("if-match", "\"abc\"")
        .with_status(412)
        .expect(1)
        .create_async()
        .await;
    let none = server
        .mock("PATCH", "/redfish/v1/Systems/1")
        .match_header("if-match", Matcher::Missing)
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let r = c
        .patch(
            "/redfish/v1/Systems/1",
            &json!({"Boot": {"BootSourceOverrideTarget": "Cd"}}),
            Some("W/\"abc\""),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    weak.assert_async().await;
    strong.assert_async().await;
    none.assert_async().await;
}

#[tokio::test]
async fn reads_retry_503_and_5xx_but_writes_only_when_the_bmc_says_not_ready() {
    let mut server = Server::new_async().await;
    let c = RedfishClient::new(
        &server.url(),
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let busy = server
        .mock("GET", "/redfish/v1/Systems/1")
        .with_status(503)
        .with_header("Retry-After", "0")
        .expect(4)
        .create_async()
        .await;
    let err = c.get("/redfish/v1/Systems/1").await.unwrap_err();
    busy.assert_async().await;
    assert!(
        matches!(err, BmcError::Busy { .. }),
        "after 4 attempts: {err:?}"
    );
    busy.remove_async().await;

    let post500 = server
        .mock("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
        .with_status(500)
        .expect(1)
        .create_async()
        .await;
    let err = c
        .post(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            &json!({"ResetType": "On"}),
        )
        .await
        .unwrap_err();
    post500.assert_async().await;
    assert!(
        matches!(
            err,
            BmcError::Rejected {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    post500.remove_async().await;

    let not_ready = server.mock("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset").with_status(500)
        .with_body(json!({"error": {"@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.8.SYS518", "Message": "iDRAC not ready"}]}}).to_string())
        .expect(4).create_async().await;
    let err = c
        .post(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            &json!({"ResetType": "On"}),
        )
        .await
        .unwrap_err();
    not_ready.assert_async().await;
    assert_eq!(err.messages()[0].id, "IDRAC.2.8.SYS518");
}

#[tokio::test]
async fn a_202_task_is_followed_and_its_failure_surfaces() {
    let mut server = Server::new_async().await;
    let c = RedfishClient::new(
        &server.url(),
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let _post = server
        .mock("POST", "/redfish/v1/Managers/1/Actions/Oem/Import")
        .with_status(202)
        .with_header("Location", "/redfish/v1/TaskService/Tasks/JID_1")
        .create_async()
        .await;
    let task = server
        .mock("GET", "/redfish/v1/TaskService/Tasks/JID_1")
        .with_body(
            json!({"TaskState": "Exception", "TaskStatus": "Critical",
            "Messages": [{"MessageId": "IDRAC.2.8.SYS446", "Message": "Unable to import"}]})
            .to_string(),
        )
        .expect(1)
        .create_async()
        .await;
    let err = c
        .post("/redfish/v1/Managers/1/Actions/Oem/Import", &json!({}))
        .await
        .unwrap_err();
    task.assert_async().await;
    assert_eq!(err.messages()[0].text, "Unable to import");

    let _post2 = server
        .mock("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
        .with_status(202)
        .with_header("Location", "/redfish/v1/TaskService/Tasks/2")
        .create_async()
        .await;
    let _done = server
        .mock("GET", "/redfish/v1/TaskService/Tasks/2")
        .with_body(json!({"TaskState": "Completed", "TaskStatus": "OK"}).to_string())
        .create_async()
        .await;
    let r = c
        .post(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            &json!({"ResetType": "On"}),
        )
        .await
        .unwrap();
    assert_eq!(r.body["TaskState"], "Completed");
}

#[tokio::test]
async fn rejected_writes_carry_status_and_message_ids() {
    let mut server = Server::new_async().await;
    let c = RedfishClient::new(
        &server.url(),
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let _m = server.mock("PATCH", "/redfish/v1/Systems/1").with_status(400)
        .with_body(json!({"error": {"code": "Base.1.8.GeneralError", "message": "See ExtendedInfo",
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.PropertyValueNotInList", "Message": "The value Floppy for BootSourceOverrideTarget is not in the list"}]}}).to_string())
        .create_async().await;
    let err = c
        .patch("/redfish/v1/Systems/1", &json!({}), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BMC rejected PATCH /redfish/v1/Systems/1 (status 400): Base.1.8.PropertyValueNotInList: The value Floppy for BootSourceOverrideTarget is not in the list"
    );
}

#[tokio::test]
async fn a_bmc_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections without answering; stops with the test.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let s = ClientSettings {
        connect: ConnectOptions::default()
            .with_request_timeout(Duration::from_millis(300))
            .with_operation_timeout(Duration::from_secs(2)),
        auth: AuthMode::Basic,
        retry: RetryPolicy {
            attempts: 2,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
    };
    let c = RedfishClient::new(
        &format!("http://{addr}"),
        Credentials::new("a", "b").unwrap(),
        s,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = c.get("/redfish/v1").await.unwrap_err();
    assert!(matches!(err, BmcError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the request timeout and retries"
    );
    holder.abort();
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_in_discovery() {
    let mut server = Server::new_async().await;
    let c = RedfishClient::new(
        &server.url(),
        Credentials::new("admin", "pw").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let _m = server
        .mock("GET", "/redfish/v1")
        .with_body("{\"Systems\": {\"@odata.id\": ")
        .create_async()
        .await;
    let err = bmc_redfish::discovery::discover(&c, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_bmc_is_a_retryable_unreachable_error() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = RedfishClient::new(
        &format!("http://127.0.0.1:{port}"),
        Credentials::new("a", "b").unwrap(),
        ClientSettings {
            auth: AuthMode::Basic,
            ..settings()
        },
    )
    .unwrap();
    let err = c.get("/redfish/v1").await.unwrap_err();
    assert!(matches!(err, BmcError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(c.request_count(), 4, "reads are retried");
}
