use super::*;

fn p(tool: &str, hash: &str, by: &str) -> Pin {
    Pin {
        upstream: "mail".into(),
        tool: tool.into(),
        hash: hash.into(),
        definition: format!("{{\"name\":\"{tool}\"}}"),
        approved_at: 100,
        approved_by: by.into(),
    }
}

#[tokio::test]
async fn first_use_pins_once_and_approval_replaces() {
    let s = Store::memory().await.unwrap();
    assert!(s.pin_first_use(&p("send", "aa", "first-use")).await.unwrap());
    // A second first-use pin (another process, a different definition) does not win.
    assert!(!s.pin_first_use(&p("send", "bb", "first-use")).await.unwrap());
    assert_eq!(s.pin("mail", "send").await.unwrap().unwrap().hash, "aa");

    s.record_sighting("mail", "send", "bb", "{}", 200).await.unwrap();
    s.record_sighting("mail", "send", "bb", "{}", 300).await.unwrap();
    s.record_sighting("mail", "read", "cc", "{}", 300).await.unwrap();
    let seen = s.sightings().await.unwrap();
    assert_eq!(seen.len(), 2);
    let send = seen.iter().find(|x| x.tool == "send").unwrap();
    assert_eq!((send.first_seen, send.last_seen), (200, 300));

    s.approve(&p("send", "bb", "cli:alice")).await.unwrap();
    let pin = s.pin("mail", "send").await.unwrap().unwrap();
    assert_eq!((pin.hash.as_str(), pin.approved_by.as_str()), ("bb", "cli:alice"));
    // Approving clears that tool's sightings and no other's.
    let seen = s.sightings().await.unwrap();
    assert_eq!(seen.iter().map(|x| x.tool.as_str()).collect::<Vec<_>>(), ["read"]);
    assert_eq!(s.pins().await.unwrap().len(), 1);
    assert!(s.pin("other", "send").await.unwrap().is_none());
}

#[tokio::test]
async fn a_file_database_persists_across_opens_and_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    {
        let s = Store::open(&data).await.unwrap();
        s.approve(&p("send", "aa", "cli:alice")).await.unwrap();
        s.close().await;
    }
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // Reopening runs the migrations again without harm and finds the pin.
    let s = Store::open(&data).await.unwrap();
    assert_eq!(s.pins().await.unwrap(), vec![p("send", "aa", "cli:alice")]);
}

#[tokio::test]
async fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot open the state database"), "{msg}");
    assert!(msg.contains("not-a-dir"), "{msg}");
}

#[tokio::test]
async fn grants_are_kept_per_upstream_and_owner_and_replaced_on_reconnect() {
    let s = Store::memory().await.unwrap();
    let g = Grant {
        upstream: "mail".into(),
        owner: String::new(),
        provider: "google".into(),
        scopes: "gmail.readonly".into(),
        secret: "oauth.mail".into(),
        created_at: 10,
    };
    assert!(s.grant("mail", "").await.unwrap().is_none());
    s.put_grant(&g).await.unwrap();
    let wider = Grant {
        scopes: "gmail.readonly gmail.send".into(),
        created_at: 20,
        ..g.clone()
    };
    s.put_grant(&wider).await.unwrap();
    assert_eq!(s.grant("mail", "").await.unwrap(), Some(wider));
    assert!(s.grant("mail", "alice").await.unwrap().is_none());
    assert_eq!(s.grants().await.unwrap().len(), 1);
    assert!(s.remove_grant("mail", "").await.unwrap());
    assert!(!s.remove_grant("mail", "").await.unwrap());
    assert!(s.grants().await.unwrap().is_empty());
}

