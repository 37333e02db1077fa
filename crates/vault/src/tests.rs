use super::*;

async fn store() -> Store {
    Store::memory().await.unwrap()
}

#[tokio::test]
async fn secrets_round_trip_and_never_print() {
    let v = Vault::open(store().await, MasterKey::generate(), "test").await.unwrap();
    v.set("mail_password", "", "hunter2-correct-horse").await.unwrap();
    v.set("mail_password", "alice", "alice-own").await.unwrap();
    let shared = v.get("mail_password", "bob").await.unwrap().unwrap();
    assert_eq!(shared.expose(), "hunter2-correct-horse");
    assert_eq!(format!("{shared:?}"), "Secret(<redacted>)");
    // A principal's own secret wins over the shared one.
    assert_eq!(
        v.get("mail_password", "alice").await.unwrap().unwrap().expose(),
        "alice-own"
    );
    assert!(v.get("nope", "").await.unwrap().is_none());
    let list = v.list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|i| i.last_used_at.is_some()));
    assert!(!format!("{list:?}").contains("hunter2"));
    assert!(v.remove("mail_password", "alice").await.unwrap());
    assert!(matches!(v.set("bad name", "", "x").await, Err(VaultError::BadName(_))));
}

#[tokio::test]
async fn the_store_holds_ciphertext_only_bound_to_name_and_owner() {
    let s = store().await;
    let v = Vault::open(s.clone(), MasterKey::generate(), "test").await.unwrap();
    v.set("token", "", "ghp_plaintext_value").await.unwrap();
    let row = s.secret("token", "").await.unwrap().unwrap();
    assert!(!row.ciphertext.windows(5).any(|w| w == b"ghp_p"));
    assert_eq!(row.nonce.len(), 24);
    // Moving the ciphertext to another name does not open.
    s.put_secret(
        &SealedRow {
            name: "other".into(),
            ..row.clone()
        },
        1,
    )
    .await
    .unwrap();
    assert!(matches!(v.get("other", "").await, Err(VaultError::Tampered(n)) if n == "other"));
    // A fresh nonce per write.
    v.set("token", "", "ghp_plaintext_value").await.unwrap();
    assert_ne!(s.secret("token", "").await.unwrap().unwrap().nonce, row.nonce);
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error_even_for_an_empty_vault() {
    let s = store().await;
    let right = MasterKey::from_text(&"ab".repeat(32), "env").unwrap();
    Vault::open(s.clone(), right, "env").await.unwrap();
    let err = Vault::open(s.clone(), MasterKey::generate(), "`PORTCULLIS_MASTER_KEY`")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the one this vault was sealed with"), "{err}");
    assert!(err.contains("PORTCULLIS_MASTER_KEY"), "{err}");
}

#[tokio::test]
async fn rotation_reseals_everything_and_retires_the_old_key() {
    let s = store().await;
    let old = MasterKey::from_text(&"11".repeat(32), "old").unwrap();
    let v = Vault::open(s.clone(), old, "old").await.unwrap();
    v.set("a", "", "value-a").await.unwrap();
    v.set("b", "carol", "value-b").await.unwrap();
    let new_text = "22".repeat(32);
    let v = v
        .rotate(MasterKey::from_text(&new_text, "new").unwrap(), "new")
        .await
        .unwrap();
    assert_eq!(v.get("b", "carol").await.unwrap().unwrap().expose(), "value-b");
    assert!(
        Vault::open(s.clone(), MasterKey::from_text(&"11".repeat(32), "old").unwrap(), "old")
            .await
            .is_err()
    );
    let again = Vault::open(s, MasterKey::from_text(&new_text, "new").unwrap(), "new")
        .await
        .unwrap();
    assert_eq!(again.get("a", "").await.unwrap().unwrap().expose(), "value-a");
}

#[tokio::test]
async fn key_files_must_be_private_and_outside_the_data_dir() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let path = dir.path().join("master.key");
    let created = MasterKey::create_file(&path, &data).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let read = MasterKey::from_file(&path, &data).unwrap();
    assert_eq!(read.bytes(), created.bytes());
    assert!(MasterKey::create_file(&path, &data).is_err(), "never overwrites");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = MasterKey::from_file(&path, &data).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    let inside = data.join("master.key");
    let err = MasterKey::create_file(&inside, &data).unwrap_err().to_string();
    assert!(err.contains("inside data_dir"), "{err}");
    assert!(MasterKey::from_text("too short", "env").is_err());
}

#[test]
fn passphrases_derive_stable_keys() {
    let a = MasterKey::from_passphrase(b"correct horse", b"saltsaltsaltsalt").unwrap();
    let b = MasterKey::from_passphrase(b"correct horse", b"saltsaltsaltsalt").unwrap();
    let c = MasterKey::from_passphrase(b"correct horsf", b"saltsaltsaltsalt").unwrap();
    assert_eq!(a.bytes(), b.bytes());
    assert_ne!(a.bytes(), c.bytes());
    assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
}

#[tokio::test]
async fn a_secret_made_on_first_use_is_the_first_writers() {
    let v = Vault::open(store().await, MasterKey::generate(), "test").await.unwrap();
    assert!(v.set_if_absent("audit.signing-key", "", "first").await.unwrap());
    assert!(!v.set_if_absent("audit.signing-key", "", "second").await.unwrap());
    assert_eq!(v.get("audit.signing-key", "").await.unwrap().unwrap().expose(), "first");
    // Owners are separate rows.
    assert!(v.set_if_absent("audit.signing-key", "alice", "hers").await.unwrap());
    assert!(v.set_if_absent("bad name!", "", "x").await.is_err());
}
