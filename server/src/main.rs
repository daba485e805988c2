//! The `switchyard` command: parses arguments, loads the configuration, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::config::Config;

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
}

fn load(path: Option<&std::path::Path>) -> Result<Config, switchyard::config::ConfigError> {
    Config::load(path, &|k| std::env::var(k).ok(), std::env::vars())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: std::env::var_os("SWITCHYARD_CONFIG").map(PathBuf::from),
        listen: None,
    }) {
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
