//! The token vault on real parts: DynamoDB Local for the record and its conditional writes,
//! moto's KMS for sealing (encryption context = member_id). A counting refresher plays the
//! OAuth server (the REST crate's tests run the real OAuth client against the fake Bitrix24).

use b24_events::Secret;
use b24_state::vault::{
    KmsCipher, RefreshError, Refresher, Tokens, Vault, VaultError, VaultStatus,
};
use b24_state::{AwsEnv, MemberId, Timeouts};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NOW: i64 = 1_800_000_000;

fn env(moto: &str) -> AwsEnv {
    let moto = moto.to_string();
    AwsEnv::from_lookup(move |k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_ENDPOINT_URL_KMS" => Some(moto.clone()),
        _ => None,
    })
    .unwrap()
}

async fn kms() -> (aws_sdk_kms::Client, String) {
    let client = b24_state::vault::kms_client(
        &env(&b24_local::shared_moto_endpoint()),
        Timeouts::BACKGROUND,
    );
    let key = client
        .create_key()
        .description("vault test")
        .send()
        .await
        .expect("moto KMS answers")
        .key_metadata
        .unwrap()
        .key_id;
    (client, key)
}

async fn vault() -> (Vault<KmsCipher>, aws_sdk_dynamodb::Client, String) {
    let ddb = b24_state::testing::client();
    let table = b24_state::testing::fresh_table(&ddb).await;
    let (kms, key) = kms().await;
    (
        Vault::new(ddb.clone(), table.clone(), KmsCipher::new(kms, key)),
        ddb,
        table,
    )
}

fn tokens(n: usize, expires_at: i64) -> Tokens {
    Tokens {
        access_token: Secret::new(format!("VAULTSECRET-access-{n}")),
        refresh_token: Secret::new(format!("VAULTSECRET-refresh-{n}")),
        access_expires_at: expires_at,
        client_endpoint: "https://portal.bitrix24.eu/rest/".into(),
    }
}

/// Plays the OAuth server: rotates (each refresh token works once), counts the calls.
#[derive(Default)]
struct Oauth {
    calls: AtomicUsize,
    spent: Mutex<Vec<String>>,
    answer: Mutex<Option<RefreshError>>,
    delay: Duration,
}

impl Refresher for Oauth {
    async fn refresh(&self, _: &MemberId, refresh_token: &Secret) -> Result<Tokens, RefreshError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        if let Some(e) = self.answer.lock().unwrap().clone() {
            return Err(e);
        }
        let mut spent = self.spent.lock().unwrap();
        if spent.iter().any(|s| s == refresh_token.expose()) {
            return Err(RefreshError::InvalidGrant);
        }
        spent.push(refresh_token.expose().to_string());
        Ok(tokens(100 + n, NOW + 3600))
    }
}

