//! `fast-upstream --listen ADDR`: the cheapest OpenAI-compatible upstream for the benchmark.
//!
//! A hand-written HTTP/1.1 responder on tokio: it reads a request's head and body (by
//! `Content-Length`, keep-alive), and answers with a fixed chat completion, or, when the body
//! asks for `"stream":true`, a fixed stream of 24 content chunks, a finish chunk and a usage
//! chunk, written at once. No JSON parsing, no allocation per request beyond the read buffer:
//! a few microseconds of CPU a request, so what the benchmark measures is the proxy in front.

use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Content pieces in a streamed answer.
pub const STREAM_CHUNKS: usize = 24;

fn json_response() -> &'static [u8] {
    static R: OnceLock<Vec<u8>> = OnceLock::new();
    R.get_or_init(|| {
        let body = r#"{"id":"chatcmpl-fast","object":"chat.completion","created":1700000000,"model":"fast","choices":[{"index":0,"message":{"role":"assistant","content":"A lighthouse keeper finds a message in a bottle and spends a winter answering it. In spring a ship arrives, captained by the writer.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":30,"total_tokens":56,"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp_fast"}"#;
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

fn stream_response() -> &'static [u8] {
    static R: OnceLock<Vec<u8>> = OnceLock::new();
    R.get_or_init(|| {
        let head = r#"{"id":"chatcmpl-fast","object":"chat.completion.chunk","created":1700000000,"model":"fast","system_fingerprint":"fp_fast","choices":"#;
        let mut body = String::new();
        let mut event = |choices: &str, extra: &str| {
            body.push_str("data: ");
            body.push_str(head);
            body.push_str(choices);
            body.push_str(extra);
            body.push_str("}\n\n");
        };
        event(
            r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
            "",
        );
        for i in 0..STREAM_CHUNKS {
            event(
                &format!(r#"[{{"index":0,"delta":{{"content":"piece {i:02} "}},"logprobs":null,"finish_reason":null}}]"#),
                "",
            );
        }
        event(r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#, "");
        event(
            "[]",
            r#","usage":{"prompt_tokens":26,"completion_tokens":48,"total_tokens":74,"prompt_tokens_details":{"cached_tokens":0}}"#,
        );
        body.push_str("data: [DONE]\n\n");
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// The end of the head (the index after `\r\n\r\n`), if it has arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn content_length(head: &[u8]) -> usize {
    let text = std::str::from_utf8(head).unwrap_or("");
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn wants_stream(body: &[u8]) -> bool {
    body.windows(13).any(|w| w == b"\"stream\":true") || body.windows(14).any(|w| w == b"\"stream\": true")
}

async fn serve(mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut tmp = [0u8; 16 * 1024];
    loop {
        // Read until a whole request (head and body) is buffered.
        let (end, len) = loop {
            if let Some(end) = head_end(&buf) {
                let len = content_length(&buf[..end]);
                if buf.len() >= end + len {
                    break (end, len);
                }
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let response = if wants_stream(&buf[end..end + len]) {
            stream_response()
        } else {
            json_response()
        };
        if sock.write_all(response).await.is_err() {
            return;
        }
        buf.drain(..end + len);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!("fast-upstream listening on {}", listener.local_addr().expect("bound"));
    loop {
        if let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock));
        }
    }
}
