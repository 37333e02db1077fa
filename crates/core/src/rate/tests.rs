use proptest::prelude::*;

use super::*;

fn calls(n: u64, secs: u64) -> Rate {
    Rate {
        calls: Some(n),
        bytes: None,
        window: Duration::from_secs(secs),
    }
}

fn tool() -> Scope {
    Scope::Tool("mail".into(), "send".into())
}

#[test]
fn a_burst_of_the_allowance_then_a_clear_refusal_with_retry_after() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let limits = [(tool(), calls(3, 60))];
    for _ in 0..3 {
        l.admit("alice", &limits, t0).unwrap();
    }
    let e = l.admit("alice", &limits, t0).unwrap_err();
    assert_eq!((e.scope.clone(), e.measure, e.limit), (tool(), Measure::Calls, 3));
    // One token refills in 20 s.
    assert_eq!(e.retry_after, Duration::from_secs(20));
    assert_eq!(
        e.to_string(),
        "rate limit reached for calls to tool `send` of upstream `mail`: 3 calls per 60s; retry after 20s"
    );
    // Other principals have their own buckets.
    l.admit("bob", &limits, t0).unwrap();
    // After the retry-after, one more call goes through, and only one.
    let later = t0 + e.retry_after;
    l.admit("alice", &limits, later).unwrap();
    assert!(l.admit("alice", &limits, later).is_err());
}

#[test]
fn a_refused_call_charges_no_bucket() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let wide = (Scope::All, calls(100, 60));
    let narrow = (tool(), calls(1, 60));
    l.admit("alice", &[wide.clone(), narrow.clone()], t0).unwrap();
    for _ in 0..10 {
        assert!(l.admit("alice", &[wide.clone(), narrow.clone()], t0).is_err());
    }
    // Only the admitted call took from the wide bucket.
    let left = l.level("alice", &Scope::All, Measure::Calls, t0).unwrap();
    assert!((left - 99.0).abs() < 1e-9, "{left}");
}

#[test]
fn the_scope_that_frees_up_last_is_named() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let a = (Scope::Upstream("mail".into()), calls(1, 10));
    let b = (tool(), calls(1, 3600));
    l.admit("alice", &[a.clone(), b.clone()], t0).unwrap();
    let e = l.admit("alice", &[a, b], t0).unwrap_err();
    assert_eq!(e.scope, tool());
    assert_eq!(e.retry_after, Duration::from_secs(3600));
}

#[test]
fn bytes_are_charged_after_the_call_and_debt_blocks_until_repaid() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let limits = [(
        Scope::Upstream("web".into()),
        Rate {
            calls: None,
            bytes: Some(1000),
            window: Duration::from_secs(10),
        },
    )];
    l.admit("alice", &limits, t0).unwrap();
    l.charge_bytes("alice", &limits, 1500, t0);
    let e = l.admit("alice", &limits, t0).unwrap_err();
    assert_eq!(e.measure, Measure::Bytes);
    // 500 bytes of debt at 100 bytes/s.
    assert_eq!(e.retry_after, Duration::from_secs(5));
    assert!(l.admit("alice", &limits, t0 + Duration::from_secs(4)).is_err());
    l.admit("alice", &limits, t0 + Duration::from_secs(6)).unwrap();
}

#[test]
fn retry_after_is_at_least_a_second() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let limits = [(Scope::All, calls(1000, 1))];
    for _ in 0..1000 {
        l.admit("a", &limits, t0).unwrap();
    }
    assert_eq!(
        l.admit("a", &limits, t0).unwrap_err().retry_after,
        Duration::from_secs(1)
    );
}

#[test]
fn calls_in_window_slides() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let s = tool();
    assert_eq!(l.calls_in_window("a", &s, t0), 0);
    for _ in 0..10 {
        l.count("a", &s, t0);
    }
    assert_eq!(l.calls_in_window("a", &s, t0), 10);
    assert_eq!(l.calls_in_window("b", &s, t0), 0);
    // Half-way through the next window, half of the previous one still counts.
    assert_eq!(l.calls_in_window("a", &s, t0 + POLICY_WINDOW + POLICY_WINDOW / 2), 5);
    // Two windows later, nothing.
    assert_eq!(l.calls_in_window("a", &s, t0 + POLICY_WINDOW * 3), 0);
}

#[test]
fn memory_is_bounded_and_full_buckets_go_first() {
    let t0 = Instant::now();
    let mut l = Limiter::new();
    let limits = [(Scope::All, calls(10, 1))];
    for i in 0..Limiter::MAX_KEYS {
        l.admit(&format!("p{i}"), &limits, t0).unwrap();
    }
    assert_eq!(l.len(), Limiter::MAX_KEYS);
    // A second later every bucket has refilled: adding one more drops them all, losing nothing.
    let t1 = t0 + Duration::from_secs(1);
    l.admit("new", &limits, t1).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l.evicted, Limiter::MAX_KEYS as u64);
}

proptest! {
    /// However calls are spaced, no principal gets more than the burst plus the refill over the
    /// time elapsed.
    #[test]
    fn never_more_than_burst_plus_refill(gaps in proptest::collection::vec(0u64..5_000, 1..200), n in 1u64..20) {
        let t0 = Instant::now();
        let mut l = Limiter::new();
        let limits = [(Scope::All, calls(n, 10))];
        let mut t = t0;
        let mut admitted = 0u64;
        for g in gaps {
            t += Duration::from_millis(g);
            if l.admit("a", &limits, t).is_ok() {
                admitted += 1;
            }
        }
        let elapsed = t.duration_since(t0).as_secs_f64();
        let bound = n as f64 + elapsed * n as f64 / 10.0;
        prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
    }
}
