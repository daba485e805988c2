//! The cache's promises, tested on the cache alone: keys, scopes, expiry, bounds, directives,
//! the tool-call rule, purges and statistics.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::clock::ManualClock;
use crate::config::CacheRule;
use crate::money::pricing::Nanos;
use crate::proxy::lookup::Directives;
use crate::proxy::request::ChatRequest;
use crate::records::keys::{KeyRecord, KeyStatus, Principal, TeamRecord};
use crate::records::limits::Limits;

fn config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        ..CacheConfig::default()
    }
}

fn request(body: Value) -> ChatRequest {
    let Value::Object(m) = body else { panic!("an object") };
    ChatRequest::from_body(m).unwrap()
}

fn ask(text: &str) -> ChatRequest {
    request(json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
}

fn principal(key: &str, team: Option<&str>) -> Principal {
    let k = KeyRecord {
        id: key.into(),
        name: key.into(),
        prefix: "sk-sy-test".into(),
        team_id: team.map(str::to_string),
        cost_center: None,
        tags: Vec::new(),
        allowed_models: None,
        route_prefer: None,
        expires_ms: None,
        status: KeyStatus::Active,
        limits: Limits::default(),
        store_bodies: false,
        created_ms: 0,
        updated_ms: 0,
        rotated_ms: None,
    };
    let t = team.map(|id| TeamRecord {
        id: id.into(),
        name: id.into(),
        cost_center: None,
        limits: Limits::default(),
        store_bodies: false,
        created_ms: 0,
        updated_ms: 0,
    });
    Principal::new(k, t)
}

fn answer(text: &str, cost: i64) -> Answer {
    let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
    Answer {
        body: Bytes::from(body.to_string()),
        model: "m".into(),
        usage: Default::default(),
        cost: Nanos(cost),
        tool_calls: false,
    }
}

/// Runs a lookup to its end (embedding runs on the runtime's blocking threads).
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn find(c: &Cache, r: &ChatRequest, p: Option<&Principal>, d: Directives) -> Found {
    block(c.look(Query {
        target: "m",
        model: "m",
        request: r,
        principal: p,
        directives: d,
    }))
}

/// Looks `r` up and keeps `a` on a miss; returns whether it was a hit.
fn round(c: &Cache, r: &ChatRequest, p: Option<&Principal>, a: Answer) -> Option<Hit> {
    match find(c, r, p, Directives::default()) {
        Found::Hit(h) => Some(h),
        Found::Miss { keep, .. } | Found::Bypass { keep, .. } => {
            if let Some(k) = keep {
                k.keep(a);
            }
            None
        }
    }
}

#[test]
fn a_kept_answer_answers_the_same_request_and_only_it() {
    let c = Cache::new(&config(), Arc::new(ManualClock::new(1_000)), None);
    assert!(round(&c, &ask("hello"), None, answer("hi there", 7)).is_none());
    let hit = round(&c, &ask("hello"), None, answer("unused", 0)).expect("a hit");
    assert_eq!(hit.kind, HitKind::Exact);
    assert!(String::from_utf8_lossy(&hit.answer.body).contains("hi there"));
    assert_eq!(hit.answer.cost, Nanos(7));
    assert!(
        round(&c, &ask("hello!"), None, answer("x", 0)).is_none(),
        "another request misses"
    );
    let stats = c.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].hits, stats[0].misses, stats[0].stored, stats[0].entries),
        (1, 2, 2, 2)
    );
    assert_eq!(stats[0].saved_usd, Nanos(7).to_string());
}

#[test]
fn tenants_never_see_each_others_entries() {
    let c = Cache::new(&config(), Arc::new(ManualClock::new(1_000)), None);
    let (a, b) = (principal("key_a", Some("team_1")), principal("key_b", Some("team_1")));
    round(&c, &ask("q"), Some(&a), answer("for a", 1));
    assert!(
        round(&c, &ask("q"), Some(&b), answer("for b", 1)).is_none(),
        "another key"
    );
    assert!(round(&c, &ask("q"), None, answer("anon", 1)).is_none(), "anonymous");
    assert!(round(&c, &ask("q"), Some(&a), answer("x", 1)).is_some());
    // Scoped by team, keys of one team share; another team does not.
    let mut cfg = config();
    cfg.scope = ScopeBy::Team;
    let t = Cache::new(&cfg, Arc::new(ManualClock::new(1_000)), None);
    round(&t, &ask("q"), Some(&a), answer("team answer", 1));
    let hit = round(&t, &ask("q"), Some(&b), answer("x", 1)).expect("same team");
    assert!(String::from_utf8_lossy(&hit.answer.body).contains("team answer"));
    let other = principal("key_c", Some("team_2"));
    assert!(round(&t, &ask("q"), Some(&other), answer("x", 1)).is_none());
}