#[tokio::test]
async fn api_keys_are_stored_by_id_and_revoked() {
    let s = Store::memory().await.unwrap();
    let k = ApiKey {
        id: "a1".into(),
        principal: "alice".into(),
        hash: vec![1; 32],
        created_at: 5,
    };
    s.put_api_key(&k).await.unwrap();
    // An id clash is refused, never a silent replacement of someone's key.
    assert!(
        s.put_api_key(&ApiKey {
            principal: "mallory".into(),
            ..k.clone()
        })
        .await
        .is_err()
    );
    assert_eq!(s.api_keys().await.unwrap(), [k]);
    assert!(s.remove_api_key("a1").await.unwrap());
    assert!(!s.remove_api_key("a1").await.unwrap());
    assert!(s.api_keys().await.unwrap().is_empty());
}

fn pending(id: &str, digest: &str, expires_ms: i64) -> Approval {
    Approval {
        id: id.into(),
        principal: "alice".into(),
        client: "claude".into(),
        upstream: "mail".into(),
        tool: "send_message".into(),
        arguments: "{}".into(),
        call_digest: digest.into(),
        reason: "untrusted".into(),
        created_ms: 10,
        expires_ms,
        state: ApprovalState::Pending,
        decided_by: None,
        decided_ms: None,
        note: None,
        grant_until_ms: None,
        operator_only: false,
        session: "session:s1".into(),
        arguments_full: "{}".into(),
    }
}

#[tokio::test]
async fn an_operator_approval_cannot_be_given_in_a_client_and_a_dead_sessions_approvals_expire() {
    let s = Store::memory().await.unwrap();
    let mut a = pending("op", "d9", 1000);
    a.operator_only = true;
    s.create_approval(&a).await.unwrap();
    assert!(
        !s.decide_approval_in_client("op", true, "client:x", None, 20)
            .await
            .unwrap()
    );
    assert!(s.decide_approval("op", true, "cli", None, None, 20).await.unwrap());
    s.create_approval(&pending("w", "d8", 1000)).await.unwrap();
    assert_eq!(
        s.expire_session_approvals("session:s1", 30).await.unwrap(),
        vec!["w".to_owned()]
    );
    assert_eq!(s.approval("w").await.unwrap().unwrap().state, ApprovalState::Expired);
}

#[tokio::test]
async fn an_approval_is_decided_once_and_used_once() {
    let s = Store::memory().await.unwrap();
    s.create_approval(&pending("a", "d1", 1000)).await.unwrap();
    assert_eq!(s.pending_approval_for("d1", 20).await.unwrap().as_deref(), Some("a"));
    assert_eq!(s.pending_approvals(20).await.unwrap(), 1);
    // Nothing to take while pending.
    assert_eq!(s.take_approval_for("d1", 20).await.unwrap(), None);
    assert!(s.decide_approval("a", true, "cli:bob", None, None, 30).await.unwrap());
    // A replayed or contrary decision does nothing.
    assert!(!s.decide_approval("a", true, "cli:bob", None, None, 31).await.unwrap());
    assert!(
        !s.decide_approval("a", false, "cli:eve", Some("no"), None, 31)
            .await
            .unwrap()
    );
    assert_eq!(s.take_approval_for("d1", 40).await.unwrap().as_deref(), Some("a"));
    // Used once.
    assert_eq!(s.take_approval_for("d1", 41).await.unwrap(), None);
    assert!(!s.use_approval("a", 41).await.unwrap());
    assert_eq!(s.approval("a").await.unwrap().unwrap().state, ApprovalState::Used);
}

