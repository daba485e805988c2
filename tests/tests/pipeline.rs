//! The request pipeline driven in-process, without axum or a socket, the way a queued job would
//! drive it; and the promises it makes about token counting and admission.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard::app::{build_state_with, App};
use switchyard::clock::SystemClock;
use switchyard::config::Config;
use switchyard::money::meter::{MemorySink, UsageSink};
use switchyard::money::pricing::Nanos;
use switchyard::proxy::lookup::{Answer, Finding, Found, Hit, HitKind, Lookup, Query};
use switchyard::proxy::pipeline::{self, ChatCall, ServedBody};
use switchyard::proxy::request::ChatRequest;
use switchyard::records::usage::{Outcome, UsageSource};
use switchyard_tests::{parse_config, temp_sqlite_url, Admin, TestGateway};

mod common;

/// In-process mock models (no network): a cheap and a strong one with small context windows,
/// a route between them with a shadow, and a plain model.
const CONFIG: &str = r#"
[providers.m]
kind = "mock"
latency_ms = 0
chunk_delay_ms = 0

[models.small]
[[models.small.deployments]]
provider = "m"
model = "small"
input_per_mtok = "1"
output_per_mtok = "2"
context_window = 4000
max_output_tokens = 100

[models.large]
[[models.large.deployments]]
provider = "m"
model = "large"
input_per_mtok = "10"
output_per_mtok = "20"
context_window = 8000
max_output_tokens = 100

[routes.auto]
cheap = "small"
strong = "large"
shadow = "frugal"

[routes.frugal]
cheap = "small"
strong = "large"
strong_share = 0
"#;

async fn app(lookup: Option<Arc<dyn Lookup>>) -> (Arc<App>, Arc<MemorySink>) {
    let cfg: Config = parse_config(CONFIG);
    let sink = Arc::new(MemorySink::default());
    let s: Arc<dyn UsageSink> = sink.clone();
    let store = switchyard::store::Store::connect(&temp_sqlite_url(), 2).await.unwrap();
    (build_state_with(&cfg, s, store, Arc::new(SystemClock), lookup), sink)
}

fn request(body: Value) -> ChatRequest {
    let Value::Object(m) = body else { panic!("an object") };
    ChatRequest::from_body(m).unwrap()
}

fn call(request: ChatRequest) -> ChatCall {
    ChatCall {
        request,
        principal: None,
        request_id: Arc::from("req_job_1"),
        received: Instant::now(),
        body: Default::default(),
        path_route: None,
        prefer: None,
        directives: Default::default(),
    }
}

#[tokio::test]
async fn the_pipeline_serves_a_request_without_http() {
    let (app, sink) = app(None).await;
    let reply = pipeline::chat(
        &app,
        call(request(
            json!({"model": "small", "messages": [{"role": "user", "content": "hello job"}]}),
        )),
    )
    .await;
    let served = reply.outcome.expect("answered");
    let ServedBody::Json { body, accounted } = served.body else {
        panic!("a JSON answer")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hello job"));
    assert_eq!(accounted.source, UsageSource::Reported);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].request_id, "req_job_1");
    assert_eq!(events[0].cost_nanos, accounted.cost.0);

    // A stream, read to its end, is metered once it ends.
    let reply = pipeline::chat(
        &app,
        call(request(
            json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "stream it"}]}),
        )),
    )
    .await;
    assert_eq!(reply.decision.as_ref().map(|d| d.route.as_str()), Some("auto"));
    let ServedBody::Stream(mut body) = reply.outcome.expect("answered").body else {
        panic!("a stream")
    };
    let mut text = Vec::new();
    while let Some(Ok(b)) = body.next().await {
        text.extend_from_slice(&b);
    }
    assert!(String::from_utf8(text).unwrap().ends_with("data: [DONE]\n\n"));
    let events = sink.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].route.as_deref(), Some("auto"));
    assert_eq!(events[1].shadow_model.as_deref(), Some("small"));
}

