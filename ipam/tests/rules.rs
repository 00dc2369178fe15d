//! One test per rule of the pool: allocation order, strategies, reservations, validation,
//! exhaustion, serialization and restore.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use ipam::{
    AllocationStrategy, ClaimError, IpPool, IpPoolSpec, PoolError, PoolRange, PoolState,
    RestoreError,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(json: &str) -> IpPoolSpec {
    serde_json::from_str(json).unwrap()
}

fn range(start: &str, end: &str) -> PoolRange {
    PoolRange::from_to(ip(start), ip(end))
}

fn pool_of(ranges: Vec<PoolRange>, prefix: u8) -> IpPoolSpec {
    IpPoolSpec {
        pools: ranges,
        prefix: Some(prefix),
        name_prefix: "test".into(),
        ..IpPoolSpec::default()
    }
}

fn claim(pool: &mut IpPool, name: &str) -> String {
    pool.claim(name).unwrap().address.to_string()
}

// Upstream `Test AllocateAddress` cases (ip-address-manager `ipam/ippool_manager_test.go`).

#[test]
fn upstream_lowest_free_after_used_addresses() {
    let mut pool = IpPool::new(&pool_of(vec![range("192.168.0.11", "192.168.0.20")], 24)).unwrap();
    assert_eq!(claim(&mut pool, "a"), "192.168.0.11");
    assert_eq!(claim(&mut pool, "b"), "192.168.0.12");
    assert_eq!(claim(&mut pool, "c"), "192.168.0.13");
}

#[test]
fn upstream_pre_allocation_in_second_pool_uses_spec_level_defaults() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":24,"gateway":"192.168.0.1","dnsServers":["8.8.8.8"],
            "pools":[{"start":"192.168.0.11","end":"192.168.0.20"},{"start":"192.168.0.21","end":"192.168.0.30"}],
            "preAllocations":{"TestRef":"192.168.0.21"}}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    let a = pool.claim("TestRef").unwrap();
    assert_eq!(a.address, ip("192.168.0.21"));
    assert_eq!(a.prefix, 24);
    assert_eq!(a.gateway, Some(ip("192.168.0.1")));
    assert_eq!(&*a.dns_servers, &[ip("8.8.8.8")]);
}

#[test]
fn upstream_range_overrides_win_over_pool_defaults() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":24,"gateway":"192.168.0.1","dnsServers":["8.8.8.8"],
            "pools":[{"start":"192.168.1.10","end":"192.168.1.20","prefix":26,"gateway":"192.168.1.1","dnsServers":["8.8.4.4"]}],
            "preAllocations":{"TestRef":"192.168.1.15"}}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    let a = pool.claim("TestRef").unwrap();
    assert_eq!(
        (a.address, a.prefix, a.gateway),
        (ip("192.168.1.15"), 26, Some(ip("192.168.1.1")))
    );
    assert_eq!(&*a.dns_servers, &[ip("8.8.4.4")]);
}

#[test]
fn upstream_ipv6_pre_allocation_is_compared_parsed() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":96,
            "pools":[{"start":"2001:db8::1","end":"2001:db8::20"}],
            "preAllocations":{"TestRef":"2001:0db8::0005"}}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(claim(&mut pool, "TestRef"), "2001:db8::5");
    assert_eq!(claim(&mut pool, "other"), "2001:db8::1");
    for i in 0..3 {
        pool.claim(&format!("x{i}")).unwrap();
    }
    assert_eq!(
        claim(&mut pool, "x3"),
        "2001:db8::6",
        "the pre-allocated ::5 is skipped"
    );
}