#[tokio::test]
async fn grants_last_until_they_end_and_expiry_and_denial_are_final() {
    let s = Store::memory().await.unwrap();
    s.create_approval(&pending("g", "d2", 1000)).await.unwrap();
    assert!(
        s.decide_approval("g", true, "web:bob", None, Some(500), 30)
            .await
            .unwrap()
    );
    for now in [40, 100, 499] {
        assert_eq!(
            s.take_approval_for("d2", now).await.unwrap().as_deref(),
            Some("g"),
            "{now}"
        );
    }
    assert_eq!(s.take_approval_for("d2", 500).await.unwrap(), None);

    s.create_approval(&pending("x", "d3", 50)).await.unwrap();
    // Too late to decide.
    assert!(!s.decide_approval("x", true, "cli:bob", None, None, 60).await.unwrap());
    assert!(s.expire_approval("x", 60).await.unwrap());
    assert!(!s.expire_approval("x", 61).await.unwrap());

    s.create_approval(&pending("n", "d4", 1000)).await.unwrap();
    assert!(
        s.decide_approval("n", false, "cli:bob", Some("not today"), Some(900), 30)
            .await
            .unwrap()
    );
    let n = s.approval("n").await.unwrap().unwrap();
    assert_eq!(
        (n.state, n.note.as_deref(), n.grant_until_ms),
        (ApprovalState::Denied, Some("not today"), None)
    );
    assert_eq!(s.take_approval_for("d4", 40).await.unwrap(), None);
    assert_eq!(s.approvals(Some(ApprovalState::Denied), 10).await.unwrap().len(), 1);
}

fn audit_rows(seqs: impl IntoIterator<Item = i64>) -> Vec<AuditRow> {
    seqs.into_iter()
        .map(|seq| AuditRow {
            seq,
            at_ms: seq,
            body: format!("{{\"n\":{seq}}}"),
            prev: format!("h{}", seq - 1),
            hash: format!("h{seq}"),
        })
        .collect()
}

#[tokio::test]
async fn an_audit_batch_lands_whole_or_not_at_all() {
    let s = Store::memory().await.unwrap();
    s.append_audit(&audit_rows(1..=3)).await.unwrap();
    // One statement (a small batch): a clash in its middle keeps none of it.
    let mut clash = audit_rows(4..=6);
    clash[1].seq = 2;
    assert!(s.append_audit(&clash).await.is_err());
    assert_eq!(s.audit_head().await.unwrap(), Some((3, "h3".to_owned())));
    // Several statements (past one chunk), in one transaction: the same.
    let mut big = audit_rows(4..=1200);
    big[1100].seq = 3;
    assert!(s.append_audit(&big).await.is_err());
    assert_eq!(s.audit_head().await.unwrap(), Some((3, "h3".to_owned())));
    // And both shapes land whole when nothing clashes.
    s.append_audit(&audit_rows(4..=6)).await.unwrap();
    s.append_audit(&audit_rows(7..=1200)).await.unwrap();
    assert_eq!(s.audit_rows(0, 5000).await.unwrap().len(), 1200);
    assert_eq!(s.audit_head().await.unwrap(), Some((1200, "h1200".to_owned())));
}

/// The journaled batch (records and the journal's progress, sent as one multi-statement
/// query): records and progress land together or not at all, and a failed batch leaves no
/// transaction open on its connection.
#[tokio::test]
async fn a_journaled_batch_and_its_progress_land_together() {
    let dir = tempfile::tempdir().unwrap();
    // A file database: its pool has several connections, and a transaction left open on one
    // would block the next writer.
    let s = Store::open(dir.path()).await.unwrap();
    s.append_audit_journaled(&audit_rows(1..=3), None, Some(("seg-a", 3)))
        .await
        .unwrap();
    assert_eq!(s.audit_journal_upto("seg-a").await.unwrap(), 3);
    let mut clash = audit_rows(4..=6);
    clash[2].seq = 1;
    for _ in 0..4 {
        assert!(
            s.append_audit_journaled(&clash, None, Some(("seg-a", 6)))
                .await
                .is_err()
        );
    }
    assert_eq!(s.audit_journal_upto("seg-a").await.unwrap(), 3);
    assert_eq!(s.audit_head().await.unwrap(), Some((3, "h3".to_owned())));
    s.append_audit_journaled(&audit_rows(4..=6), None, Some(("seg-a", 6)))
        .await
        .unwrap();
    assert_eq!(s.audit_journal_upto("seg-a").await.unwrap(), 6);
    assert_eq!(s.audit_head().await.unwrap(), Some((6, "h6".to_owned())));
}
