//! The official OpenAI SDKs (Python and Node) as clients of a real gateway on an ephemeral port.
//!
//! The test script (`scripts/test.sh`) installs the SDKs into `.venv` and `tests/sdk/node/node_modules`
//! and sets `SWITCHYARD_REQUIRE_SDK=1`, so in the full suite a missing SDK is a failure. Run alone
//! without the SDKs installed, these tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use switchyard_tests::standard;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn required() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_SDK").is_ok_and(|v| v == "1")
}

/// Runs `program args` with the gateway's base URL and returns its combined output, or `None` to skip.
async fn run_client(program: &Path, args: &[&str], cwd: &Path, what: &str) -> Option<(bool, String)> {
    if !program.exists() {
        assert!(
            !required(),
            "{what}: {} is missing; run scripts/test.sh to install it",
            program.display()
        );
        eprintln!(
            "SKIPPED {what}: {} not installed (scripts/test.sh installs it)",
            program.display()
        );
        return None;
    }
    let (_mock, gw) = standard().await;
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk() {
    let root = repo_root();
    let python = std::env::var_os("SWITCHYARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let Some((ok, out)) = run_client(
        &python,
        &["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sdk/python"],
        &root,
        "Python SDK",
    )
    .await
    else {
        return;
    };
    println!("{out}");
    assert!(ok, "Python SDK tests failed:\n{out}");
    assert!(out.contains(" passed"), "pytest ran no test:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk() {
    let root = repo_root();
    let node_dir = root.join("tests/sdk/node");
    if !node_dir.join("node_modules/openai").exists() {
        assert!(
            !required(),
            "Node SDK: tests/sdk/node/node_modules is missing; run scripts/test.sh"
        );
        eprintln!("SKIPPED Node SDK: tests/sdk/node/node_modules not installed (scripts/test.sh installs it)");
        return;
    }
    let node = which("node").unwrap_or_else(|| PathBuf::from("/usr/bin/node"));
    let Some((ok, out)) = run_client(&node, &["--test", "sdk.test.mjs"], &node_dir, "Node SDK").await else {
        return;
    };
    println!("{out}");
    assert!(ok, "Node SDK tests failed:\n{out}");
    assert!(!out.contains("# pass 0"), "node ran no test:\n{out}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