#[test]
fn entries_expire_by_their_rule() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut cfg = config();
    cfg.ttl_secs = 60;
    cfg.models.insert(
        "short".into(),
        CacheRule {
            ttl_secs: Some(5),
            ..CacheRule::default()
        },
    );
    let c = Cache::new(&cfg, clock.clone(), None);
    round(&c, &ask("q"), None, answer("a", 1));
    clock.advance(59_000);
    let hit = round(&c, &ask("q"), None, answer("x", 1)).expect("alive at 59 s");
    assert_eq!(hit.age_secs, 59);
    clock.advance(1_000);
    assert!(round(&c, &ask("q"), None, answer("b", 1)).is_none(), "expired at 60 s");
    assert!(round(&c, &ask("q"), None, answer("x", 1)).is_some(), "kept again");
    // A model's own TTL.
    let r = ask("q");
    let q = |d| Query {
        target: "short",
        model: "m",
        request: &r,
        principal: None,
        directives: d,
    };
    if let Found::Miss { keep: Some(k), .. } = block(c.look(q(Directives::default()))) {
        k.keep(answer("short", 1));
    } else {
        panic!("a miss that keeps");
    }
    clock.advance(4_000);
    assert!(matches!(block(c.look(q(Directives::default()))), Found::Hit(_)));
    clock.advance(1_000);
    assert!(matches!(block(c.look(q(Directives::default()))), Found::Miss { .. }));
}

#[test]
fn the_bytes_are_bounded_and_big_answers_are_not_kept() {
    let mut cfg = config();
    cfg.max_bytes = 64 * 1024;
    cfg.max_entry_bytes = 8 * 1024;
    let c = Cache::new(&cfg, Arc::new(ManualClock::new(1)), None);
    for i in 0..200 {
        round(&c, &ask(&format!("q{i}")), None, answer(&"x".repeat(1000), 1));
    }
    let (entries, bytes) = c.size();
    assert!(bytes <= 64 * 1024, "{bytes} bytes held");
    assert!(entries < 200 && entries > 10, "{entries} entries");
    // The newest are kept, the oldest went.
    assert!(round(&c, &ask("q199"), None, answer("x", 1)).is_some());
    assert!(round(&c, &ask("q0"), None, answer("x", 1)).is_none());
    round(&c, &ask("big"), None, answer(&"y".repeat(9 * 1024), 1));
    assert!(
        round(&c, &ask("big"), None, answer("x", 1)).is_none(),
        "over max_entry_bytes"
    );
}

#[test]
fn no_cache_refreshes_and_no_store_keeps_nothing() {
    let c = Cache::new(&config(), Arc::new(ManualClock::new(1)), None);
    round(&c, &ask("q"), None, answer("old", 1));
    let no_cache = Directives {
        no_cache: true,
        no_store: false,
    };
    match find(&c, &ask("q"), None, no_cache) {
        Found::Bypass { keep: Some(k), why } => {
            assert_eq!(why, "no-cache");
            k.keep(answer("fresh", 1));
        }
        _ => panic!("no-cache is not answered from the cache, and keeps the fresh answer"),
    }
    let hit = round(&c, &ask("q"), None, answer("x", 1)).unwrap();
    assert!(String::from_utf8_lossy(&hit.answer.body).contains("fresh"));
    let no_store = Directives {
        no_cache: false,
        no_store: true,
    };
    assert!(
        matches!(find(&c, &ask("q"), None, no_store), Found::Hit(_)),
        "no-store may be answered"
    );
    assert!(matches!(
        find(&c, &ask("new"), None, no_store),
        Found::Miss { keep: None, .. }
    ));
    assert!(round(&c, &ask("new"), None, answer("x", 1)).is_none());
    // Off: not looked up, nothing kept.
    let off = Cache::new(&CacheConfig::default(), Arc::new(ManualClock::new(1)), None);
    assert!(matches!(
        find(&off, &ask("q"), None, Directives::default()),
        Found::Bypass { keep: None, ref why } if why == OFF
    ));
}