#[tokio::test]
async fn a_routed_request_counts_its_prompt_once() {
    let (app, sink) = app(None).await;
    // About 3,000 tokens: its byte length (over 8,000) exceeds both windows, so the windows of
    // the cheap and the strong tier, the shadow's decision and the dispatch all need the count.
    let long = "alpha beta gamma delta ".repeat(400);
    let req = request(json!({"model": "auto", "messages": [{"role": "user", "content": long}], "max_tokens": 100}));
    let prompt = req.prompt.clone();
    let reply = pipeline::chat(&app, call(req)).await;
    assert!(reply.outcome.is_ok(), "{:?}", reply.outcome.err());
    assert_eq!(prompt.counts_made(), 1, "counted once for the whole request");
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn an_impossible_max_tokens_is_refused_without_counting() {
    let (app, sink) = app(None).await;
    // Two megabytes of prompt: counting it would take a long while, and is not needed.
    let huge = "word ".repeat(400_000);
    let req = request(json!({"model": "auto", "max_tokens": 4_294_967_295u64,
        "messages": [{"role": "user", "content": huge}]}));
    let prompt = req.prompt.clone();
    let reply = pipeline::chat(&app, call(req)).await;
    let failure = reply.outcome.err().expect("refused");
    assert_eq!(failure.error.status.as_u16(), 400);
    assert_eq!(failure.error.code, Some("context_length_exceeded"));
    assert_eq!(prompt.counts_made(), 0, "refused without counting");
    // Accepted, then refused: one event, recorded as rejected.
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Rejected);
}

/// A lookup that knows one answer.
struct Known;

impl Lookup for Known {
    fn find<'a>(&'a self, q: Query<'a>) -> Finding<'a> {
        let asked = q.request.body["messages"][0]["content"].as_str() == Some("known question");
        let found = if q.model == "small" && asked {
            let body = json!({"id": "chatcmpl-known", "object": "chat.completion", "model": "small",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "known answer"},
                                "finish_reason": "stop"}]});
            Found::Hit(Hit {
                answer: Arc::new(Answer {
                    body: Bytes::from(body.to_string()),
                    model: "small".into(),
                    usage: Default::default(),
                    cost: Nanos(5),
                    tool_calls: false,
                }),
                kind: HitKind::Exact,
                entry: "ce_known".into(),
                age_secs: 3,
            })
        } else {
            Found::Miss {
                keep: None,
                why: "not known".into(),
            }
        };
        Box::pin(std::future::ready(found))
    }
}

#[tokio::test]
async fn the_lookup_slot_answers_before_dispatch_and_is_metered_once() {
    let (app, sink) = app(Some(Arc::new(Known))).await;
    let reply = pipeline::chat(
        &app,
        call(request(
            json!({"model": "small", "messages": [{"role": "user", "content": "known question"}]}),
        )),
    )
    .await;
    let served = reply.outcome.expect("answered");
    assert!(served.deployment.is_none(), "no upstream was called");
    let ServedBody::Json { body, accounted } = served.body else {
        panic!("JSON")
    };
    assert!(String::from_utf8_lossy(&body).contains("known answer"));
    assert_eq!(accounted.cost.0, 0);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].outcome, events[0].cost_nanos), (Outcome::Success, 0));
    assert_eq!(events[0].deployment, None);
    assert_eq!(
        (
            events[0].cache.as_deref(),
            events[0].cache_entry.as_deref(),
            events[0].cache_saved_nanos
        ),
        (Some("hit"), Some("ce_known"), 5)
    );
    // Anything else goes upstream.
    let reply = pipeline::chat(
        &app,
        call(request(
            json!({"model": "small", "messages": [{"role": "user", "content": "other"}]}),
        )),
    )
    .await;
    assert!(reply.outcome.expect("answered").deployment.is_some());
}

#[tokio::test]
async fn the_route_oracle_needs_a_key_and_counts_against_its_rate_limit() {
    let text = format!("[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n{CONFIG}");
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();
    let ask = json!({"model": "auto", "messages": [{"role": "user", "content": "which model?"}]});
    let r = c.post(gw.url("/v1/route")).json(&ask).send().await.unwrap();
    assert_eq!(r.status(), 401, "no key, no decision");
    let admin = Admin::new(&gw);
    let (_, key) = admin.key(json!({"name": "oracle", "limits": {"rpm": 2}})).await;
    for _ in 0..2 {
        let r = c
            .post(gw.url("/v1/route"))
            .bearer_auth(&key)
            .json(&ask)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(common::header(r.headers(), "x-ratelimit-limit-requests"), "2");
    }
    let r = c
        .post(gw.url("/v1/route"))
        .bearer_auth(&key)
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the oracle is rate limited like chat");
    assert!(r.headers().contains_key("retry-after"));
    // The decisions called no model and cost nothing: no usage events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(gw.usage.events().is_empty());
    gw.stop().await.unwrap();
}
