//! Cascades end to end against the HTTP mock upstream: the cheap model answers first; an answer
//! that fails a check (empty, refusal, broken JSON, broken tool call, low confidence, upstream
//! failure) is replaced by the strong model's, the client sees one answer, and the usage event
//! records the escalation and what the discarded attempt cost.

use serde_json::{json, Value};
use switchyard::records::usage::UsageEvent;
use switchyard_tests::{Admin, MockUpstream, TestGateway};

/// One cheap logical model per kind of poor answer, one strong model, one route per cheap model
/// (all traffic to the cheap tier: `strong_share = 0`).
fn config(mock: &str) -> String {
    let mut s = format!(
        r#"
[auth]
required = false
master_key_env = "TEST_MASTER_KEY"
[server.retry]
attempts_per_deployment = 1
max_total_attempts = 1
backoff_ms = 1
max_backoff_ms = 2
[providers.up]
kind = "openai"
base_url = "{mock}"

[models.big]
[[models.big.deployments]]
provider = "up"
model = "big"
input_per_mtok = "10"
output_per_mtok = "30"
context_window = 100000
capabilities = ["tools", "json"]
"#
    );
    for (name, upstream, cascade) in [
        ("fine", "cheap", "{}"),
        ("empty", "cheap;answer=empty", "{}"),
        ("refusal", "cheap;answer=refusal", "{}"),
        ("badjson", "cheap;answer=badjson", "{}"),
        ("badtool", "cheap;answer=badtool", "{}"),
        ("text", "cheap;answer=text", "{}"),
        ("unsure", "cheap;logprob=-3", "{ min_logprob = -1.0 }"),
        ("sure", "cheap;logprob=-0.2", "{ min_logprob = -1.0 }"),
        ("broken", "cheap;error=500", "{}"),
        ("cut", "cheap;stream_error=3", "{}"),
        ("lax", "cheap;answer=badjson", "{ checks = [\"empty\"] }"),
        ("long", "cheap;answer=empty;pad=3000;chunks=4", "{ max_buffer_kb = 1 }"),
        ("slow", "cheap;chunks=40;delay=25", "{}"),
    ] {
        s.push_str(&format!(
            r#"
[models.{name}]
[[models.{name}.deployments]]
provider = "up"
model = "{upstream}"
input_per_mtok = "1"
output_per_mtok = "2"
context_window = 100000
capabilities = ["tools", "json"]

[routes.c-{name}]
cheap = "{name}"
strong = "big"
strong_share = 0
cascade = {cascade}
"#
        ));
    }
    s
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
    "required": ["city"], "properties": {"city": {"type": "string"}}}}}]"#;

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The completion (JSON), or the chunks (stream).
    body: Value,
}

impl Answer {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The answer's text or tool call arguments, and its finish reason, however it came.
    fn content(&self) -> (String, String) {
        if let Some(chunks) = self.body.as_array() {
            let mut text = String::new();
            let mut finish = Vec::new();
            for c in chunks {
                let ch = &c["choices"][0];
                text.push_str(ch["delta"]["content"].as_str().unwrap_or(""));
                text.push_str(
                    ch["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .unwrap_or(""),
                );
                if let Some(f) = ch["finish_reason"].as_str() {
                    finish.push(f.to_string());
                }
            }
            assert_eq!(finish.len(), 1, "one answer, one finish: {}", self.body);
            (text, finish.remove(0))
        } else {
            let ch = &self.body["choices"][0];
            let text = ch["message"]["content"]
                .as_str()
                .or(ch["message"]["tool_calls"][0]["function"]["arguments"].as_str())
                .unwrap_or("")
                .to_string();
            (text, ch["finish_reason"].as_str().unwrap_or("").to_string())
        }
    }
}

async fn ask(gw: &TestGateway, route: &str, extra: Value, stream: bool) -> Answer {
    let mut body = json!({"model": format!("c-{route}"), "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
        "stream": stream});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = if stream && status == 200 {
        let mut chunks = Vec::new();
        let mut done = 0;
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                done += 1;
            } else {
                chunks.push(serde_json::from_str::<Value>(line).unwrap());
            }
        }
        assert_eq!(done, 1, "{text}");
        Value::Array(chunks)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Answer { status, headers, body }
}

