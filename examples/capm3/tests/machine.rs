//! The Metal3Machine step, walked through a machine's life with the hosts as the operator
//! would report them: association by selector, data, provisioning, ready, then
//! deletion; node reuse and the conditions of a machine that must wait.

#![allow(clippy::panic)]

use metal3_capm3::machine::{DataState, HostView, MachineAction, MachineInput, choose_host, step};
use metal3_capm3::objects::{Machine, Metal3Machine, NODE_REUSE_LABEL, UNHEALTHY_ANNOTATION};
use metal3_operator::manifests::{BareMetalHost, SecretRef};
use provision_fsm::HostStateKind;

fn m3m(selector: &str) -> Metal3Machine {
    serde_json::from_str(&format!(
        r#"{{"metadata": {{"name": "worker-0", "namespace": "c1",
              "annotations": {{"cluster.x-k8s.io/cloned-from-name": "workers"}}}},
            "spec": {{"image": {{"url": "http://images/node.img", "checksum": "abc", "checksumType": "sha256"}},
                     "dataTemplate": {{"name": "workers-data"}},
                     "hostSelector": {selector}}}}}"#
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn machine() -> Machine {
    serde_json::from_str(
        r#"{"metadata": {"name": "worker-0", "namespace": "c1",
              "labels": {"cluster.x-k8s.io/deployment-name": "c1-md-0"}},
            "spec": {"clusterName": "c1", "bootstrap": {"dataSecretName": "worker-0-bootstrap"},
                     "infrastructureRef": {"kind": "Metal3Machine", "name": "worker-0"}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn host(name: &str, labels: &[(&str, &str)], state: HostStateKind) -> HostView {
    let mut h = BareMetalHost::default();
    h.metadata.name = name.into();
    h.metadata.namespace = Some("c1".into());
    h.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HostView {
        host: h,
        state,
        error: None,
        deleting: false,
        nics: Vec::new(),
    }
}

fn ready_data() -> DataState {
    DataState::Ready {
        data: "workers-data-0".into(),
        meta_data: SecretRef {
            name: "worker-0-metadata".into(),
            namespace: Some("c1".into()),
        },
        network_data: SecretRef {
            name: "worker-0-networkdata".into(),
            namespace: Some("c1".into()),
        },
    }
}

/// Carries an action out on the hosts as the controller would.
fn apply(action: &MachineAction, hosts: &mut [HostView], m: &mut Metal3Machine, mc: &mut Machine) {
    let find = |hosts: &mut [HostView], key: &str| -> usize {
        hosts
            .iter()
            .position(|h| h.host.metadata.key() == key)
            .unwrap_or_else(|| panic!("no host {key}"))
    };
    match action {
        MachineAction::Associate { host, consumer } => {
            let i = find(hosts, host);
            hosts[i].host.spec.consumer_ref = Some(consumer.clone());
        }
        MachineAction::ProvisionHost {
            host,
            image,
            user_data,
            meta_data,
            network_data,
            ..
        } => {
            let i = find(hosts, host);
            let spec = &mut hosts[i].host.spec;
            spec.image = Some(image.clone());
            spec.user_data = Some(user_data.clone());
            spec.meta_data = meta_data.clone();
            spec.network_data = network_data.clone();
            spec.online = true;
            hosts[i].state = HostStateKind::Provisioning;
        }
        MachineAction::SetProviderId { provider_id, host } => {
            m.spec.provider_id = Some(provider_id.clone());
            mc.spec.provider_id = Some(provider_id.clone());
            m.metadata
                .annotations
                .insert("metal3.io/BareMetalHost".into(), host.clone());
        }
        MachineAction::DeprovisionHost { host } => {
            let i = find(hosts, host);
            let spec = &mut hosts[i].host.spec;
            spec.image = None;
            spec.user_data = None;
            spec.meta_data = None;
            spec.network_data = None;
            hosts[i].state = HostStateKind::Deprovisioning;
        }
        MachineAction::ReleaseHost { host, reuse_for } => {
            let i = find(hosts, host);
            hosts[i].host.spec.consumer_ref = None;
            if let Some(g) = reuse_for {
                hosts[i]
                    .host
                    .metadata
                    .labels
                    .insert(NODE_REUSE_LABEL.into(), g.clone());
            }
        }
        MachineAction::RenderData | MachineAction::ReleaseData | MachineAction::Finalized => {}
    }
}

#[test]
fn a_machine_takes_a_matching_free_host_through_to_ready_and_gives_it_back() {
    let mut m = m3m(
        r#"{"matchLabels": {"role": "worker"}, "matchExpressions": [{"key": "rack", "operator": "in", "values": ["r1", "r2"]}]}"#,
    );
    let mut mc = machine();
    let mut hosts = vec![
        host(
            "node-a",
            &[("role", "control-plane"), ("rack", "r1")],
            HostStateKind::Available,
        ),
        host(
            "node-b",
            &[("role", "worker"), ("rack", "r2")],
            HostStateKind::Available,
        ),
        host(
            "node-c",
            &[("role", "worker"), ("rack", "r9")],
            HostStateKind::Available,
        ),
    ];
    let mut data = DataState::Pending(None);
    let mut actions = Vec::new();
    for _ in 0..20 {
        let s = step(&MachineInput {
            metal3_machine: &m,
            machine: Some(&mc),
            deleting: false,
            node_reuse: false,
            hosts: &hosts,
            data: &data,
        });
        m.status = s.status;
        let Some(a) = s.action else {
            // Waiting for the host: the operator provisions it.
            if hosts[1].state == HostStateKind::Provisioning {
                hosts[1].state = HostStateKind::Provisioned;
                continue;
            }
            break;
        };
        if a == MachineAction::RenderData {
            data = ready_data();
        }
        apply(&a, &mut hosts, &mut m, &mut mc);
        actions.push(a);
    }
    let names: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            MachineAction::Associate { host, .. } => {
                assert_eq!(host, "c1/node-b");
                "associate"
            }
            MachineAction::RenderData => "render",
            MachineAction::ProvisionHost { user_data, .. } => {
                assert_eq!(user_data.name, "worker-0-bootstrap");
                "provision"
            }
            MachineAction::SetProviderId { provider_id, host } => {
                assert_eq!(provider_id, "metal3://c1/node-b/worker-0");
                assert_eq!(host, "c1/node-b");
                "provider-id"
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, ["associate", "render", "provision", "provider-id"]);
    assert!(m.status.ready);
    assert_eq!(
        hosts[1]
            .host
            .spec
            .network_data
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("worker-0-networkdata")
    );
    assert!(hosts[0].host.spec.consumer_ref.is_none() && hosts[2].host.spec.consumer_ref.is_none());

    // Deleted: deprovision, wait, release, data, gone.
    let mut actions = Vec::new();
    for _ in 0..20 {
        let s = step(&MachineInput {
            metal3_machine: &m,
            machine: Some(&mc),
            deleting: true,
            node_reuse: true,
            hosts: &hosts,
            data: &data,
        });
        m.status = s.status;
        let Some(a) = s.action else {
            assert_eq!(
                m.status.condition("Ready").map(|c| c.reason.as_str()),
                Some("Deprovisioning")
            );
            hosts[1].state = HostStateKind::Available;
            continue;
        };
        if a == MachineAction::ReleaseData {
            data = DataState::NotNeeded;
        }
        apply(&a, &mut hosts, &mut m, &mut mc);
        let done = a == MachineAction::Finalized;
        actions.push(a);
        if done {
            break;
        }
    }
    assert_eq!(
        actions,
        [
            MachineAction::DeprovisionHost {
                host: "c1/node-b".into()
            },
            MachineAction::ReleaseHost {
                host: "c1/node-b".into(),
                reuse_for: Some("c1-md-0".into())
            },
            MachineAction::ReleaseData,
            MachineAction::Finalized,
        ]
    );
    assert!(hosts[1].host.spec.consumer_ref.is_none() && hosts[1].host.spec.image.is_none());
}

#[test]
fn machines_wait_with_a_condition_saying_why() {
    let m = m3m(r#"{"matchLabels": {"role": "worker"}}"#);
    let mc = machine();
    let reason = |hosts: &[HostView], machine: Option<&Machine>| {
        let s = step(&MachineInput {
            metal3_machine: &m,
            machine,
            deleting: false,
            node_reuse: false,
            hosts,
            data: &DataState::Pending(None),
        });
        assert_eq!(s.action, None);
        assert!(s.requeue_after.is_some());
        let c = s
            .status
            .condition("AssociateBMH")
            .cloned()
            .unwrap_or_else(|| panic!("no AssociateBMH condition"));
        assert_eq!(c.status, "False");
        (c.reason, c.message)
    };
    assert_eq!(reason(&[], None).0, "WaitingForMachine");
    let mut no_bootstrap = mc.clone();
    no_bootstrap.spec.bootstrap.data_secret_name = None;
    assert_eq!(
        reason(&[], Some(&no_bootstrap)).0,
        "WaitingForBootstrapData"
    );
    // Matching hosts that are busy, consumed, unhealthy, in error or elsewhere are not free.
    let mut consumed = host("n1", &[("role", "worker")], HostStateKind::Available);
    consumed.host.spec.consumer_ref = Some(Default::default());
    let mut unhealthy = host("n2", &[("role", "worker")], HostStateKind::Available);
    unhealthy
        .host
        .metadata
        .annotations
        .insert(UNHEALTHY_ANNOTATION.into(), String::new());
    let mut failed = host("n3", &[("role", "worker")], HostStateKind::Available);
    failed.error = Some("power on failed".into());
    let mut elsewhere = host("n4", &[("role", "worker")], HostStateKind::Available);
    elsewhere.host.metadata.namespace = Some("other".into());
    let hosts = [
        consumed,
        unhealthy,
        failed,
        elsewhere,
        host("n5", &[("role", "worker")], HostStateKind::Inspecting),
        host("n6", &[("role", "storage")], HostStateKind::Available),
    ];
    let (r, message) = reason(&hosts, Some(&mc));
    assert_eq!(r, "NoAvailableHost");
    assert!(message.contains("namespace c1"), "{message}");
    // A selector the API server would refuse is reported as such.
    let bad =
        m3m(r#"{"matchExpressions": [{"key": "role", "operator": "like", "values": ["x"]}]}"#);
    let s = step(&MachineInput {
        metal3_machine: &bad,
        machine: Some(&mc),
        deleting: false,
        node_reuse: false,
        hosts: &hosts,
        data: &DataState::Pending(None),
    });
    assert_eq!(
        s.status
            .condition("AssociateBMH")
            .map(|c| c.reason.as_str()),
        Some("InvalidHostSelector")
    );
    assert!(s.status.failure_message.is_some_and(|f| f.contains("like")));
}

#[test]
fn node_reuse_prefers_the_host_released_for_the_same_deployment() {
    let m = m3m(r#"{"matchLabels": {"role": "worker"}}"#);
    let hosts = [
        host("node-a", &[("role", "worker")], HostStateKind::Available),
        host(
            "node-z",
            &[("role", "worker"), (NODE_REUSE_LABEL, "c1-md-0")],
            HostStateKind::Available,
        ),
        host(
            "node-b",
            &[("role", "worker"), (NODE_REUSE_LABEL, "other-md")],
            HostStateKind::Available,
        ),
    ];
    let chosen = |reuse: Option<&str>| {
        choose_host(&m, &hosts, reuse)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|h| h.host.metadata.name.clone())
    };
    assert_eq!(chosen(Some("c1-md-0")).as_deref(), Some("node-z"));
    assert_eq!(chosen(Some("c1-md-9")).as_deref(), Some("node-a"));
    assert_eq!(chosen(None).as_deref(), Some("node-a"));
}

#[test]
fn a_failed_rendering_is_tried_again_and_shown() {
    let m = m3m(r#"{"matchLabels": {"role": "worker"}}"#);
    let mut h = host("node-b", &[("role", "worker")], HostStateKind::Available);
    h.host.spec.consumer_ref = Some(metal3_operator::manifests::ObjectReference {
        api_version: "infrastructure.cluster.x-k8s.io/v1beta1".into(),
        kind: "Metal3Machine".into(),
        name: "worker-0".into(),
        namespace: Some("c1".into()),
    });
    let s = step(&MachineInput {
        metal3_machine: &m,
        machine: Some(&machine()),
        deleting: false,
        node_reuse: false,
        hosts: &[h],
        data: &DataState::Pending(Some("IPPool c1/pool1: no free address".into())),
    });
    assert_eq!(s.action, Some(MachineAction::RenderData));
    assert!(s.requeue_after.is_some());
    assert_eq!(
        s.status.failure_message.as_deref(),
        Some("IPPool c1/pool1: no free address")
    );
    let ready = s
        .status
        .condition("Ready")
        .unwrap_or_else(|| panic!("no Ready condition"));
    assert_eq!(ready.reason, "WaitingForData");
}

#[test]
fn a_machine_takes_back_the_host_its_annotation_names() {
    let mut m = m3m(r#"{"matchLabels": {"role": "worker"}}"#);
    m.metadata
        .annotations
        .insert("metal3.io/BareMetalHost".into(), "c1/node-b".into());
    // node-b is mid-provisioning and lost its consumerRef; node-a is free and first by
    // name, but the machine's data was rendered for node-b.
    let hosts = [
        host("node-a", &[("role", "worker")], HostStateKind::Available),
        host("node-b", &[("role", "worker")], HostStateKind::Provisioning),
    ];
    let s = step(&MachineInput {
        metal3_machine: &m,
        machine: Some(&machine()),
        deleting: false,
        node_reuse: false,
        hosts: &hosts,
        data: &ready_data(),
    });
    assert!(
        matches!(&s.action, Some(MachineAction::Associate { host, .. }) if host == "c1/node-b"),
        "{:?}",
        s.action
    );
}
