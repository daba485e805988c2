//! The router in-process (`oneshot`, no socket): fast checks of routing and error shapes on the demo config.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use switchyard::config::Config;
use switchyard::money::meter::{MemorySink, UsageSink};
use tower::ServiceExt;

async fn app() -> (axum::Router, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let s: Arc<dyn UsageSink> = sink.clone();
    let mut cfg = Config::demo();
    for p in cfg.providers.values_mut() {
        p.latency_ms = 0;
        p.chunk_delay_ms = 0;
    }
    let store = switchyard::store::Store::connect(&switchyard_tests::temp_sqlite_url(), 2)
        .await
        .unwrap();
    let state = switchyard::build_state(&cfg, s, store, Arc::new(switchyard::clock::SystemClock));
    (switchyard::http::router(state), sink)
}

async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn post(body: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn demo_answers_without_any_key() {
    let (app, sink) = app().await;
    let (status, h, v) = send(
        app,
        post(r#"{"model":"demo-cheap","messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["x-switchyard-deployment"], "demo/demo-cheap");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("hi"));
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn error_table() {
    let cases: Vec<(Request<Body>, StatusCode, Option<&str>)> = vec![
        (post("not json"), StatusCode::BAD_REQUEST, None),
        (post("[]"), StatusCode::BAD_REQUEST, None),
        (
            post(r#"{"model":"demo-cheap"}"#),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            post(r#"{"model":"x","messages":[{"role":"user","content":"a"}]}"#),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            post(r#"{"model":"demo-embed","messages":[{"role":"user","content":"a"}]}"#),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            Request::post("/v1/chat/completions")
                .header("content-type", "text/xml")
                .body(Body::from("<a/>"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            Request::get("/nope").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Request::delete("/v1/models").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
    ];
    for (req, want, param) in cases {
        let uri = req.uri().clone();
        let (app, sink) = app().await;
        let (status, h, v) = send(app, req).await;
        assert_eq!(status, want, "{uri}: {v}");
        let err = &v["error"];
        for key in ["message", "type", "param", "code"] {
            assert!(
                err.as_object().unwrap().contains_key(key),
                "{uri}: missing {key} in {v}"
            );
        }
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{uri}");
        }
        assert_eq!(h["content-type"], "application/json");
        assert!(sink.events().is_empty(), "{uri}: rejected input yields no usage event");
    }
}
