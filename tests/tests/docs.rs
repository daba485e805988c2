//! The architecture page stays true: every path it names exists.

use std::path::{Path, PathBuf};

/// Top-level folders a bare path may start with.
const ROOTS: &[&str] = &["server/", "tests/", "config/", "migrations/", "ui/", "scripts/"];
const EXTENSIONS: &[&str] = &["rs", "md", "toml", "json", "jsonl", "sql", "py", "mjs", "sh"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether a token of the page reads as a path of this repository.
fn is_path(t: &str) -> bool {
    let t = t.trim_end_matches([',', '.', ':', ';', ')']);
    if !t.contains('/') || t.starts_with('/') || t.starts_with("../") {
        return false;
    }
    if t.contains(['{', '}', '*', ' ', '<', '>', '=', '`', '(']) {
        return false;
    }
    let ext = t.rsplit('.').next().unwrap_or("");
    t.ends_with('/') || ROOTS.iter().any(|r| t.starts_with(r)) || (t.contains('.') && EXTENSIONS.contains(&ext))
}

/// Paths named on the page: in backticks in the prose, and every word of its code blocks.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            out.extend(line.split_whitespace().map(str::to_string));
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    out.into_iter()
        .map(|t| t.trim_end_matches([',', '.', ':', ';', ')']).to_string())
        .filter(|t| is_path(t))
        .collect()
}

#[test]
fn every_path_the_architecture_page_names_exists() {
    let root = repo();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md exists");
    let paths = named_paths(&text);
    assert!(paths.len() >= 40, "the page names few paths: {paths:?}");
    // Module paths (`http/headers.rs`) are relative to the server's sources.
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !root.join(p).exists() && !root.join("server/src").join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_path_reader_finds_paths_and_only_paths() {
    let page = "Use `server/src/app.rs` and `http/headers.rs`, not `/admin/v1/keys` or `a b`.\n```\nserver/src/proxy/  x\n```\n";
    assert_eq!(
        named_paths(page),
        vec!["server/src/app.rs", "http/headers.rs", "server/src/proxy/"]
    );
    assert!(!is_path("/r/{route}/v1") && !is_path("x-switchyard-*") && !is_path("../shared/tools"));
}