#[test]
fn answers_that_call_tools_are_kept_only_where_allowed() {
    let tool_answer = || {
        let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "delete_file", "arguments": "{}"}}]},
                "finish_reason": "tool_calls"}]});
        Answer {
            body: Bytes::from(body.to_string()),
            ..answer("", 1)
        }
    };
    let c = Cache::new(&config(), Arc::new(ManualClock::new(1)), None);
    round(&c, &ask("q"), None, tool_answer());
    assert!(
        round(&c, &ask("q"), None, tool_answer()).is_none(),
        "not reused by default"
    );
    let mut cfg = config();
    cfg.models.insert(
        "m".into(),
        CacheRule {
            allow_tool_calls: Some(true),
            ..CacheRule::default()
        },
    );
    let allowed = Cache::new(&cfg, Arc::new(ManualClock::new(1)), None);
    round(&allowed, &ask("q"), None, tool_answer());
    let hit = round(&allowed, &ask("q"), None, tool_answer()).expect("the route opted in");
    assert!(hit.answer.tool_calls);
    assert!(!calls_tools(
        br#"{"choices":[{"message":{"content":"say \"tool_calls\"","tool_calls":[]}}]}"#
    ));
}

#[test]
fn purges_select_by_scope_target_model_and_age() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let c = Cache::new(&config(), clock.clone(), None);
    let a = principal("key_a", None);
    round(&c, &ask("1"), Some(&a), answer("x", 1));
    round(&c, &ask("2"), None, answer("x", 1));
    clock.advance(120_000);
    round(&c, &ask("3"), None, answer("x", 1));
    assert_eq!(
        c.purge(&Purge {
            older_than_secs: Some(60),
            scope: Some("anonymous".into()),
            ..Purge::default()
        }),
        1
    );
    assert_eq!(
        c.purge(&Purge {
            model: Some("other".into()),
            ..Purge::default()
        }),
        0
    );
    assert_eq!(
        c.purge(&Purge {
            scope: Some("key:key_a".into()),
            ..Purge::default()
        }),
        1
    );
    assert!(round(&c, &ask("3"), None, answer("x", 1)).is_some());
    assert_eq!(
        c.purge(&Purge {
            target: Some("m".into()),
            ..Purge::default()
        }),
        1
    );
    assert_eq!(c.size().0, 0);
}

#[test]
fn rules_resolve_target_then_model_then_defaults() {
    let mut cfg = config();
    cfg.models.insert(
        "auto".into(),
        CacheRule {
            enabled: Some(false),
            ..CacheRule::default()
        },
    );
    cfg.models.insert(
        "big".into(),
        CacheRule {
            ttl_secs: Some(9),
            semantic: Some(true),
            ..CacheRule::default()
        },
    );
    let r = Rules::new(&cfg);
    assert!(!r.rule("auto", "big").enabled, "the route's rule first");
    assert_eq!(r.rule("other", "big").ttl, Duration::from_secs(9));
    assert!(r.rule("other", "big").semantic);
    assert_eq!(r.rule("x", "y").ttl, Duration::from_secs(3600));
}

fn semantic_config() -> CacheConfig {
    let mut c = config();
    c.semantic.enabled = true;
    c
}

fn lexical() -> Option<Arc<dyn Embedder>> {
    Some(Arc::new(embed::lexical::Lexical))
}

fn messages(turns: &[(&str, &str)]) -> ChatRequest {
    let m: Vec<Value> = turns.iter().map(|(r, c)| json!({"role": r, "content": c})).collect();
    request(json!({"model": "m", "messages": m}))
}

