//! The dashboard in real headless Chromium (`tests/ui`, playwright-core on Debian's
//! `/usr/bin/chromium`), once with JavaScript on and once with it off, each against a fresh
//! gateway with the real ledger. Screenshots go to `target/ui-screenshots/{js,nojs}/`.
//!
//! `scripts/test.sh` installs playwright-core and sets `SWITCHYARD_REQUIRE_SDK=1`, so in the full
//! suite a missing browser or package is a failure; run alone without them, the test skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use switchyard_tests::{parse_config, standard_config, Admin, MockUpstream, TestGateway, TEST_MASTER_KEY};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

async fn run(js: bool) {
    let root = repo_root();
    let dir = root.join("tests/ui");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let required = std::env::var("SWITCHYARD_REQUIRE_SDK").is_ok_and(|v| v == "1");
    if !dir.join("node_modules/playwright-core").exists() || !Path::new(&chromium).exists() {
        assert!(
            !required,
            "the browser test needs tests/ui/node_modules and {chromium}; run scripts/test.sh"
        );
        eprintln!("SKIPPED browser test: playwright-core or {chromium} missing (scripts/test.sh installs them)");
        return;
    }
    let mock = MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n[ledger]\nflush_interval_ms = 50\n{}",
        standard_config(&mock.base_url())
    );
    let gw = TestGateway::start_with_ledger(parse_config(&toml)).await;
    let (s, v) = Admin::new(&gw)
        .post(
            "/users",
            json!({"name": "finance", "password": "viewer password 1", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let out = tokio::process::Command::new("node")
        .args(["--test", "--test-concurrency=1", "dashboard.test.mjs"])
        .current_dir(&dir)
        .env("SWITCHYARD_URL", gw.base_url().trim_end_matches("/v1"))
        .env("SWITCHYARD_MASTER_KEY", TEST_MASTER_KEY)
        .env("SWITCHYARD_VIEWER", "finance:viewer password 1")
        .env("SWITCHYARD_UI_JS", if js { "on" } else { "off" })
        .env("SWITCHYARD_SCREENSHOTS", root.join("target/ui-screenshots"))
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "browser test (JavaScript {}) failed:\n{text}",
        if js { "on" } else { "off" }
    );
    // Every step of the script ran and passed (a step that is never reached is not a pass).
    let steps = std::fs::read_to_string(dir.join("dashboard.test.mjs"))
        .unwrap()
        .matches("\ntest(\"")
        .count();
    assert!(steps >= 11, "the script has its steps: {steps}");
    assert!(
        text.contains(&format!("# pass {steps}")),
        "all {steps} steps ran:\n{text}"
    );
}

/// One after the other: two browsers at once would starve a small machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_with_and_without_javascript() {
    run(true).await;
    run(false).await;
}