#[test]
fn upstream_second_pool_is_used_when_first_is_full_and_subnet_starts_after_written_address() {
    // The subnet pool starts at the written address + 1 (.11), so it does not overlap .10.
    let s = spec(
        r#"{"namePrefix":"t","pools":[{"start":"192.168.1.10","end":"192.168.1.10","prefix":24},{"subnet":"192.168.1.10/24"}]}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(claim(&mut pool, "a"), "192.168.1.10");
    pool.claim_address("used", ip("192.168.1.11")).unwrap();
    let b = pool.claim("b").unwrap();
    assert_eq!((b.address, b.prefix), (ip("192.168.1.12"), 24));
    let overlapping = spec(
        r#"{"namePrefix":"t","pools":[{"start":"192.168.1.10","end":"192.168.1.11","prefix":24},{"subnet":"192.168.1.10/24"}]}"#,
    );
    assert_eq!(
        IpPool::new(&overlapping).unwrap_err(),
        PoolError::Overlap {
            first: 0,
            second: 1
        }
    );
}

#[test]
fn upstream_single_address_pool_exhausts() {
    let mut pool = IpPool::new(&pool_of(vec![range("192.168.0.10", "192.168.0.10")], 24)).unwrap();
    assert_eq!(claim(&mut pool, "a"), "192.168.0.10");
    let err = pool.claim("b").unwrap_err();
    assert!(err.to_string().contains("Exhausted IP Pools"), "{err}");
    assert_eq!(pool.free_count(), 0);
}

#[test]
fn slash_30_keeps_network_and_broadcast_unless_told() {
    let mut s = spec(r#"{"namePrefix":"t","pools":[{"subnet":"192.168.0.0/30"}]}"#);
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(claim(&mut pool, "a"), "192.168.0.1");
    assert_eq!(claim(&mut pool, "b"), "192.168.0.2");
    assert!(matches!(pool.claim("c"), Err(ClaimError::Exhausted { .. })));
    // Upstream's behaviour (its "Exhausted pools subnet" test uses .1, .2 and .3).
    s.allocate_reserved_addresses = true;
    let mut pool = IpPool::new(&s).unwrap();
    let got: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| claim(&mut pool, n))
        .collect();
    assert_eq!(got, ["192.168.0.1", "192.168.0.2", "192.168.0.3"]);
}

#[test]
fn gateway_network_and_broadcast_are_never_handed_out() {
    let s = spec(
        r#"{"namePrefix":"t","gateway":"192.168.0.1","prefix":24,"pools":[{"start":"192.168.0.0","end":"192.168.0.255"}]}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(pool.free_count(), 253);
    assert_eq!(claim(&mut pool, "a"), "192.168.0.2");
    let err = pool.claim_address("b", ip("192.168.0.255")).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    // /31 and /32 have no network or broadcast address (RFC 3021).
    let mut p31 = IpPool::new(&pool_of(vec![range("10.0.0.0", "10.0.0.1")], 31)).unwrap();
    assert_eq!(claim(&mut p31, "a"), "10.0.0.0");
    assert_eq!(claim(&mut p31, "b"), "10.0.0.1");
    // IPv6: only the gateway is reserved.
    let s6 = spec(
        r#"{"namePrefix":"t","gateway":"2001:db8::","prefix":64,"pools":[{"start":"2001:db8::","end":"2001:db8::2"}]}"#,
    );
    let mut p6 = IpPool::new(&s6).unwrap();
    assert_eq!(claim(&mut p6, "a"), "2001:db8::1");
}

#[test]
fn claims_are_idempotent_and_release_frees_the_lowest_for_reuse() {
    let mut pool = IpPool::new(&pool_of(vec![range("10.0.0.10", "10.0.0.20")], 24)).unwrap();
    let a = pool.claim("a").unwrap();
    assert_eq!(pool.claim("a").unwrap(), a);
    assert_eq!(claim(&mut pool, "b"), "10.0.0.11");
    assert_eq!(claim(&mut pool, "c"), "10.0.0.12");
    assert_eq!(pool.release("a"), Some(ip("10.0.0.10")));
    assert_eq!(pool.release("a"), None);
    assert_eq!(pool.get("a"), None);
    assert_eq!(
        claim(&mut pool, "d"),
        "10.0.0.10",
        "sequential reuses at once"
    );
    assert_eq!(pool.len(), 3);
}

#[test]
fn reuse_last_hands_out_fresh_addresses_first_then_oldest_release() {
    let mut s = pool_of(vec![range("10.0.0.1", "10.0.0.5")], 24);
    s.allocation_strategy = AllocationStrategy::ReuseLast;
    let mut pool = IpPool::new(&s).unwrap();
    for n in ["a", "b", "c"] {
        pool.claim(n).unwrap();
    }
    pool.release("b");
    assert_eq!(claim(&mut pool, "d"), "10.0.0.4");
    assert_eq!(claim(&mut pool, "e"), "10.0.0.5");
    pool.release("a");
    pool.release("c");
    assert_eq!(claim(&mut pool, "f"), "10.0.0.2", "released first");
    assert_eq!(claim(&mut pool, "g"), "10.0.0.1");
    assert_eq!(claim(&mut pool, "h"), "10.0.0.3");
    assert!(pool.claim("i").is_err());
    // `random` in a manifest selects it.
    let r = spec(
        r#"{"namePrefix":"t","allocationStrategy":"random","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.2"}]}"#,
    );
    assert_eq!(r.allocation_strategy, AllocationStrategy::ReuseLast);
}

#[test]
fn reuse_last_order_survives_restore_and_specific_requests() {
    let mut s = pool_of(vec![range("10.0.0.1", "10.0.0.4")], 24);
    s.allocation_strategy = AllocationStrategy::ReuseLast;
    let mut pool = IpPool::new(&s).unwrap();
    for n in ["a", "b", "c", "d"] {
        pool.claim(n).unwrap();
    }
    for n in ["c", "a", "d"] {
        pool.release(n);
    }
    // A specific request takes a queued address out of the order.
    assert_eq!(
        pool.claim_address("x", ip("10.0.0.1")).unwrap().address,
        ip("10.0.0.1")
    );
    let state = pool.state();
    assert_eq!(state.release_order, [ip("10.0.0.3"), ip("10.0.0.4")]);
    let mut restored = IpPool::restore(&s, &state).unwrap();
    assert_eq!(restored, pool);
    assert_eq!(claim(&mut restored, "y"), "10.0.0.3");
    assert_eq!(claim(&mut restored, "z"), "10.0.0.4");
}

#[test]
fn pre_allocated_addresses_stay_with_their_claim() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.2"}],"preAllocations":{"fixed":"10.0.0.1"}}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(claim(&mut pool, "other"), "10.0.0.2");
    assert!(
        pool.claim("third").is_err(),
        "the pre-allocated address is never handed out"
    );
    let err = pool.claim_address("third", ip("10.0.0.1")).unwrap_err();
    assert!(
        err.to_string().contains("pre-allocated to another claim"),
        "{err}"
    );
    assert_eq!(claim(&mut pool, "fixed"), "10.0.0.1");
    pool.release("fixed");
    assert!(pool.claim("third").is_err(), "still reserved after release");
    assert_eq!(claim(&mut pool, "fixed"), "10.0.0.1");
}

#[test]
fn specific_address_requests() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.9"}],"preAllocations":{"fixed":"10.0.0.9"}}"#,
    );
    let mut pool = IpPool::new(&s).unwrap();
    assert_eq!(
        pool.claim_address("a", ip("10.0.0.5")).unwrap().address,
        ip("10.0.0.5")
    );
    assert_eq!(
        pool.claim_address("a", ip("10.0.0.5")).unwrap().address,
        ip("10.0.0.5")
    );
    assert!(matches!(
        pool.claim_address("a", ip("10.0.0.6")),
        Err(ClaimError::AlreadyHolds { .. })
    ));
    let e = pool.claim_address("b", ip("10.0.0.5")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Requested IP not available: 10.0.0.5 for claim b: in use"
    );
    let e = pool.claim_address("b", ip("10.0.1.5")).unwrap_err();
    assert!(e.to_string().ends_with("outside every range"), "{e}");
    let e = pool.claim_address("b", ip("::1")).unwrap_err();
    assert!(e.to_string().ends_with("outside every range"), "{e}");
    let e = pool.claim_address("fixed", ip("10.0.0.2")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("PreAllocation and requested ip address are conflicting"),
        "{e}"
    );
    assert_eq!(
        pool.claim_address("fixed", ip("10.0.0.9")).unwrap().address,
        ip("10.0.0.9")
    );
    // The sequential allocator skips the requested address.
    for (n, want) in [
        ("c", "10.0.0.1"),
        ("d", "10.0.0.2"),
        ("e", "10.0.0.3"),
        ("f", "10.0.0.4"),
        ("g", "10.0.0.6"),
    ] {
        assert_eq!(claim(&mut pool, n), want);
    }
}

