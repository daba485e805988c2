//! The `switchyard` command: parses arguments, loads the configuration, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use switchyard::admin_client::{keys_table, query_value, AdminClient};

use switchyard::config::Config;

/// jemalloc, chosen by measurement (README, *Performance*): under callgrind a proxied JSON request
/// takes 233k instructions with it, 250k with glibc's allocator and 220k with mimalloc; over a
/// million requests its RSS stays flat (within 5 MB after the first 200k), as glibc's does,
/// where mimalloc's grows by 40 MB more and keeps growing.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "An OpenAI-compatible LLM gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (the default). Without a config file, runs the built-in demo.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file and print every problem with its path.
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Manage virtual keys through a running gateway's admin API.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Train or evaluate the router's model.
    Router {
        #[command(subcommand)]
        command: RouterCommand,
    },
    /// Evaluate the response cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Export or re-price usage through a running gateway's admin API.
    Usage {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: UsageCommand,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// How often the cache serves pairs that should hit and traps that must not, on a
    /// labelled JSON-lines file (tests/data/cache_eval/pairs.jsonl).
    Eval {
        file: PathBuf,
        /// Which pairs: `heldout`, `tune` or `all`.
        #[arg(long, default_value = "heldout")]
        split: String,
        /// `local` (all-MiniLM-L6-v2), `lexical`, or `remote` (with --config naming the model).
        #[arg(long, default_value = "local")]
        embedder: String,
        /// The local model's folder.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Similarity a neighbour needs (default: the embedder's).
        #[arg(long)]
        threshold: Option<f32>,
        /// A configuration whose `[cache]` section (and models, for `remote`) to use.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where the admin API is; the master key is read from the environment, never from arguments.
#[derive(Args)]
struct AdminArgs {
    /// The gateway's base URL.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Environment variable holding the master key.
    #[arg(long, default_value = "SWITCHYARD_MASTER_KEY", global = true)]
    master_key_env: String,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (shown once).
    Create(Box<CreateKey>),
    /// List keys.
    List {
        #[arg(long)]
        team: Option<String>,
    },
    /// Revoke a key for good.
    Revoke { id: String },
    /// Give a key a new secret (same id, limits and history) and print it.
    Rotate { id: String },
}

/// `switchyard keys create` options.
#[derive(Args)]
struct CreateKey {
    #[arg(long)]
    name: String,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    cost_center: Option<String>,
    /// Comma-separated tags.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Comma-separated models the key may call (default: all).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Expiry: a date, an RFC 3339 UTC time or milliseconds since 1970.
    #[arg(long)]
    expires: Option<String>,
    /// Budget in USD per period, e.g. 25.00.
    #[arg(long)]
    budget_usd: Option<String>,
    /// daily, weekly, monthly or total.
    #[arg(long, default_value = "monthly")]
    period: String,
    /// Soft threshold in percent of the budget.
    #[arg(long)]
    soft_pct: Option<u8>,
    #[arg(long)]
    rpm: Option<u64>,
    #[arg(long)]
    tpm: Option<u64>,
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Default routing preference for the key's requests: cost, quality or balanced.
    #[arg(long)]
    prefer: Option<String>,
    /// Store the key's prompts and answers in the request log (see `[request_log]`).
    #[arg(long)]
    store_bodies: bool,
}

#[derive(Subcommand)]
enum RouterCommand {
    /// Fit the difficulty score and the intent classifier to labelled prompts (JSON Lines with
    /// id, source, prompt, and intent and/or weak_ok + strong_ok) and write the model file.
    Train {
        /// One or more JSON Lines files.
        #[arg(required = true)]
        data: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(long, default_value = "config/router/model.json")]
        out: PathBuf,
        /// Hashed n-gram buckets, as a power of two.
        #[arg(long, default_value_t = 16)]
        hash_bits: u32,
        #[arg(long, default_value_t = 6)]
        epochs: usize,
        /// Cross-validation folds for the printed estimate (0: none).
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 0.01)]
        learning_rate: f32,
        #[arg(long, default_value_t = 1e-5)]
        l2: f32,
        /// Learning rate of n-gram weights relative to dense features (difficulty score).
        #[arg(long, default_value_t = 0.3)]
        ngram_rate: f32,
        /// What the difficulty score predicts: `gain` (the strong model's expected gain over the
        /// weak one), `needs-strong` or `weak-fails`.
        #[arg(long, default_value = "gain")]
        target: String,
    },
    /// Score labelled prompts with a model and print, per source, APGR, CPT50, CPT80, strong
    /// calls for 95 % of strong quality, AUROC, and intent accuracy and macro-F1.
    Eval {
        data: PathBuf,
        #[arg(long, default_value = "config/router/model.json")]
        model: PathBuf,
        /// Also write every row's score as JSON Lines ({"id", "score"}).
        #[arg(long)]
        scores: Option<PathBuf>,
    },
}

