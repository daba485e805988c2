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

#[test]
fn serves_the_demo_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("SWITCHYARD_CONFIG")
        .env("RUST_LOG", "info")
        .env(
            "SWITCHYARD_DATABASE__URL",
            format!(
                "sqlite://{}",
                std::env::temp_dir()
                    .join(format!("switchyard-cli-{}.db", std::process::id()))
                    .display()
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let body = r#"{"model":"demo-powerful","messages":[{"role":"user","content":"ping"}]}"#;
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &format!("http://{addr}/v1/chat/completions"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"chat.completion\"") && text.contains("ping"), "{text}");
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