#[test]
fn exhaustion_is_not_sticky() {
    let mut pool = IpPool::new(&pool_of(vec![range("10.0.0.1", "10.0.0.2")], 24)).unwrap();
    pool.claim("a").unwrap();
    pool.claim("b").unwrap();
    assert_eq!(
        pool.claim("c").unwrap_err(),
        ClaimError::Exhausted { claim: "c".into() }
    );
    assert_eq!(
        pool.claim("c").unwrap_err().to_string(),
        "Exhausted IP Pools: no free address for claim c"
    );
    pool.release("a");
    assert_eq!(claim(&mut pool, "c"), "10.0.0.1");
    assert!(matches!(pool.claim(""), Err(ClaimError::EmptyName)));
}

#[test]
fn ipv6_near_the_top_of_the_address_space() {
    let mut pool = IpPool::new(&pool_of(
        vec![range(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        )],
        126,
    ))
    .unwrap();
    let got: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| claim(&mut pool, n))
        .collect();
    assert_eq!(
        got,
        [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        ]
    );
    assert!(pool.claim("d").is_err());
    pool.release("c");
    assert_eq!(
        claim(&mut pool, "d"),
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert_eq!(pool.address_name(ip("ffff::1")), "test-ffff--1");

    // A huge subnet: one interval, no overflow, a saturated free count.
    let huge = spec(r#"{"namePrefix":"t","pools":[{"subnet":"::/0"}]}"#);
    let mut pool = IpPool::new(&huge).unwrap();
    assert_eq!(claim(&mut pool, "a"), "::1");
    assert_eq!(pool.free_count(), u128::MAX - 1);
    let top = spec(
        r#"{"namePrefix":"t","pools":[{"subnet":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}]}"#,
    );
    assert_eq!(
        IpPool::new(&top).unwrap_err(),
        PoolError::EmptyRange { index: 0 }
    );
}

#[test]
fn one_address_pools_of_each_family() {
    for (start, prefix) in [("10.1.2.3", 32), ("2001:db8::7", 128), ("10.1.2.3", 24)] {
        let mut pool = IpPool::new(&pool_of(vec![range(start, start)], prefix)).unwrap();
        assert_eq!(pool.free_count(), 1);
        assert_eq!(claim(&mut pool, "a"), start);
        assert!(pool.claim("b").is_err());
        pool.release("a");
        assert_eq!(claim(&mut pool, "b"), start);
    }
}

#[test]
fn validation_errors_are_clear_and_come_before_any_allocation() {
    let cases: Vec<(&str, String)> = vec![
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.9","end":"10.0.0.1"}]}"#,
            "pools[0]: end IP 10.0.0.1 is before start IP 10.0.0.9".into(),
        ),
        (
            r#"{"namePrefix":"t","pools":[{"start":"10.0.1.1","end":"10.0.1.5","subnet":"10.0.0.0/24"}]}"#,
            "pools[0]: 10.0.1.1 is outside subnet 10.0.0.0/24".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"gateway":"10.0.1.1","pools":[{"start":"10.0.0.1","end":"10.0.0.5"}]}"#,
            "pools[0]: gateway 10.0.1.1 is outside the network 10.0.0.0/24 of the range".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.1.5"}]}"#,
            "pools[0]: 10.0.1.5 is outside the network 10.0.0.0/24 of the range".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"},{"start":"10.0.0.5","end":"10.0.0.9"}]}"#,
            "pools[0] and pools[1] overlap".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"}],"preAllocations":{"a":"10.0.0.2","b":"10.0.0.2"}}"#,
            r#"pre-allocation b: IP address 10.0.0.2 is already pre-allocated to claim "a""#.into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"}],"preAllocations":{"a":"10.0.0.6"}}"#,
            "pre-allocation a: 10.0.0.6 is out of bounds of the pools given".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"gateway":"10.0.0.1","pools":[{"start":"10.0.0.1","end":"10.0.0.5"}],"preAllocations":{"a":"10.0.0.1"}}"#,
            "pre-allocation a: 10.0.0.1 is the gateway address of its range".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"2001:db8::1"}]}"#,
            "mixed address families: pools[0].end 2001:db8::1 is not IPv4".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"},{"subnet":"2001:db8::/64"}]}"#,
            "mixed address families: pools[1].subnet 2001:db8:: is not IPv4".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"}],"preAllocations":{"a":"::1"}}"#,
            "mixed address families: pre-allocation a ::1 is not IPv4".into(),
        ),
        (
            r#"{"namePrefix":"t","pools":[]}"#,
            "pool has no ranges".into(),
        ),
        (
            r#"{"namePrefix":"","prefix":24,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"}]}"#,
            "namePrefix must not be empty".into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":24,"pools":[{"end":"10.0.0.5"}]}"#,
            "pools[0]: either start or subnet is required".into(),
        ),
        (
            r#"{"namePrefix":"t","pools":[{"start":"10.0.0.1","end":"10.0.0.5"}]}"#,
            "pools[0]: no prefix length: set prefix on the range or the pool, or give a subnet"
                .into(),
        ),
        (
            r#"{"namePrefix":"t","prefix":33,"pools":[{"start":"10.0.0.1","end":"10.0.0.5"}]}"#,
            "pools[0]: prefix /33 is invalid for IPv4".into(),
        ),
    ];
    for (json, text) in cases {
        assert_eq!(
            IpPool::new(&spec(json)).unwrap_err().to_string(),
            text,
            "{json}"
        );
    }
    assert!(
        serde_json::from_str::<IpPoolSpec>(
            r#"{"namePrefix":"t","pools":[{"subnet":"10.0.0.0/33"}]}"#
        )
        .is_err()
    );
}

