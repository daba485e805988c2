//! No secret reaches the logs: a `switchyard` process at `debug` level is given every kind of
//! secret (the master key, an upstream's API key and an extra header's value, the billing
//! webhook's key and URL credentials, a dashboard user's password, also typed into the user
//! field, the virtual keys it issues) and made to use and fail with each; then its whole output
//! is searched for every one of them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const MASTER: &str = "secret-master-key-7f3a9c21";
const UPSTREAM_KEY: &str = "sk-upstream-secret-5b8e1d";
const HEADER_SECRET: &str = "azure-header-secret-93ac";
const BILLING_KEY: &str = "billing-api-key-secret-4d2f";
const BILLING_URL_SECRET: &str = "billing-url-password-77e1";
const USER_PASSWORD: &str = "dashboard-password-secret-19";

#[tokio::test]
async fn a_full_run_logs_no_secret() {
    let dir = std::env::temp_dir().join(format!("switchyard-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
log_format = "json"
[database]
url = "sqlite://{db}"
[billing]
url = "http://biller:{BILLING_URL_SECRET}@127.0.0.1:9"
api_key_env = "BILLING_KEY"
backoff_ms = 10
max_backoff_secs = 1
[providers.m]
kind = "mock"
[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "UPSTREAM_KEY"
headers = {{ "api-key" = "{HEADER_SECRET}" }}
timeout_ms = 500
[models.chat]
[[models.chat.deployments]]
provider = "m"
model = "chat"
input_per_mtok = 1
output_per_mtok = 1
context_window = 10000
[models.down]
[[models.down.deployments]]
provider = "down"
model = "gpt"
input_per_mtok = 1
output_per_mtok = 1
context_window = 10000
"#,
            db = dir.join("db.sqlite").display()
        ),
    )
    .unwrap();
    let out_path = dir.join("out.log");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SWITCHYARD_MASTER_KEY", MASTER)
        .env("UPSTREAM_KEY", UPSTREAM_KEY)
        .env("BILLING_KEY", BILLING_KEY)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    // The listening address, from the log.
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        assert!(Instant::now() < deadline, "no listening line");
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if let Some(i) = text.find("http://127.0.0.1:") {
            let addr: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let c = reqwest::Client::new();
    let admin = |path: &str| format!("{base}/admin/v1{path}");
    let r = c
        .post(admin("/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "used"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.unwrap();
    let secret = key["key"].as_str().unwrap().to_string();
    let r = c
        .post(admin(&format!("/keys/{}/rotate", key["id"].as_str().unwrap())))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let rotated: Value = r.json().await.unwrap();
    let secret = [secret, rotated["key"].as_str().unwrap().to_string()];
    let chat = |key: &str, model: &str| {
        c.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat(&secret[1], "chat").await.unwrap().status(), 200);
    assert_eq!(chat(&secret[0], "chat").await.unwrap().status(), 401, "the old secret");
    assert_eq!(chat(&secret[1], "down").await.unwrap().status(), 502);
    let wrong = format!("sk-sy-{}", "Q".repeat(40));
    assert_eq!(chat(&wrong, "chat").await.unwrap().status(), 401);
    assert_eq!(chat(MASTER, "chat").await.unwrap().status(), 200);
    let r = c
        .post(admin("/users"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "fin", "password": USER_PASSWORD, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The last one is a password typed into the user field.
    for (user, password) in [
        ("fin", USER_PASSWORD),
        ("fin", "not-the-password"),
        ("", MASTER),
        (USER_PASSWORD, "fin"),
    ] {
        let r = no_redirect
            .post(format!("{base}/ui/login"))
            .form(&[("user", user), ("password", password), ("next", "/ui")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
    }
    // Billing tries (and fails) to deliver the events.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut log = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("upstream attempt failed"),
        "the upstream failure was logged"
    );
    assert!(log.lines().count() > 10, "a real log: {log}");
    assert!(
        log.contains("sign-in refused for a user name that is not a user"),
        "the refusal of an unknown name is logged, without the name"
    );
    for s in [
        MASTER,
        UPSTREAM_KEY,
        HEADER_SECRET,
        BILLING_KEY,
        BILLING_URL_SECRET,
        USER_PASSWORD,
        &secret[0],
        &secret[1],
        &wrong,
    ] {
        assert!(!log.contains(s), "`{s}` is in the log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
