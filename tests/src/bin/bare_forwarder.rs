//! `bare-forwarder --listen ADDR --upstream URL`: the least a proxy on this stack can do, for the benchmark.
//!
//! axum in, reqwest out, the body passed through untouched and the answer streamed back: no
//! validation, routing, metering or pricing. Comparing it with Switchyard separates the cost of
//! an extra HTTP hop (which any gateway pays) from the cost of what Switchyard does on it.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let mut rb = up.client.post(up.url.clone()).body(body);
    if let Some(ct) = headers.get("content-type") {
        rb = rb.header("content-type", ct.clone());
    }
    match rb.send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let ct = resp.headers().get("content-type").cloned();
            let mut r = Response::new(Body::from_stream(resp.bytes_stream()));
            *r.status_mut() = status;
            if let Some(ct) = ct {
                r.headers_mut().insert("content-type", ct);
            }
            r
        }
        Err(_) => {
            let mut r = Response::new(Body::from("upstream failed"));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen = get("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let Some(upstream) = get("--upstream") else {
        eprintln!("usage: bare-forwarder --listen ADDR --upstream http://HOST:PORT/v1/chat/completions");
        std::process::exit(2);
    };
    let url = reqwest::Url::parse(&upstream).unwrap_or_else(|e| {
        eprintln!("bad --upstream: {e}");
        std::process::exit(2)
    });
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let app = Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state(Upstream { client, url });
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!("bare-forwarder listening on {}", listener.local_addr().expect("bound"));
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, app).await;
}