#[test]
fn start_only_ranges_end_at_their_network_or_subnet() {
    let mut pool = IpPool::new(&spec(
        r#"{"namePrefix":"t","prefix":30,"pools":[{"start":"10.0.0.1"}]}"#,
    ))
    .unwrap();
    assert_eq!(pool.free_count(), 2, ".1 and .2 (.3 is the broadcast)");
    let pool2 = IpPool::new(&spec(
        r#"{"namePrefix":"t","pools":[{"start":"10.0.0.250","subnet":"10.0.0.0/24"}]}"#,
    ))
    .unwrap();
    assert_eq!(pool2.free_count(), 5);
    pool.claim("a").unwrap();
}

#[test]
fn spec_serializes_with_metal3_field_names() {
    let json = r#"{"pools":[{"start":"10.0.0.1","end":"10.0.0.9","dnsServers":["1.1.1.1"]},{"subnet":"10.0.1.0/24","prefix":24,"gateway":"10.0.1.1"}],"prefix":24,"gateway":"10.0.0.254","dnsServers":["8.8.8.8"],"preAllocations":{"a":"10.0.0.3"},"namePrefix":"prov","allocationStrategy":"sequential"}"#;
    let s = spec(json);
    assert_eq!(serde_json::to_string(&s).unwrap(), json);
    IpPool::new(&s).unwrap();
}

