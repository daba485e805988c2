//! Test support for Switchyard: the mock upstream, and a harness that runs a real gateway on an ephemeral port.
//!
//! # Layout
//! - [`mock`]: the OpenAI/Anthropic-compatible mock upstream (also the `mock-upstream` binary).
//! - [`cut`]: a TCP relay to a real service that can be cut and restored.
//! - [`TestGateway`]: `switchyard::run` on `127.0.0.1:0` with an in-memory usage sink.
//! - [`standard_config`]: a configuration with one model per scenario, all pointing at one mock.
//! - `src/bin/bench.rs`: the overhead benchmark (direct to the mock vs through the gateway).

pub mod cut;
pub mod mock;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::config::Config;
use switchyard::money::meter::{MemorySink, UsageSink};
use switchyard::records::usage::UsageEvent;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use mock::MockUpstream;

/// A gateway running in this process on an ephemeral port.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub usage: Arc<MemorySink>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    /// Starts a gateway from TOML text; panics with every problem if the config is invalid.
    /// Unless the text has an `[auth]` section, keys are optional (the gateway tests of the core
    /// send arbitrary keys); unless it has a `[database]` section, it gets a fresh SQLite file.
    pub async fn start(toml: &str) -> TestGateway {
        let config = parse_config(toml);
        Self::start_config(config).await
    }

    pub async fn start_config(config: Config) -> TestGateway {
        let usage = Arc::new(MemorySink::default());
        let sink: Arc<dyn UsageSink> = usage.clone();
        Self::start_with(
            config,
            switchyard::RunOptions {
                usage: Some(sink),
                ..Default::default()
            },
            usage,
        )
        .await
    }

    /// Starts with explicit options (the real ledger writer when `options.usage` is `None`).
    pub async fn start_with(config: Config, options: switchyard::RunOptions, usage: Arc<MemorySink>) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("bound listener has an address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::run_with(config, listener, options, async move {
            let _ = rx.await;
        }));
        // `run_with` opens the database before it serves; wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline && !task.is_finished() {
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if task.is_finished() {
            let r = task.await.expect("gateway task does not panic");
            panic!("the gateway stopped while starting: {r:?}");
        }
        TestGateway {
            addr,
            usage,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts with the real ledger writer: usage events go to the configured database (the
    /// memory sink stays empty).
    pub async fn start_with_ledger(config: Config) -> TestGateway {
        Self::start_with(
            config,
            switchyard::RunOptions::default(),
            Arc::new(MemorySink::default()),
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The OpenAI base URL clients use (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        self.url("/v1")
    }

    /// Begins graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully and waits for `run` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        match self.task.take() {
            Some(t) => t.await.expect("gateway task does not panic"),
            None => Ok(()),
        }
    }

    /// Waits until at least `n` usage events exist (events of a stream arrive when it ends).
    pub async fn wait_for_events(&self, n: usize, within: Duration) -> Vec<UsageEvent> {
        let deadline = Instant::now() + within;
        loop {
            let ev = self.usage.events();
            if ev.len() >= n || Instant::now() >= deadline {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A fresh SQLite database URL in the system's temp directory.
pub fn temp_sqlite_url() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join("switchyard-tests");
    std::fs::create_dir_all(&dir).expect("create the temp directory for test databases");
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{}-{}-{n}.db", std::process::id(), fastrand_u64()));
    format!("sqlite://{}", path.display())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// The environment variable that points tests at a PostgreSQL server (`.ci/run` sets it).
pub const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";

/// A database URL per backend to run a store test against: always a fresh SQLite file, and a
/// fresh schema on the PostgreSQL server named by `SWITCHYARD_TEST_POSTGRES_URL` when it is
/// set (skipped with a message when it is not; a set but unreachable server fails the test).
pub async fn test_databases() -> Vec<(&'static str, String)> {
    let mut out = vec![("sqlite", temp_sqlite_url())];
    if let Some(url) = fresh_postgres_schema().await {
        out.push(("postgres", url));
    }
    out
}

/// A URL whose connections use a new, empty schema on the test PostgreSQL server.
pub async fn fresh_postgres_schema() -> Option<String> {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        eprintln!("SKIP postgres: {POSTGRES_ENV} is not set; running the SQLite half only");
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={base} is set but cannot be reached: {e}"));
    let schema = format!("t_{}_{}", std::process::id(), fastrand_u64() % 1_000_000_000);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create a test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Parses test TOML (the mock's key in `MOCK_KEY`) with the harness defaults described at
/// [`TestGateway::start`].
pub fn parse_config(toml: &str) -> Config {
    let env = |k: &str| match k {
        "MOCK_KEY" => Some("mock-secret".to_string()),
        "TEST_MASTER_KEY" => Some(TEST_MASTER_KEY.to_string()),
        _ => None,
    };
    let mut config = Config::from_toml(toml, &env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
    if !toml.contains("[auth]") {
        config.auth.required = false;
    }
    if !toml.contains("[database]") {
        config.database.url = temp_sqlite_url();
    }
    if !toml.contains("first_password_file") {
        config.dashboard.first_password_file = std::env::temp_dir().join(format!(
            "switchyard-test-admin-password-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
    }
    config
}

/// The master key of test configs that name `master_key_env = "TEST_MASTER_KEY"`.
pub const TEST_MASTER_KEY: &str = "sy-master-test-0123456789";

/// One model per scenario, all served by the mock at `mock_base` (`http://HOST:PORT/v1`).
pub fn standard_config(mock_base: &str) -> String {
    let dep = |provider: &str, model: &str, extra: &str| {
        format!(
            "[[models.\"{{NAME}}\".deployments]]\nprovider = \"{provider}\"\nmodel = \"{model}\"\ninput_per_mtok = \"1.00\"\noutput_per_mtok = \"2.00\"\ncached_input_per_mtok = \"0.50\"\ncontext_window = 100000\ncapabilities = [\"tools\", \"json\", \"vision\"]\n{extra}\n"
        )
    };
    let model = |name: &str, head: &str, deps: Vec<String>| {
        let mut s = format!("[models.\"{name}\"]\n{head}\n");
        for d in deps {
            s.push_str(&d.replace("{NAME}", name));
        }
        s
    };
    let mut out = format!(
        r#"
[server]
max_body_bytes = 65536
shutdown_grace_secs = 5
[server.retry]
attempts_per_deployment = 2
max_total_attempts = 6
backoff_ms = 1
max_backoff_ms = 5
[server.breaker]
failure_threshold = 1000
cooldown_secs = 1

[providers.oa]
kind = "openai"
base_url = "{mock_base}"
api_key_env = "MOCK_KEY"

[providers.oa-short]
kind = "openai"
base_url = "{mock_base}"
timeout_ms = 300
stream_idle_timeout_ms = 300

# The same mock, without the compatibility fixes the gateway applies by default to servers
# that are not OpenAI (so tests can show the quirks they fix).
[providers.oa-raw]
kind = "openai"
base_url = "{mock_base}"
compat = {{ mirror_max_tokens = false, dedupe_tool_call_names = false }}

[providers.an]
kind = "anthropic"
base_url = "{mock_base}"
api_key_env = "MOCK_KEY"

"#
    );
    let entries = vec![
        model("chat", "", vec![dep("oa", "mock", "")]),
        model("cached", "", vec![dep("oa", "mock", "")]),
        model("cached-tools", "", vec![dep("oa", "mock", "")]),
        model("cached-cut", "", vec![dep("oa", "mock;cut=3", "")]),
        model("cached-semantic", "", vec![dep("oa", "mock", "")]),
        model("chat-nousage", "", vec![dep("oa", "mock;usage=off", "")]),
        model("slow-json", "", vec![dep("oa", "mock;latency=200", "")]),
        model("rate-limited", "", vec![dep("oa", "mock;error=429;retry_after=3", "")]),
        model("broken", "", vec![dep("oa", "mock;error=500", "")]),
        model("bad-request", "", vec![dep("oa", "mock;error=400", "")]),
        model("error-as-200", "", vec![dep("oa", "mock;error_body", "")]),
        model("flaky", "", vec![dep("oa", "mock;fail_first=1;error=503", "")]),
        model("primary-down", "fallbacks = [\"chat\"]", vec![dep("oa", "mock;error=503", "")]),
        model("hangs", "", vec![dep("oa-short", "mock;hang", "")]),
        model("cut", "", vec![dep("oa", "mock;cut=3", "")]),
        model("cut-early", "", vec![dep("oa", "mock;cut=0", "")]),
        model("stream-error", "", vec![dep("oa", "mock;stream_error=3", "")]),
        model("slow-stream", "", vec![dep("oa", "mock;chunks=40;delay=25", "")]),
        model("very-slow-stream", "", vec![dep("oa", "mock;chunks=40;delay=1000", "")]),
        model("huge-stream", "", vec![dep("oa", "mock;chunks=400;pad=400000", "")]),
        model("claude", "", vec![dep("an", "claude-mock", "")]),
        // Behaves like llama.cpp's server: no usage chunk, no max_completion_tokens, repeated tool names.
        model("quirky", "", vec![dep("oa", "mock;quirks", "")]),
        model("quirky-raw", "", vec![dep("oa-raw", "mock;quirks", "")]),
        model("refuses", "", vec![dep("oa", "mock;answer=refusal", "")]),
        model("claude-nousage", "", vec![dep("an", "claude-mock;usage=off", "")]),
        model("claude-error-as-200", "", vec![dep("an", "claude-mock;error_body", "")]),
        model("claude-overloaded-once", "", vec![dep("an", "claude-mock;fail_first=1;error=529", "")]),
        model("claude-stream-error", "", vec![dep("an", "claude-mock;stream_error=4", "")]),
        model("embed", "kind = \"embedding\"", vec![dep("oa", "mock-embed", "")]),
        model(
            "no-tools",
            "",
            vec!["[[models.\"no-tools\".deployments]]\nprovider = \"oa\"\nmodel = \"mock\"\ninput_per_mtok = 1\noutput_per_mtok = 1\ncontext_window = 100000\n".to_string()],
        ),
        model(
            "tiny-context",
            "",
            vec!["[[models.\"tiny-context\".deployments]]\nprovider = \"oa\"\nmodel = \"mock\"\ninput_per_mtok = 1\noutput_per_mtok = 1\ncontext_window = 50\n".to_string()],
        ),
        model(
            "balanced",
            "balance = \"least_busy\"",
            vec![
                dep("oa", "mock;error=500", "id = \"bad\""),
                dep("oa", "mock", "id = \"good\""),
            ],
        ),
    ];
    for e in entries {
        out.push_str(&e);
        out.push('\n');
    }
    out.push_str("[routes.auto]\ncheap = \"chat\"\nstrong = \"claude\"\n");
    // A cascade whose cheap model refuses everything: every answer comes from `chat`.
    out.push_str("[routes.careful]\ncheap = \"refuses\"\nstrong = \"chat\"\nstrong_share = 0\ncascade = {}\n");
    // The response cache, on for the `cached*` models only (their answers are the mock's).
    out.push_str(
        "[cache]\nenabled = false\n\
         [cache.models.cached]\nenabled = true\n\
         [cache.models.cached-tools]\nenabled = true\nallow_tool_calls = true\n\
         [cache.models.cached-cut]\nenabled = true\n\
         [cache.models.cached-semantic]\nenabled = true\nsemantic = true\n\
         [cache.semantic]\nembedder = \"lexical\"\n",
    );
    out
}

/// [`standard_config`] with more `[server]` settings (TOML lines, e.g. `"max_in_flight = 1"`).
pub fn standard_config_with_server(mock_base: &str, server: &str) -> String {
    standard_config(mock_base).replacen("[server]\n", &format!("[server]\n{server}\n"), 1)
}

/// Starts a mock and a gateway with [`standard_config`].
pub async fn standard() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    (mock, gw)
}

/// The admin API with the test master key.
pub struct Admin {
    client: reqwest::Client,
    base: String,
}

impl Admin {
    pub fn new(gw: &TestGateway) -> Admin {
        Admin {
            client: reqwest::Client::new(),
            base: gw.url("/admin/v1"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TEST_MASTER_KEY);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a key; returns its id and secret.
    pub async fn key(&self, body: serde_json::Value) -> (String, String) {
        let (s, v) = self.post("/keys", body).await;
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }
}

/// The local embedding model's folder (`SWITCHYARD_TEST_MODEL_DIR`, set by `scripts/test.sh`
/// after it fetched the model), or `None` to skip: a test that needs the model says so. With
/// `SWITCHYARD_REQUIRE_MODEL=1` (the full suite) a missing model is a failure.
pub fn model_dir(what: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SWITCHYARD_TEST_MODEL_DIR").map(std::path::PathBuf::from);
    match dir.filter(|d| d.join("model.safetensors").is_file()) {
        Some(d) => Some(d),
        None => {
            assert!(
                std::env::var("SWITCHYARD_REQUIRE_MODEL").as_deref() != Ok("1"),
                "{what}: the embedding model is missing; run scripts/fetch-model.sh and set SWITCHYARD_TEST_MODEL_DIR"
            );
            eprintln!(
                "SKIPPED {what}: no embedding model (scripts/test.sh fetches it and sets SWITCHYARD_TEST_MODEL_DIR)"
            );
            None
        }
    }
}
