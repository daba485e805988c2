//! The `switchyard` binary itself: `check-config`, and the demo served on port 0 until SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn example() -> String {
    format!("{}/../config/switchyard.example.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_example_when_its_secrets_are_set() {
    let out = Command::new(BIN)
        .args(["check-config", &example()])
        .env("OPENAI_API_KEY", "x")
        .env("ANTHROPIC_API_KEY", "y")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"
        [server]
        listen = "nowhere"
        [providers.p]
        kind = "openai"
        api_key_env = "SURELY_NOT_SET_SWITCHYARD_TEST"
        [models.m]
        [[models.m.deployments]]
        provider = "q"
        model = "x"
        input_per_mtok = "cheap"
        output_per_mtok = 1
        context_window = 10
        "#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .env_remove("SURELY_NOT_SET_SWITCHYARD_TEST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in [
        "server.listen",
        "providers.p.api_key_env",
        "models.m.deployments[0].provider",
        "models.m.deployments[0].input_per_mtok",
    ] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }
    assert!(
        !err.contains("SURELY_NOT_SET_SWITCHYARD_TEST=") && err.contains("4 configuration problem(s)"),
        "{err}"
    );
}

/// Serves the demo on port 0 with a fresh database; returns the process and its address.
fn serve(name: &str, master_key: Option<&str>) -> (std::process::Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("SWITCHYARD_CONFIG")
        .env("RUST_LOG", "info")
        .env(
            "SWITCHYARD_DATABASE__URL",
            format!(
                "sqlite://{}",
                std::env::temp_dir()
                    .join(format!("switchyard-cli-{name}-{}.db", std::process::id()))
                    .display()
            ),
        )
        // A demo without a master key makes its first dashboard user; keep its password file out of the tree.
        .env(
            "SWITCHYARD_DASHBOARD__FIRST_PASSWORD_FILE",
            std::env::temp_dir().join(format!("switchyard-cli-{name}-{}-password", std::process::id())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match master_key {
        Some(k) => cmd.env("SWITCHYARD_MASTER_KEY", k),
        None => cmd.env_remove("SWITCHYARD_MASTER_KEY"),
    };
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("a log line").unwrap();
        if let Some(i) = line.find("http://") {
            let rest = &line[i + 7..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn stop(mut child: std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A chat call with curl; returns the HTTP status and body.
fn chat(addr: &str, key: Option<&str>) -> (u16, String) {
    let body = r#"{"model":"demo-powerful","messages":[{"role":"user","content":"ping"}]}"#;
    let mut args = vec![
        "-s".to_string(),
        "-w".into(),
        "\n%{http_code}".into(),
        "-H".into(),
        "content-type: application/json".into(),
        "-d".into(),
        body.into(),
    ];
    if let Some(k) = key {
        args.push("-H".into());
        args.push(format!("authorization: Bearer {k}"));
    }
    args.push(format!("http://{addr}/v1/chat/completions"));
    let out = Command::new("curl").args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn serves_the_demo_and_stops_cleanly_on_sigterm() {
    let (child, addr) = serve("demo", None);
    let (status, text) = chat(&addr, None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"chat.completion\"") && text.contains("ping"), "{text}");
    stop(child);
}

const MASTER: &str = "cli-master-key-0123456789";

/// Runs `switchyard ARGS` against a gateway; returns success, stdout and stderr.
fn admin(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--url", &format!("http://{addr}")])
        .env("SWITCHYARD_MASTER_KEY", MASTER)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn keys_and_usage_commands_drive_the_admin_api() {
    let (child, addr) = serve("admin", Some(MASTER));
    let (ok, out, err) = admin(
        &addr,
        &[
            "keys",
            "create",
            "--name",
            "cli-key",
            "--tags",
            "a,b",
            "--budget-usd",
            "5",
            "--period",
            "daily",
            "--prefer",
            "cost",
        ],
    );
    assert!(ok, "{out}{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(id.starts_with("key_"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    assert!(secret.starts_with("sk-sy-"), "{out}");
    let (status, text) = chat(&addr, Some(&secret));
    assert_eq!(status, 200, "{text}");

    let (ok, table, err) = admin(&addr, &["keys", "list"]);
    assert!(ok, "{err}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("cli-key") && row.contains("active") && row.contains("5.000000000 daily"),
        "{row}"
    );

    // Rotation: the old secret stops working, the new one works.
    let (ok, out, err) = admin(&addr, &["keys", "rotate", &id]);
    assert!(ok, "{err}");
    let rotated = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    assert_ne!(rotated, secret);
    assert_eq!(chat(&addr, Some(&secret)).0, 401);
    assert_eq!(chat(&addr, Some(&rotated)).0, 200);

    let (ok, out, err) = admin(&addr, &["keys", "revoke", &id]);
    assert!(ok && out.contains(&format!("revoked {id}")), "{out}{err}");
    assert_eq!(chat(&addr, Some(&rotated)).0, 401);
    let (ok, json, _) = admin(&addr, &["keys", "list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data"][0]["status"], "revoked", "{v}");
    assert_eq!(v["data"][0]["route_prefer"], "cost", "{v}");

    // Export: the two calls made with the key are in the CSV, once each.
    std::thread::sleep(Duration::from_millis(500));
    let (ok, csv, err) = admin(
        &addr,
        &[
            "usage",
            "export",
            "--from",
            "2020-01-01",
            "--to",
            "2100-01-01",
            "--format",
            "csv",
        ],
    );
    assert!(ok, "{err}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let key_col = header.iter().position(|h| *h == "key_id").unwrap();
    let with_key = lines.filter(|l| l.split(',').nth(key_col) == Some(id.as_str())).count();
    assert_eq!(with_key, 2, "{csv}");

    // Errors are the API's, with the field, and a non-zero exit.
    let (ok, _, err) = admin(&addr, &["keys", "create", "--name", "x", "--expires", "2001-01-01"]);
    assert!(!ok && err.contains("expires_at"), "{err}");
    let (ok, _, err) = admin(&addr, &["keys", "revoke", "key_nope"]);
    assert!(!ok && err.contains("HTTP 404"), "{err}");
    let (ok, out, err) = admin(&addr, &["usage", "reprice", "--dry-run"]);
    assert!(ok && out.contains("would be changed"), "{out}{err}");
    let bad = Command::new(BIN)
        .args(["keys", "list", "--url", &format!("http://{addr}")])
        .env_remove("SWITCHYARD_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SWITCHYARD_MASTER_KEY"));

    // The audit log has the CLI's changes, as the master key through the CLI, from here; a
    // refused change is not among them.
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("authorization: Bearer {MASTER}")])
        .arg(format!("http://{addr}/admin/v1/audit"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = v["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["usage re-priced", "key revoked", "key rotated", "key created"],
        "newest first: {v}"
    );
    for e in entries {
        assert_eq!(
            (e["actor"].as_str(), e["via"].as_str()),
            (Some("master key"), Some("cli")),
            "{e}"
        );
        assert_eq!(e["address"], "127.0.0.1");
    }
    assert_eq!(entries[3]["target"], id.as_str(), "a create names what it made");
    assert!(!entries[3]["detail"].as_str().unwrap().contains("sk-sy-"));
    stop(child);
}

/// `switchyard router train` then `router eval` on a sample of the shared routing data, checked
/// against the reference metrics script on the same scores. Skipped (with a message) without
/// `../shared` or python3.
#[test]
fn router_eval_agrees_with_the_reference_metrics() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let data = shared.join("data/routing/train.jsonl");
    let reference = shared.join("tools/routing_metrics.py");
    if !data.exists() || !reference.exists() || Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIP: ../shared routing data or python3 not available");
        return;
    }
    let dir = std::env::temp_dir().join(format!("switchyard-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A sample of every source: every 7th row.
    let sample: String = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(i, _)| i % 7 == 0)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let sample_path = dir.join("sample.jsonl");
    std::fs::write(&sample_path, sample).unwrap();
    let model = dir.join("model.json");
    let out = Command::new(BIN)
        .args([
            "router",
            "train",
            sample_path.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ])
        .args(["--hash-bits", "12", "--epochs", "2", "--folds", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cross-validated mmlu"), "{stdout}");
    let scores = dir.join("scores.jsonl");
    let ours = Command::new(BIN)
        .args([
            "router",
            "eval",
            sample_path.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .args(["--scores", scores.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = Command::new("python3")
        .arg(&reference)
        .arg(&sample_path)
        .arg(&scores)
        .output()
        .unwrap();
    assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
    let parse = |text: &[u8]| -> std::collections::BTreeMap<String, serde_json::Value> {
        String::from_utf8_lossy(text)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, j)| (s.to_string(), serde_json::from_str::<serde_json::Value>(j).unwrap()))
            .filter(|(_, v)| v.get("APGR").is_some())
            .collect()
    };
    let (ours_m, theirs_m) = (parse(&ours.stdout), parse(&theirs.stdout));
    assert_eq!(ours_m.keys().collect::<Vec<_>>(), ["gsm8k", "mmlu"]);
    assert_eq!(
        ours_m,
        theirs_m,
        "ours:\n{}\nreference:\n{}",
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout)
    );
    // Intent accuracy is reported per source too.
    let text = String::from_utf8_lossy(&ours.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("humaneval ") && l.contains("intent_accuracy")),
        "{text}"
    );
}
