//! Tests of the provider layer: chunk peeking, errors behind a 200 and their classes, usage
//! as sent, connect failures in our words.

use super::*;

#[tokio::test]
async fn connect_failures_say_refused_or_tls_in_our_words() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let c = http_client(Duration::from_secs(2));
    let e = c.get(format!("https://{addr}/")).send().await.unwrap_err();
    let mut chain = vec![format!("{e:?}")];
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push(format!("{s:?}"));
        src = s.source();
    }
    let UpstreamError::Connect(why) = map_reqwest(e) else {
        panic!("not a connect error")
    };
    assert_eq!(why, "TLS handshake failed", "{chain:#?}");
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let e = c.get(format!("http://{closed}/")).send().await.unwrap_err();
    assert!(matches!(map_reqwest(e), UpstreamError::Connect(w) if w == "connection refused"));
}

#[test]
fn only_plain_content_skips_parsing() {
    let plain = [
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a \"quoted\" word"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null},{"index":1,"delta":{"content":"y"},"finish_reason":null}]}"#,
    ];
    let not_plain = [
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason": null}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"function_call":{"arguments":"{}"}}}]}"#,
        r#"{"error":{"message":"overloaded"}}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"usage"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null},{"index":1,"delta":{},"finish_reason":"length"}]}"#,
        r#"{"choices": [{"index":0,"delta":{"content":"spaced"}}]}"#,
        r#"not json {"choices":[{"#,
    ];
    for c in plain {
        assert!(is_plain_content(c), "{c}");
        let info = ChunkInfo::peek_str(c).unwrap();
        assert!(info.text_later, "{c}");
        // What the skipped parse would have found: nothing but text.
        let full = ChunkInfo::peek(c.as_bytes()).unwrap();
        assert!(
            !full.finish && !full.carries_usage && !full.no_choices && !full.tool_calls,
            "{c}"
        );
        let chunk = Chunk {
            data: Bytes::copy_from_slice(c.as_bytes()),
            info,
        };
        assert_eq!(chunk.text(), full.text, "{c}");
    }
    for c in not_plain {
        assert!(!is_plain_content(c), "{c}");
    }
    let parsed = ChunkInfo::peek_str(not_plain[0]).unwrap();
    assert!(parsed.finish && !parsed.text_later);
}

#[test]
fn peeks_chunks() {
    let c = br#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#;
    let i = ChunkInfo::peek(c).unwrap();
    assert_eq!(i.text, "Hel");
    assert!(!i.finish && !i.no_choices && i.usage.is_none());
    let u = br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;
    let i = ChunkInfo::peek(u).unwrap();
    assert!(i.no_choices);
    assert_eq!(
        i.usage,
        Some(Reported::from(crate::records::usage::Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 4
        }))
    );
    let t = br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]},"finish_reason":"tool_calls"}]}"#;
    let i = ChunkInfo::peek(t).unwrap();
    assert!(i.finish);
    assert_eq!(i.text, "{\"a\"");
    assert!(ChunkInfo::peek(b"not json").is_none());
}

#[test]
fn chunks_built_from_values_read_like_parsed_ones() {
    let v = serde_json::json!({"choices": [{"index": 0, "delta": {"content": "Hi", "tool_calls": [
        {"index": 0, "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "stop"}]});
    let built = Chunk::from_value(&v);
    let parsed = ChunkInfo::peek(&built.data).unwrap();
    assert_eq!((built.info.text.as_str(), built.info.finish), ("Hif{}", true));
    assert_eq!((parsed.text.as_str(), parsed.finish), ("Hif{}", true));
    // A zero report is carried as sent (so the usage-only chunk is still recognised).
    let zero =
        Chunk::from_value(&serde_json::json!({"choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0}}));
    assert!(zero.info.carries_usage && zero.info.no_choices);
    assert_eq!(zero.info.usage.and_then(|u| u.prompt_tokens), Some(0));
}

#[test]
fn reads_errors_behind_a_200() {
    assert!(matches!(read_body(br#"{"error":{"message":"quota"}}"#), BodyRead::Error(m) if m == "quota"));
    assert!(matches!(read_body(br#"{"error":"boom"}"#), BodyRead::Error(m) if m == "boom"));
    assert!(matches!(
        read_body(br#"{"choices":[],"error":null}"#),
        BodyRead::Answer(None)
    ));
    assert!(matches!(read_body(b"<html>"), BodyRead::NotJson));
    let ok = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    assert!(matches!(read_body(ok), BodyRead::Answer(Some(u)) if u.prompt_tokens == Some(3)));
}

#[test]
fn classifies_errors() {
    let s = |status| UpstreamError::Status {
        status,
        message: String::new(),
        retry_after: None,
    };
    assert!(s(429).retryable() && !s(429).transient());
    assert!(s(503).retryable() && s(503).transient());
    assert!(!s(400).retryable());
    assert!(!s(422).retryable());
    assert!(UpstreamError::Timeout.transient());
    assert_eq!(s(500).kind(), "upstream_5xx");
}

#[test]
fn reads_error_messages() {
    assert_eq!(error_message(400, br#"{"error":{"message":"bad thing"}}"#), "bad thing");
    assert_eq!(error_message(500, b"<html>"), "upstream returned status 500");
    // A forged log line or header break becomes spaces; a long message is cut.
    let forged = br#"{"error":{"message":"bad\n2026-01-01 INFO admin signed in\r\nx"}}"#;
    assert_eq!(error_message(400, forged), "bad 2026-01-01 INFO admin signed in  x");
    let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "é".repeat(2000));
    assert!(error_message(400, long.as_bytes()).len() <= 1000);
    let mut h = http::HeaderMap::new();
    h.insert("retry-after", "7".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
}

#[test]
fn usage_is_read_as_sent_whatever_it_says() {
    let read = |u: &str| {
        let chunk = format!(r#"{{"choices":[],"usage":{u}}}"#);
        ChunkInfo::peek(chunk.as_bytes())
            .expect("the chunk stays readable")
            .usage
    };
    let huge = read(r#"{"prompt_tokens":4611686018427387904,"completion_tokens":-5}"#).unwrap();
    assert_eq!(huge.prompt_tokens, Some(1 << 62));
    assert_eq!(huge.completion_tokens, Some(-5));
    let nulls = read(r#"{"prompt_tokens":null,"completion_tokens":null,"prompt_tokens_details":null}"#).unwrap();
    assert_eq!(
        (nulls.prompt_tokens, nulls.completion_tokens, nulls.malformed),
        (None, None, false)
    );
    let odd = read(r#"{"prompt_tokens":"12","completion_tokens":1.5,"prompt_tokens_details":{"cached_tokens":[1]}}"#)
        .unwrap();
    assert!(odd.malformed);
    let big = read(r#"{"prompt_tokens":1e30,"completion_tokens":99999999999999999999999}"#).unwrap();
    assert!(
        big.prompt_tokens.unwrap() > 10i128.pow(29),
        "a float count is read as the integer it is"
    );
    assert!(big.completion_tokens.unwrap() > i128::from(u64::MAX));
    assert_eq!(read("null"), None);
}
