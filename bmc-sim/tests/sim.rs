//! The simulator's own behaviour, seen over HTTP: sessions and auth, power with a delay,
//! boot override checks, virtual media, ETags, many systems, faults.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bmc_sim::{Fault, RedfishSim, SimConfig};
use serde_json::{Value, json};

async fn sim(systems: usize, delay: Duration) -> RedfishSim {
    RedfishSim::start(SimConfig {
        systems,
        power_delay: delay,
        credentials: Some(("admin".into(), "pw".into())),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn sessions_basic_auth_and_rejections() {
    let s = sim(1, Duration::ZERO).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", s.url());
    assert_eq!(
        http.get(url("/redfish/v1")).send().await.unwrap().status(),
        200,
        "the root is public"
    );
    assert_eq!(
        http.get(url("/redfish/v1/Systems"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = http
        .post(url("/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": "admin", "Password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let ok = http
        .post(url("/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": "admin", "Password": "pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let token = ok.headers()["X-Auth-Token"].to_str().unwrap().to_string();
    let location = ok.headers()["Location"].to_str().unwrap().to_string();
    assert_eq!(
        http.get(url("/redfish/v1/Systems"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(url("/redfish/v1/Systems"))
            .basic_auth("admin", Some("pw"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(s.sessions(), 1);
    assert_eq!(
        http.delete(url(&location))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(s.sessions(), 0);
    assert_eq!(
        http.get(url("/redfish/v1/Systems"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn power_lands_after_the_delay_and_resets_are_checked() {
    let s = sim(1, Duration::from_millis(150)).await;
    let http = reqwest::Client::new();
    let reset = format!(
        "{}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
        s.url()
    );
    let r = http
        .post(&reset)
        .basic_auth("admin", Some("pw"))
        .json(&json!({"ResetType": "On"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.resource("/redfish/v1/Systems/1").unwrap()["PowerState"],
        "Off",
        "not yet"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.resource("/redfish/v1/Systems/1").unwrap()["PowerState"],
        "On"
    );
    let r = http
        .post(&reset)
        .basic_auth("admin", Some("pw"))
        .json(&json!({"ResetType": "Nmi2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["@Message.ExtendedInfo"][0]["MessageId"],
        "Base.1.8.ActionParameterValueNotInList"
    );
}

#[tokio::test]
async fn boot_override_virtual_media_and_etags() {
    let s = sim(1, Duration::ZERO).await;
    let http = reqwest::Client::new();
    let system = format!("{}/redfish/v1/Systems/1", s.url());
    let get = http
        .get(&system)
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap();
    let etag = get.headers()["ETag"].to_str().unwrap().to_string();
    let patch = |tag: &str, target: &str| {
        http.patch(&system).basic_auth("admin", Some("pw")).header("If-Match", tag.to_string())
            .json(&json!({"Boot": {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once"}}))
            .send()
    };
    assert_eq!(patch("W/\"stale\"", "Cd").await.unwrap().status(), 412);
    assert_eq!(
        patch(&etag, "Floppy").await.unwrap().status(),
        400,
        "not an allowable target"
    );
    assert_eq!(patch(&etag, "Cd").await.unwrap().status(), 204);
    assert_eq!(
        s.resource("/redfish/v1/Systems/1").unwrap()["Boot"]["BootSourceOverrideTarget"],
        "Cd"
    );

    let insert = format!(
        "{}/redfish/v1/Systems/1/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        s.url()
    );
    let body = json!({"Image": "http://x/a.iso"});
    assert_eq!(
        http.post(&insert)
            .basic_auth("admin", Some("pw"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.post(&insert)
            .basic_auth("admin", Some("pw"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        409,
        "occupied"
    );
    let slot = s.resource("/redfish/v1/Systems/1/VirtualMedia/Cd").unwrap();
    assert_eq!(
        (slot["Image"].as_str(), slot["Inserted"].as_bool()),
        (Some("http://x/a.iso"), Some(true))
    );
    let eject = format!(
        "{}/redfish/v1/Systems/1/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
        s.url()
    );
    assert_eq!(
        http.post(&eject)
            .basic_auth("admin", Some("pw"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.resource("/redfish/v1/Systems/1/VirtualMedia/Cd").unwrap()["Inserted"],
        false
    );
}

#[tokio::test]
async fn many_systems_behind_one_port_with_their_own_state() {
    let s = sim(50, Duration::ZERO).await;
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!("{}/redfish/v1/Systems", s.url()))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["Members"].as_array().unwrap().len(), 50);
    let reset = format!(
        "{}/redfish/v1/Systems/1-37/Actions/ComputerSystem.Reset",
        s.url()
    );
    let r = http
        .post(&reset)
        .basic_auth("admin", Some("pw"))
        .json(&json!({"ResetType": "On"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.resource("/redfish/v1/Systems/1-37").unwrap()["PowerState"],
        "On"
    );
    assert_eq!(
        s.resource("/redfish/v1/Systems/1-36").unwrap()["PowerState"],
        "Off"
    );
    assert_eq!(
        s.resource("/redfish/v1/Systems/1-37/VirtualMedia/Cd")
            .unwrap()["@odata.id"],
        "/redfish/v1/Systems/1-37/VirtualMedia/Cd"
    );
}

#[tokio::test]
async fn injected_faults_and_random_503s() {
    let s = sim(1, Duration::ZERO).await;
    let http = reqwest::Client::new();
    let url = format!("{}/redfish/v1/Systems/1", s.url());
    s.inject([
        Fault::Status(500),
        Fault::Busy,
        Fault::Latency(Duration::from_millis(120)),
        Fault::Garbage,
    ]);
    let get = || http.get(&url).basic_auth("admin", Some("pw")).send();
    assert_eq!(get().await.unwrap().status(), 500);
    let busy = get().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["Retry-After"], "0");
    let t = std::time::Instant::now();
    assert_eq!(get().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(120));
    assert!(get().await.unwrap().json::<Value>().await.is_err());
    assert_eq!(get().await.unwrap().status(), 200, "faults are used up");
    s.inject([Fault::Drop]);
    let dropped = get().await;
    let broken = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(broken, "the connection breaks mid-answer");

    let flaky = RedfishSim::start(SimConfig {
        fault_rate: 0.5,
        seed: 7,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut busy = 0;
    for _ in 0..200 {
        if http
            .get(format!("{}/redfish/v1/Systems/1", flaky.url()))
            .send()
            .await
            .unwrap()
            .status()
            == 503
        {
            busy += 1;
        }
    }
    assert!((60..=140).contains(&busy), "about half: {busy}");
    assert_eq!(
        http.get(format!("{}/redfish/v1", flaky.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the root is never faulted"
    );
}

/// Strict by default: a recorded resource only at the path it was recorded at or its own
/// `@odata.id`, an action only at its target as advertised; `lenient_paths` serves any
/// spelling. Every answer says `OData-Version: 4.0`; a method a resource does not take
/// gets 405 with `Allow`.
#[tokio::test]
async fn paths_are_served_as_advertised_unless_lenient() {
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/redfish/hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72");
    let status = |s: &RedfishSim, method: reqwest::Method, path: &str| {
        let url = format!("{}{path}", s.url());
        async move {
            let r = reqwest::Client::new()
                .request(method, url)
                .basic_auth("admin", Some("pw"))
                .json(&json!({"ResetType": "On"}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("allow")
                    .map(|v| v.to_str().unwrap().to_string()),
                r.headers().contains_key("odata-version"),
            )
        }
    };
    let start = |lenient_paths: bool| {
        let tree = tree.clone();
        async move {
            RedfishSim::start(SimConfig {
                tree: Some(tree),
                credentials: Some(("admin".into(), "pw".into())),
                lenient_paths,
                ..SimConfig::default()
            })
            .await
            .unwrap()
        }
    };
    let strict = start(false).await;
    let get = reqwest::Method::GET;
    // The folder's path and the resource's own `@odata.id` (this drive's has a trailing
    // slash, the system's none).
    let drive = "/redfish/v1/Systems/1/Storage/DA000000/Drives/DA000000";
    assert_eq!(status(&strict, get.clone(), drive).await.0, 200);
    assert_eq!(
        status(&strict, get.clone(), &format!("{drive}/")).await.0,
        200
    );
    assert_eq!(
        status(&strict, get.clone(), "/redfish/v1/Systems/1")
            .await
            .0,
        200
    );
    assert_eq!(
        status(&strict, get.clone(), "/redfish/v1/Systems/1/")
            .await
            .0,
        404
    );
    // Another case is not a URI the BMC gave out.
    assert_eq!(
        status(&strict, get.clone(), "/redfish/v1/SYSTEMS/1")
            .await
            .0,
        404
    );
    // The iLO's BIOS folder was recorded in lower case, as the iLO links to it.
    assert_eq!(
        status(&strict, get.clone(), "/redfish/v1/systems/1/bios")
            .await
            .0,
        200
    );
    // An action only at its target as written.
    let post = reqwest::Method::POST;
    let reset = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
    assert_eq!(status(&strict, post.clone(), reset).await.0, 204);
    assert_eq!(
        status(&strict, post.clone(), &reset.to_ascii_lowercase())
            .await
            .0,
        404
    );
    assert_eq!(
        status(&strict, post.clone(), &format!("{reset}/")).await.0,
        404
    );
    // 405 with Allow, and OData-Version everywhere.
    let (code, allow, odata) = status(&strict, post.clone(), "/redfish/v1/Systems/1").await;
    assert_eq!(
        (code, allow.as_deref(), odata),
        (405, Some("GET, HEAD, PATCH"), true)
    );
    let (code, allow, _) = status(&strict, reqwest::Method::PUT, "/redfish/v1/Chassis/1").await;
    assert_eq!((code, allow.as_deref()), (405, Some("GET, HEAD")));
    let (code, allow, _) = status(&strict, reqwest::Method::DELETE, "/redfish/v1/Chassis/1").await;
    assert_eq!((code, allow.as_deref()), (405, Some("GET, HEAD")));

    let lenient = start(true).await;
    assert_eq!(
        status(&lenient, get.clone(), "/redfish/v1/SYSTEMS/1")
            .await
            .0,
        200
    );
    assert_eq!(
        status(&lenient, post.clone(), &format!("{reset}/")).await.0,
        204
    );
}