fn member(m: &str) -> MemberId {
    MemberId::new(m).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_handed_out_without_a_refresh_and_the_record_holds_no_token() {
    let (vault, ddb, table) = vault().await;
    let m = member("vaultok");
    let v = vault.store(&m, &tokens(1, NOW + 3600), NOW).await.unwrap();
    assert_eq!(v, 1);
    let oauth = Oauth::default();
    let t = vault.access_token(&m, &oauth, NOW).await.unwrap();
    assert_eq!(t.token.expose(), "VAULTSECRET-access-1");
    assert_eq!(t.client_endpoint, "https://portal.bitrix24.eu/rest/");
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 0);
    // Nothing in the table (any attribute, any encoding) reads like a token.
    let scan = ddb.scan().table_name(&table).send().await.unwrap();
    let text = format!("{:?}", scan.items());
    assert!(text.contains("TOKENS"), "{text}");
    assert!(!text.contains("VAULTSECRET"), "a token in clear: {text}");
    let store = b24_state::testing::fresh_store_on(&table);
    let dump = serde_json::to_string(&store.portal_records(&m).await.unwrap()).unwrap();
    assert!(dump.contains("\"record_type\":\"tokens\""), "{dump}");
    assert!(!dump.contains("VAULTSECRET"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_callers_with_an_expired_token_make_exactly_one_refresh() {
    let (vault, _, _) = vault().await;
    let vault = Arc::new(vault);
    let m = member("vaultrace");
    vault.store(&m, &tokens(1, NOW - 10), NOW).await.unwrap();
    let oauth = Arc::new(Oauth {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (vault, oauth, m) = (vault.clone(), oauth.clone(), m.clone());
            tokio::spawn(async move { vault.access_token(&m, &*oauth, NOW).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().expect("everyone gets a token"));
    }
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 1, "exactly one refresh");
    assert!(got
        .iter()
        .all(|t| t.token.expose() == "VAULTSECRET-access-101"));
    assert!(got.iter().all(|t| t.version == 2));
    let e = vault.entry(&m).await.unwrap().unwrap();
    assert_eq!((e.version, e.status), (2, VaultStatus::Ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_answer_refreshes_once_unless_someone_already_did() {
    let (vault, _, _) = vault().await;
    let m = member("vaultexp");
    vault.store(&m, &tokens(1, NOW + 3600), NOW).await.unwrap();
    let oauth = Oauth::default();
    let seen = vault.access_token(&m, &oauth, NOW).await.unwrap();
    // The portal said expired_token (revoked early): refresh once.
    let fresh = vault
        .refresh_after_expired(&m, &oauth, &seen, NOW)
        .await
        .unwrap();
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 1);
    assert_ne!(fresh.token.expose(), seen.token.expose());
    // A second caller that saw the same old token gets the new one without a refresh.
    let again = vault
        .refresh_after_expired(&m, &oauth, &seen, NOW)
        .await
        .unwrap();
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 1);
    assert_eq!(again.token.expose(), fresh.token.expose());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_marks_the_portal_needs_reinstall_until_a_new_install_stores_tokens() {
    let (vault, _, _) = vault().await;
    let m = member("vaultgrant");
    vault.store(&m, &tokens(1, NOW - 10), NOW).await.unwrap();
    let oauth = Oauth::default();
    *oauth.answer.lock().unwrap() = Some(RefreshError::InvalidGrant);
    assert_eq!(
        vault.access_token(&m, &oauth, NOW).await.unwrap_err(),
        VaultError::NeedsReinstall
    );
    assert_eq!(
        vault.entry(&m).await.unwrap().unwrap().status,
        VaultStatus::NeedsReinstall
    );
    // Not asked again.
    assert_eq!(
        vault.access_token(&m, &oauth, NOW).await.unwrap_err(),
        VaultError::NeedsReinstall
    );
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 1);
    // A reinstall stores a new pair.
    vault.store(&m, &tokens(2, NOW + 3600), NOW).await.unwrap();
    assert_eq!(
        vault
            .access_token(&m, &oauth, NOW)
            .await
            .unwrap()
            .token
            .expose(),
        "VAULTSECRET-access-2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_oauth_server_keeps_a_still_valid_token_and_releases_the_lease() {
    let (vault, _, _) = vault().await;
    let m = member("vaultdown");
    // Within the refresh margin but not expired.
    vault.store(&m, &tokens(1, NOW + 120), NOW).await.unwrap();
    let oauth = Oauth::default();
    *oauth.answer.lock().unwrap() = Some(RefreshError::Unavailable("timeout".into()));
    let t = vault.access_token(&m, &oauth, NOW).await.unwrap();
    assert_eq!(t.token.expose(), "VAULTSECRET-access-1");
    // Expired: the error says so, and the next caller may refresh at once (lease released).
    let later = NOW + 200;
    assert!(matches!(
        vault.access_token(&m, &oauth, later).await,
        Err(VaultError::Unavailable(_))
    ));
    *oauth.answer.lock().unwrap() = None;
    let t = vault.access_token(&m, &oauth, later).await.unwrap();
    assert_eq!(t.token.expose(), "VAULTSECRET-access-103");
    assert_eq!(oauth.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_tokens_are_bound_to_their_member_id() {
    let (vault, ddb, table) = vault().await;
    let (a, b) = (member("vaulta"), member("vaultb"));
    vault.store(&a, &tokens(1, NOW + 3600), NOW).await.unwrap();
    vault.store(&b, &tokens(2, NOW + 3600), NOW).await.unwrap();
    // Copy a's sealed blob onto b's record.
    let get = |m: &MemberId| {
        ddb.get_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("PORTAL#{m}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("TOKENS".into()),
            )
            .send()
    };
    let sealed_a = get(&a).await.unwrap().item.unwrap()["sealed"].clone();
    let mut item_b = get(&b).await.unwrap().item.unwrap();
    item_b.insert("sealed".into(), sealed_a);
    ddb.put_item()
        .table_name(&table)
        .set_item(Some(item_b))
        .send()
        .await
        .unwrap();
    let oauth = Oauth::default();
    assert_eq!(
        vault.access_token(&b, &oauth, NOW).await.unwrap_err(),
        VaultError::Corrupt,
        "a's tokens must not open as b's"
    );
    assert_eq!(
        vault
            .access_token(&a, &oauth, NOW)
            .await
            .unwrap()
            .token
            .expose(),
        "VAULTSECRET-access-1"
    );
    // Unknown portal.
    assert_eq!(
        vault
            .access_token(&member("vaultnone"), &oauth, NOW)
            .await
            .unwrap_err(),
        VaultError::NotFound
    );
    // Errors never carry a token.
    for e in [
        VaultError::Corrupt,
        VaultError::NeedsReinstall,
        VaultError::Busy,
    ] {
        assert!(!format!("{e} {e:?}").contains("VAULTSECRET"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_purge_never_deletes_the_vault_a_reinstall_may_have_filled() {
    use b24_events::EventKind;
    use b24_fixtures::Fixture;
    let (vault, _, table) = vault().await;
    let store = b24_state::testing::fresh_store_on(&table);
    let m = member("vaultpurge");
    let install = Fixture::new(EventKind::AppInstall)
        .member(m.as_str())
        .token("tok-1")
        .ts(100)
        .event();
    b24_state::testing::apply_trusted(&store, &install, 100, 30)
        .await
        .unwrap();
    let msg = Fixture::new(EventKind::MessageAdd)
        .member(m.as_str())
        .token("tok-1")
        .message_id(5)
        .ts(110)
        .event();
    b24_state::testing::apply_trusted(&store, &msg, 110, 30)
        .await
        .unwrap();
    vault.store(&m, &tokens(1, NOW + 3600), NOW).await.unwrap();
    let uninstall = Fixture::new(EventKind::AppUninstall)
        .member(m.as_str())
        .token("tok-1")
        .clean(true)
        .ts(120)
        .event();
    b24_state::testing::apply_trusted(&store, &uninstall, 120, 30)
        .await
        .unwrap();
    b24_state::testing::run_purges(&store, m.as_str(), 100)
        .await
        .unwrap();
    let kinds: Vec<String> = store
        .portal_records(&m)
        .await
        .unwrap()
        .iter()
        .map(|r| r["record_type"].as_str().unwrap().to_string())
        .collect();
    assert!(!kinds.iter().any(|k| k == "message"), "purged: {kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "tokens"),
        "the vault stays: {kinds:?}"
    );
    assert_eq!(
        vault
            .access_token(&m, &Oauth::default(), NOW)
            .await
            .unwrap()
            .token
            .expose(),
        "VAULTSECRET-access-1"
    );
}