#[test]
fn state_round_trips_exactly() {
    let s = pool_of(vec![range("10.0.0.1", "10.0.0.200")], 24);
    let mut pool = IpPool::new(&s).unwrap();
    for i in 0..50 {
        pool.claim(&format!("c{i}")).unwrap();
    }
    for i in (0..50).step_by(3) {
        pool.release(&format!("c{i}"));
    }
    let json = serde_json::to_string(&pool.state()).unwrap();
    let mut restored = IpPool::restore(&s, &serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(restored, pool);
    for i in 100..130 {
        let n = format!("c{i}");
        assert_eq!(restored.claim(&n).unwrap(), pool.claim(&n).unwrap());
    }
}

#[test]
fn restoring_a_bad_state_is_an_error_not_a_repair() {
    let s = spec(
        r#"{"namePrefix":"t","prefix":24,"gateway":"10.0.0.1","pools":[{"start":"10.0.0.1","end":"10.0.0.9"}],"preAllocations":{"fixed":"10.0.0.9"}}"#,
    );
    let state = |pairs: &[(&str, &str)]| PoolState {
        allocations: pairs.iter().map(|(k, v)| (k.to_string(), ip(v))).collect(),
        release_order: vec![],
    };
    let check = |st: PoolState, want: &str| {
        let err = IpPool::restore(&s, &st).unwrap_err();
        assert_eq!(err.to_string(), want);
    };
    check(
        state(&[("a", "10.0.0.2"), ("b", "10.0.0.2")]),
        "10.0.0.2 is allocated to both a and b",
    );
    check(
        state(&[("a", "10.0.0.10")]),
        "claim a: 10.0.0.10 is outside every range of the pool",
    );
    check(
        state(&[("a", "::2")]),
        "claim a: ::2 is outside every range of the pool",
    );
    check(
        state(&[("a", "10.0.0.1")]),
        "claim a: 10.0.0.1 is a reserved (gateway) address",
    );
    check(
        state(&[("fixed", "10.0.0.3")]),
        "claim fixed: holds 10.0.0.3, but it is pre-allocated 10.0.0.9",
    );
    check(
        state(&[("a", "10.0.0.9")]),
        "claim a: holds 10.0.0.9, but that address is pre-allocated to fixed",
    );
    check(
        state(&[("", "10.0.0.3")]),
        "allocation with an empty claim name",
    );
    let mut st = state(&[("a", "10.0.0.2")]);
    st.release_order = vec![ip("10.0.0.3")];
    assert!(matches!(
        IpPool::restore(&s, &st),
        Err(RestoreError::BadReleaseOrder { .. })
    ));
    assert!(IpPool::restore(&s, &state(&[("a", "10.0.0.2"), ("fixed", "10.0.0.9")])).is_ok());
}

#[test]
fn address_names_follow_metal3() {
    let pool = IpPool::new(&spec(r#"{"namePrefix":"test1-prov","prefix":24,"pools":[{"start":"192.168.0.1","end":"192.168.0.20"}]}"#)).unwrap();
    assert_eq!(
        pool.address_name(ip("192.168.0.13")),
        "test1-prov-192-168-0-13"
    );
    assert_eq!(pool.address_name(ip("2001:db8::")), "test1-prov-2001-db8");
}

#[test]
fn address_names_keep_the_dots_of_their_prefix() {
    // Upstream replaces the separators of the address only: `prov.lab` stays as written.
    let pool = IpPool::new(&spec(r#"{"namePrefix":"prov.lab","prefix":24,"pools":[{"start":"192.168.0.1","end":"192.168.0.20"}]}"#)).unwrap();
    assert_eq!(
        pool.address_name(ip("192.168.0.13")),
        "prov.lab-192-168-0-13"
    );
}