#[tokio::test]
async fn failed_checks_escalate_and_the_client_sees_one_answer() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock.base_url())).await;
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let json_mode = json!({"response_format": {"type": "json_object"}});
    // (route, request extras, streamed too?, expected x-switchyard-cascade)
    let cases: Vec<(&str, Value, &str)> = vec![
        ("fine", json!({}), "accepted"),
        ("empty", json!({}), "escalated:empty"),
        ("refusal", json!({}), "escalated:refusal"),
        ("badjson", json_mode.clone(), "escalated:invalid_json"),
        // Not JSON mode: the same text is a fine answer.
        ("badjson", json!({}), "accepted"),
        ("badtool", json!({"tools": tools}), "escalated:invalid_tool_call"),
        (
            "text",
            json!({"tools": tools, "tool_choice": "required"}),
            "escalated:invalid_tool_call",
        ),
        ("text", json!({"tools": tools}), "accepted"),
        ("unsure", json!({}), "escalated:low_confidence"),
        ("sure", json!({}), "accepted"),
        ("broken", json!({}), "escalated:upstream_error"),
        ("lax", json_mode.clone(), "accepted"),
    ];
    let mut expected_events = 0;
    for stream in [false, true] {
        for (route, extra, want) in &cases {
            let a = ask(&gw, route, extra.clone(), stream).await;
            let case = format!("{route} {extra} stream={stream}");
            assert_eq!(a.status, 200, "{case}: {}", a.body);
            assert_eq!(a.h("x-switchyard-cascade"), *want, "{case}");
            let escalated = want.starts_with("escalated");
            let (text, finish) = a.content();
            if escalated {
                assert_eq!(a.h("x-switchyard-model"), "big", "{case}");
                assert_eq!(a.h("x-switchyard-tier"), "strong", "{case}");
                assert!(a.h("x-switchyard-reason").contains("escalated to big"), "{case}");
                // What the upstream said is not copied into a header.
                assert!(!a.h("x-switchyard-reason").contains("mock failure"), "{case}");
                // The strong model's answer, and nothing of the cheap one's.
                assert!(!text.is_empty(), "{case}");
                assert!(
                    !text.contains("I'm sorry") && !text.contains("unfinished"),
                    "{case}: {text}"
                );
                if extra.get("tools").is_none() && extra.get("response_format").is_none() {
                    assert!(text.contains("This is big"), "{case}: {text}");
                }
            } else {
                assert_eq!(a.h("x-switchyard-model"), *route, "{case}");
                assert_eq!(a.h("x-switchyard-tier"), "cheap", "{case}");
            }
            assert!(!finish.is_empty(), "{case}");
            // The client did not ask for log-probabilities: the ones the cascade asked for are gone.
            let lp = if stream {
                a.body
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["choices"][0]["logprobs"].is_null())
            } else {
                a.body["choices"][0]["logprobs"].is_null()
            };
            assert!(lp, "{case}: {}", a.body);
            expected_events += 1;
        }
    }
    // A mid-stream failure of the cheap model escalates too (the client never saw it).
    let a = ask(&gw, "cut", json!({}), true).await;
    assert_eq!(a.h("x-switchyard-cascade"), "escalated:upstream_error");
    assert!(a.content().0.contains("This is big"));
    expected_events += 1;
    // A client that asks for log-probabilities keeps them.
    let a = ask(&gw, "sure", json!({"logprobs": true}), false).await;
    assert_eq!(a.h("x-switchyard-cascade"), "accepted");
    assert!(a.body["choices"][0]["logprobs"]["content"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    expected_events += 1;
    // A stream longer than the buffer is passed on unchecked, as it comes.
    let a = ask(&gw, "long", json!({}), true).await;
    assert_eq!(a.h("x-switchyard-cascade"), "unchecked");
    assert_eq!(a.h("x-switchyard-model"), "long");
    expected_events += 1;

    // One usage event per request, escalations with what the discarded attempt cost.
    let events = gw
        .wait_for_events(expected_events, std::time::Duration::from_secs(5))
        .await;
    assert_eq!(events.len(), expected_events);
    let escalated: Vec<&UsageEvent> = events
        .iter()
        .filter(|e| e.cascade.as_deref() == Some("escalated"))
        .collect();
    assert_eq!(
        escalated.len(),
        cases.iter().filter(|c| c.2.starts_with("escalated")).count() * 2 + 1
    );
    for e in &escalated {
        let reason = e
            .escalation_reason
            .as_deref()
            .expect("an escalation records its attempt");
        let from = e.escalated_from.as_deref().expect("an escalation records its attempt");
        assert_eq!(e.model, "big");
        assert_eq!(e.deployment.as_deref(), Some("up/big"));
        assert!(
            from.starts_with(e.route.as_deref().unwrap().trim_start_matches("c-")),
            "{e:?}"
        );
        // The strong answer at $10/$30 per Mtok, plus the cheap attempt at $1/$2.
        let answer = (e.prompt_tokens * 10_000 + e.completion_tokens * 30_000) as i64;
        assert_eq!(e.cost_nanos, answer + e.escalation_cost_nanos, "{e:?}");
        if reason == "upstream_error" && e.escalated_deployment.is_none() {
            assert_eq!(
                (e.escalation_prompt_tokens, e.escalation_cost_nanos),
                (0, 0),
                "a failed call costs nothing"
            );
        } else {
            assert!(e.escalation_prompt_tokens > 0 && e.escalation_cost_nanos > 0, "{e:?}");
            assert_eq!(
                e.escalation_cost_nanos,
                (e.escalation_prompt_tokens * 1_000 + e.escalation_completion_tokens * 2_000) as i64,
                "{e:?}"
            );
        }
    }
    let accepted = events
        .iter()
        .filter(|e| e.cascade.as_deref() == Some("accepted"))
        .count();
    assert_eq!(accepted, events.len() - escalated.len() - 1);
    assert!(events.iter().any(|e| e.cascade.as_deref() == Some("unchecked")));
    // The cascade asked the unsure model for log-probabilities; the client had not.
    let asked = mock
        .state
        .recent()
        .iter()
        .filter(|r| r["model"] == "cheap;logprob=-3")
        .all(|r| r["logprobs"] == true);
    assert!(asked);
}

#[tokio::test]
async fn the_decision_shows_the_cascade_and_the_stats_count_escalations() {
    let mock = MockUpstream::start().await;
    let cfg = format!(
        "[database]\nurl = \"{}\"\n{}",
        switchyard_tests::temp_sqlite_url(),
        config(&mock.base_url())
    );
    let mut cfg = switchyard_tests::parse_config(&cfg);
    cfg.auth.master_key = Some(switchyard::config::Secret::new(switchyard_tests::TEST_MASTER_KEY));
    let gw = TestGateway::start_with_ledger(cfg).await;
    let c = reqwest::Client::new();
    let v: Value = c
        .post(gw.url("/v1/route"))
        .json(&json!({"model": "c-empty", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tier"], "cheap", "{v}");
    assert_eq!(v["cascade"]["escalate_to"], "big", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("cascade"), "{v}");
    assert_eq!(mock.state.count_for("cheap;answer=empty"), 0, "deciding calls no model");

    for _ in 0..3 {
        assert_eq!(ask(&gw, "empty", json!({}), false).await.status, 200);
    }
    assert_eq!(ask(&gw, "fine", json!({}), true).await.status, 200);
    let admin = Admin::new(&gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let (_, v) = admin.call(reqwest::Method::GET, "/routes/stats", None).await;
        let n: i64 = v["data"]
            .as_array()
            .map_or(0, |d| d.iter().map(|r| r["requests"].as_i64().unwrap_or(0)).sum());
        if n == 4 || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let route = |name: &str| {
        stats["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let empty = route("c-empty");
    assert_eq!(empty["cascade"]["escalated"], 3, "{stats}");
    assert_eq!(empty["cascade"]["by_reason"]["empty"], 3, "{stats}");
    assert!(
        empty["cascade"]["escalation_cost_nanos"].as_i64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(empty["by_model"]["big"], 3, "{stats}");
    assert_eq!(route("c-fine")["cascade"]["accepted"], 1, "{stats}");

    // The export carries the escalation.
    let r = c
        .get(gw.url("/admin/v1/usage/export?format=csv"))
        .bearer_auth(switchyard_tests::TEST_MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap_or("")
            .contains("cascade,escalation_reason,escalated_from,escalated_deployment,escalation_prompt_tokens,escalation_completion_tokens,escalation_cost_nanos"),
        "{csv}"
    );
    assert_eq!(csv.matches(",escalated,empty,empty,").count(), 3, "{csv}");
    gw.stop().await.unwrap();
}

#[test]
fn bad_cascade_settings_are_refused() {
    let bad = config("http://127.0.0.1:9")
        .replace("{ min_logprob = -1.0 }", "{ min_logprob = 2 }")
        .replace("{ checks = [\"empty\"] }", "{ checks = [\"vibes\"] }")
        .replace("{ max_buffer_kb = 1 }", "{ max_buffer_kb = 0 }");
    let err = switchyard::config::Config::from_toml(&bad, &|_| None, std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(err.contains("routes.c-unsure.cascade.min_logprob"), "{err}");
    assert!(err.contains("routes.c-lax"), "{err}");
    assert!(err.contains("routes.c-long.cascade.max_buffer_kb"), "{err}");
}

#[tokio::test]
async fn a_client_gone_while_the_cheap_stream_is_held_back_is_billed_for_it() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock.base_url())).await;
    // The cheap answer takes about a second; the client gives up while it is being held back.
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .timeout(std::time::Duration::from_millis(400))
        .json(&json!({"model": "c-slow", "stream": true,
            "messages": [{"role": "user", "content": "Tell me a long story"}]}))
        .send()
        .await;
    assert!(r.is_err(), "the answer is held back until it is complete");
    let ev = gw.wait_for_events(1, std::time::Duration::from_secs(5)).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(
        e.outcome,
        switchyard::records::usage::Outcome::ClientDisconnect,
        "{e:?}"
    );
    assert!(e.deployment.is_some(), "the cheap deployment was called: {e:?}");
    assert_eq!(
        e.usage_source,
        switchyard::records::usage::UsageSource::Estimated,
        "{e:?}"
    );
    assert!(e.prompt_tokens > 0 && e.completion_tokens > 0, "{e:?}");
    assert!(e.cost_nanos > 0, "{e:?}");
    assert!(e.escalation_reason.is_none() && e.escalated_from.is_none(), "{e:?}");
    // The cheap stream was dropped, not read to its end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while mock.state.streams_cancelled.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream stream was not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