/// Which usage events a command covers.
#[derive(Args)]
struct UsageScope {
    /// Start (inclusive): a date, an RFC 3339 UTC time or milliseconds since 1970.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// A key id.
    #[arg(long)]
    key: Option<String>,
    /// A team id.
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    model: Option<String>,
}

impl UsageScope {
    /// The scope as admin API fields.
    fn fields(self) -> [(&'static str, Option<String>); 5] {
        [
            ("from", self.from),
            ("to", self.to),
            ("key_id", self.key),
            ("team_id", self.team),
            ("model", self.model),
        ]
    }
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Stream usage events of a time range as CSV or JSON.
    Export {
        #[command(flatten)]
        scope: UsageScope,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Re-price stored events with the price table the gateway loaded.
    Reprice {
        #[command(flatten)]
        scope: UsageScope,
        /// Report what would change without changing it.
        #[arg(long)]
        dry_run: bool,
    },
}

fn load(path: Option<&std::path::Path>) -> Result<Config, switchyard::config::ConfigError> {
    Config::load(path, &|k| std::env::var(k).ok(), std::env::vars())
}

fn main() -> ExitCode {
    // The local embedding model computes on one thread per embedding unless told otherwise:
    // embeddings run one per blocking thread, and two threads for one small input measured
    // slower than one here. Set before any thread starts.
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: std::env::var_os("SWITCHYARD_CONFIG").map(PathBuf::from),
        listen: None,
    }) {
        Command::Router { command } => match router_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Cache { command } => match cache_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Keys { admin, command } => admin_command(&admin, |c| keys(c, command, admin.json)),
        Command::Usage { admin, command } => admin_command(&admin, |c| usage(c, command, admin.json)),
        Command::CheckConfig { file } => match load(Some(&file)) {
            Ok(c) => {
                println!(
                    "{}: ok ({} providers, {} models, {} deployments)",
                    file.display(),
                    c.providers.len(),
                    c.models.len(),
                    c.models.values().map(|m| m.deployments.len()).sum::<usize>()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, listen } => {
            let mut cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(addr) = listen {
                cfg.server.listen = addr;
            }
            switchyard::telemetry::init_logging(cfg.server.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(cfg.server.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("cannot listen on {}: {e}", cfg.server.listen);
                        return ExitCode::FAILURE;
                    }
                };
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let demo = if config.is_none() { " (demo: built-in mock models, no API key needed)" } else { "" };
                tracing::info!(models = ?cfg.models.keys().collect::<Vec<_>>(), "Switchyard listening on http://{addr}{demo}");
                match switchyard::run(cfg, listener, None, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("server error: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// Runs one admin command on a small runtime; prints its error and fails on error.
fn admin_command<F, Fut>(args: &AdminArgs, f: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let Some(master) = std::env::var(&args.master_key_env).ok().filter(|k| !k.is_empty()) else {
        eprintln!(
            "error: set the master key in the environment variable {}",
            args.master_key_env
        );
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(AdminClient::new(&args.url, master))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints a key with its new secret.
fn print_secret(action: &str, v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    println!(
        "{action} {} ({})",
        v["id"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("")
    );
    println!("secret: {}", v["key"].as_str().unwrap_or("?"));
    println!("The secret is shown only now; store it safely.");
}

async fn keys(c: AdminClient, command: KeysCommand, json_out: bool) -> Result<(), String> {
    use reqwest::Method;
    match command {
        KeysCommand::Create(k) => {
            let CreateKey {
                name,
                team,
                cost_center,
                tags,
                models,
                expires,
                budget_usd,
                period,
                soft_pct,
                rpm,
                tpm,
                max_concurrent,
                prefer,
                store_bodies,
            } = *k;
            let mut limits = json!({"rpm": rpm, "tpm": tpm, "max_concurrent": max_concurrent});
            if let Some(usd) = budget_usd {
                limits["budget"] = json!({"limit_usd": usd, "period": period, "soft_limit_pct": soft_pct});
            }
            let mut body = json!({"name": name, "tags": tags, "limits": limits, "store_bodies": store_bodies});
            for (field, v) in [("team_id", team), ("cost_center", cost_center), ("expires_at", expires)] {
                if let Some(v) = v {
                    body[field] = Value::String(v);
                }
            }
            if let Some(m) = models {
                body["allowed_models"] = json!(m);
            }
            if let Some(p) = prefer {
                body["route_prefer"] = json!(p);
            }
            let v = c.call(Method::POST, "/keys", Some(&body)).await?;
            print_secret("created", &v, json_out);
        }
        KeysCommand::List { team } => {
            let path = match team {
                Some(t) => format!("/keys?team_id={}", query_value(&t)),
                None => "/keys".to_string(),
            };
            let v = c.call(Method::GET, &path, None).await?;
            if json_out {
                print_json(&v);
            } else {
                print!("{}", keys_table(&v));
            }
        }
        KeysCommand::Revoke { id } => {
            let v = c
                .call(Method::POST, &format!("/keys/{}/revoke", query_value(&id)), None)
                .await?;
            if json_out {
                print_json(&v);
            } else {
                println!("revoked {}", v["id"].as_str().unwrap_or(&id));
            }
        }
        KeysCommand::Rotate { id } => {
            let v = c
                .call(Method::POST, &format!("/keys/{}/rotate", query_value(&id)), None)
                .await?;
            print_secret("rotated", &v, json_out);
        }
    }
    Ok(())
}

async fn usage(c: AdminClient, command: UsageCommand, json_out: bool) -> Result<(), String> {
    match command {
        UsageCommand::Export { scope, format, output } => {
            let mut query = format!("format={}", query_value(&format));
            for (name, v) in scope.fields() {
                if let Some(v) = v {
                    query.push_str(&format!("&{name}={}", query_value(&v)));
                }
            }
            let path = format!("/usage/export?{query}");
            match output {
                Some(file) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(&file).map_err(|e| format!("cannot create {}: {e}", file.display()))?,
                    );
                    let n = c.download(&path, &mut f).await?;
                    eprintln!("wrote {n} bytes to {}", file.display());
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    c.download(&path, &mut out).await?;
                }
            }
        }
        UsageCommand::Reprice { scope, dry_run } => {
            let mut body = json!({"dry_run": dry_run});
            for (name, v) in scope.fields() {
                if let Some(v) = v {
                    body[name] = Value::String(v);
                }
            }
            let v = c.call(reqwest::Method::POST, "/usage/reprice", Some(&body)).await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "{} events, {} {}changed, {} without a price; cost {} -> {} USD",
                    v["events"],
                    v["changed"],
                    if dry_run { "would be " } else { "" },
                    v["unpriced"],
                    v["cost_before_usd"].as_str().unwrap_or("?"),
                    v["cost_after_usd"].as_str().unwrap_or("?"),
                );
            }
        }
    }
    Ok(())
}

fn router_command(command: RouterCommand) -> Result<(), String> {
    use switchyard::router::{self, model::RouterModel, train};
    match command {
        RouterCommand::Train {
            data,
            out,
            hash_bits,
            epochs,
            folds,
            learning_rate,
            l2,
            target,
            ngram_rate,
        } => {
            let target = match target.as_str() {
                "needs-strong" => train::Target::NeedsStrong,
                "weak-fails" => train::Target::WeakFails,
                "gain" => train::Target::Gain,
                other => {
                    return Err(format!(
                        "--target must be needs-strong, weak-fails or gain, not `{other}`"
                    ))
                }
            };
            if !(8..=22).contains(&hash_bits) || epochs == 0 {
                return Err("--hash-bits must be 8..=22 and --epochs at least 1".into());
            }
            let mut rows = Vec::new();
            for path in &data {
                rows.extend(train::read_rows(path)?);
            }
            let opts = train::Options {
                hash_bits,
                epochs,
                folds,
                learning_rate,
                l2,
                target,
                ngram_rate,
                ..train::Options::default()
            };
            let started = std::time::Instant::now();
            let (file, cv) = train::train(&rows, &opts)?;
            for (source, r) in &cv {
                println!(
                    "cross-validated {source} {}",
                    serde_json::to_string(r).unwrap_or_default()
                );
            }
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let text = serde_json::to_string(&file).map_err(|e| e.to_string())?;
            std::fs::write(&out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!(
                "wrote {} ({} difficulty rows, {} intent rows, intents {}, 2^{} n-gram buckets) in {:.1} s",
                out.display(),
                file.training.rows,
                file.training.intent_rows,
                file.intents.join(","),
                file.hash_bits,
                started.elapsed().as_secs_f64()
            );
        }
        RouterCommand::Eval { data, model, scores } => {
            let model = RouterModel::load(&model)?;
            let rows = train::read_rows(&data)?;
            let e = router::evaluate(&model, &rows);
            for (source, r) in &e.routing {
                println!("{source} {}", serde_json::to_string(r).unwrap_or_default());
            }
            for (source, (n, acc, f1)) in &e.intent {
                println!(
                    "{source} {}",
                    json!({"intent_n": n, "intent_accuracy": (acc * 1000.0).round() / 1000.0,
                           "intent_macro_f1": (f1 * 1000.0).round() / 1000.0})
                );
            }
            if let Some(path) = scores {
                let mut text = String::new();
                for (id, s) in &e.scores {
                    text.push_str(&json!({"id": id, "score": s}).to_string());
                    text.push('\n');
                }
                std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn cache_command(command: CacheCommand) -> Result<(), String> {
    let CacheCommand::Eval {
        file,
        split,
        embedder,
        model_dir,
        threshold,
        config,
        json,
    } = command;
    let mut cfg = match config {
        Some(path) => load(Some(&path)).map_err(|e| e.to_string())?,
        None => switchyard::config::Config::from_toml("", &|_| None, std::iter::empty()).map_err(|e| e.to_string())?,
    };
    let s = &mut cfg.cache.semantic;
    s.embedder = match embedder.as_str() {
        "local" => switchyard::config::EmbedderKind::Local,
        "lexical" => switchyard::config::EmbedderKind::Lexical,
        "remote" => switchyard::config::EmbedderKind::Remote,
        other => return Err(format!("unknown embedder `{other}`: local, lexical or remote")),
    };
    if model_dir.is_some() {
        s.model_dir = model_dir;
    }
    if threshold.is_some() {
        s.threshold = threshold;
    }
    let pairs = switchyard::cache::eval::read_pairs(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let report = runtime.block_on(async {
        let gateway = switchyard::proxy::gateway::Gateway::new(&cfg);
        let e = switchyard::cache::embed::from_config(&cfg.cache.semantic, &gateway)?;
        switchyard::cache::eval::run(&pairs, &split, &cfg.cache, e).await
    })?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
