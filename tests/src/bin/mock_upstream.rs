//! `mock-upstream [--listen ADDR]`: the mock OpenAI/Anthropic upstream as a standalone server.

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--help" | "-h" => {
                println!("mock-upstream [--listen ADDR]\nServes /v1/chat/completions, /v1/embeddings, /v1/messages; see tests/src/mock.rs for directives.");
                return;
            }
            other => {
                eprintln!("unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let mock = switchyard_tests::MockUpstream::serve(listener).await;
    println!("mock-upstream listening on {}", mock.addr);
    let _ = tokio::signal::ctrl_c().await;
}