#[test]
fn a_reworded_question_is_a_semantic_hit_that_says_why() {
    let c = Cache::new(&semantic_config(), Arc::new(ManualClock::new(1)), lexical());
    round(
        &c,
        &ask("How do I reset my password?"),
        None,
        answer("Click 'Forgot password'.", 3),
    );
    let hit = round(&c, &ask("how do I reset my password??"), None, answer("x", 0)).expect("a semantic hit");
    let HitKind::Semantic { similarity, verdict } = &hit.kind else {
        panic!("not semantic: {:?}", hit.kind)
    };
    assert!(*similarity >= 0.8 && *similarity <= 1.0, "{similarity}");
    assert!(verdict.contains("similarity") && verdict.contains("agree"), "{verdict}");
    assert!(String::from_utf8_lossy(&hit.answer.body).contains("Forgot password"));
    assert_eq!(c.stats()[0].semantic_hits, 1);
    assert_eq!(c.semantic_size().0, 1, "the reworded question was not kept again");
    assert_eq!(c.embedder(), Some("lexical"));
}

#[test]
fn traps_scopes_and_earlier_turns_are_never_served_semantically() {
    // A low threshold, so that the guard is what stands between a trap and its neighbour.
    let mut cfg = semantic_config();
    cfg.semantic.threshold = Some(0.3);
    let c = Cache::new(&cfg, Arc::new(ManualClock::new(1)), lexical());
    let a = principal("key_a", None);
    round(
        &c,
        &ask("What is the status of order 48213?"),
        Some(&a),
        answer("shipped", 1),
    );
    match find(
        &c,
        &ask("What is the status of order 48231?"),
        Some(&a),
        Directives::default(),
    ) {
        Found::Miss { why, .. } => assert!(why.contains("numbers differ"), "{why}"),
        _ => panic!("a changed order number must miss"),
    }
    let b = principal("key_b", None);
    assert!(
        round(&c, &ask("what is the status of order 48213"), Some(&b), answer("x", 1)).is_none(),
        "another tenant"
    );
    assert!(round(&c, &ask("what is the status of order 48213"), Some(&a), answer("x", 1)).is_some());
    // Only the last user turn may differ: another earlier turn is another group.
    let python = messages(&[
        ("user", "I use Python."),
        ("assistant", "OK."),
        ("user", "How do I read a file line by line?"),
    ]);
    let rust = messages(&[
        ("user", "I use Rust."),
        ("assistant", "OK."),
        ("user", "how do i read a file line by line"),
    ]);
    round(&c, &python, None, answer("with open()", 1));
    assert!(round(&c, &rust, None, answer("x", 1)).is_none());
    // An agent's turn (a tool result last) is answered by the exact tier only.
    let tool = request(json!({"model": "m", "messages": [
        {"role": "user", "content": "How do I read a file line by line?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]}));
    assert!(matches!(
        find(&c, &tool, None, Directives::default()),
        Found::Miss { .. }
    ));
}

#[test]
fn only_deterministic_single_choice_requests_go_to_the_semantic_tier() {
    let mut cfg = semantic_config();
    cfg.semantic.max_temperature = 0.5;
    let c = Cache::new(&cfg, Arc::new(ManualClock::new(1)), lexical());
    let at = |t: f64, text: &str| {
        request(json!({"model": "m", "temperature": t, "messages": [{"role": "user", "content": text}]}))
    };
    round(&c, &at(0.2, "Explain how DNS works."), None, answer("a", 1));
    assert!(round(&c, &at(0.2, "explain how DNS works"), None, answer("x", 1)).is_some());
    round(&c, &at(0.9, "Explain how TCP works."), None, answer("a", 1));
    assert!(
        round(&c, &at(0.9, "explain how TCP works"), None, answer("x", 1)).is_none(),
        "too hot"
    );
    // Unset is the model's default of 1, above this ceiling.
    round(&c, &ask("Explain how UDP works."), None, answer("a", 1));
    assert!(round(&c, &ask("explain how UDP works"), None, answer("x", 1)).is_none());
    let n2 = |text: &str| {
        request(json!({"model": "m", "n": 2, "temperature": 0, "messages": [{"role": "user", "content": text}]}))
    };
    round(&c, &n2("Explain how HTTP works."), None, answer("a", 1));
    assert!(
        round(&c, &n2("explain how HTTP works"), None, answer("x", 1)).is_none(),
        "several choices"
    );
}

#[test]
fn a_purged_answer_is_not_found_through_its_question() {
    let c = Cache::new(&semantic_config(), Arc::new(ManualClock::new(1)), lexical());
    round(&c, &ask("How do I reset my password?"), None, answer("a", 1));
    assert_eq!(c.purge(&Purge::default()), 1);
    assert!(round(&c, &ask("how do I reset my password"), None, answer("x", 1)).is_none());
}
