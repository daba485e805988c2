//! The cache's semantic tier end to end: reworded questions answered through HTTP, traps
//! refused, the local model checked against its published similarities, the remote embedder,
//! and the evaluation set's figures on its held-out half.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard::cache::embed::{self, cosine, Embedder};
use switchyard::cache::eval;
use switchyard::config::{CacheConfig, EmbedderKind};
use switchyard_tests::{model_dir, parse_config, standard_config, MockUpstream, TestGateway};

mod common;
use common::{chat, header, stream, user};

fn pairs() -> Vec<eval::Pair> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cache_eval/pairs.jsonl");
    eval::read_pairs(&path).unwrap()
}

#[tokio::test]
async fn a_reworded_question_is_answered_and_a_trap_is_not() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    let ask = |text: &str| json!({"model": "cached-semantic", "messages": user(text)});
    let (_, h, first) = chat(&gw, ask("How do I reset my password on the portal?")).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    let calls = mock.state.count_for("mock");
    let (_, h, second) = chat(&gw, ask("how do I reset my password on the portal??")).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "semantic-hit");
    assert_eq!(mock.state.count_for("mock"), calls);
    assert_eq!(second, first);
    let similarity: f32 = header(&h, "x-switchyard-cache-similarity").parse().unwrap();
    assert!(similarity >= 0.8, "{similarity}");
    assert!(header(&h, "x-switchyard-cache-detail").contains("agree"), "{h:?}");
    // Streamed, the same.
    let mut body = ask("How do I reset my password on the portal, please?");
    body["stream"] = json!(true);
    let (_, h, chunks, done) = stream(&gw, body).await;
    assert!(done && chunks.len() > 3);
    assert_eq!(header(&h, "x-switchyard-cache"), "semantic-hit");
    // A changed number is another question.
    chat(&gw, ask("What is the status of order 48213?")).await;
    let (_, h, _) = chat(&gw, ask("What is the status of order 48231?")).await;
    assert_ne!(header(&h, "x-switchyard-cache"), "semantic-hit");
    let events = gw.wait_for_events(6, Duration::from_secs(5)).await;
    let semantic: Vec<_> = events
        .iter()
        .filter(|e| e.cache.as_deref() == Some("semantic_hit"))
        .collect();
    assert_eq!(semantic.len(), 2);
    assert!(semantic
        .iter()
        .all(|e| e.cost_nanos == 0 && e.cache_saved_nanos == events[0].cost_nanos));
    gw.stop().await.unwrap();
}

#[test]
fn the_local_model_gives_its_published_similarities() {
    let Some(dir) = model_dir("local model similarities") else {
        return;
    };
    let m = embed::local::Local::load(&dir).unwrap();
    let v = |t: &str| m.embed(t).unwrap();
    // sentence-transformers' published example for all-MiniLM-L6-v2 (sbert.net quickstart).
    let weather = v("The weather is lovely today.");
    for (other, want) in [("It's so sunny outside!", 0.6660), ("He drove to the stadium.", 0.1046)] {
        let got = cosine(&weather, &v(other));
        assert!((got - want).abs() < 1e-3, "{other}: {got} vs {want}");
    }
    let got = cosine(&v("It's so sunny outside!"), &v("He drove to the stadium."));
    assert!((got - 0.1411).abs() < 1e-3, "{got}");
    assert_eq!(weather.len(), 384);
    // Padding is off: a short text is not padded to 128 tokens (which would change its mean).
    let norm: f32 = weather.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
    // Long inputs are truncated, not refused.
    assert_eq!(v(&"word ".repeat(2000)).len(), 384);
}

#[tokio::test]
async fn the_local_model_answers_paraphrases_through_the_gateway() {
    let Some(dir) = model_dir("local model through the gateway") else {
        return;
    };
    let mock = MockUpstream::start().await;
    let text = standard_config(&mock.base_url()).replace(
        "embedder = \"lexical\"",
        &format!("embedder = \"local\"\nmodel_dir = {:?}", dir.display().to_string()),
    );
    let gw = TestGateway::start(&text).await;
    let ask = |t: &str| json!({"model": "cached-semantic", "messages": user(t), "temperature": 0});
    chat(&gw, ask("What is the capital of France?")).await;
    let (_, h, _) = chat(&gw, ask("Which city is France's capital?")).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "semantic-hit", "{h:?}");
    chat(&gw, ask("Is ibuprofen safe during pregnancy?")).await;
    let (_, h, _) = chat(&gw, ask("Is ibuprofen unsafe during pregnancy?")).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    assert!(header(&h, "x-switchyard-cache-detail").contains("refused"), "{h:?}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_remote_embedding_deployment_can_embed_for_the_cache() {
    let mock = MockUpstream::start().await;
    let mut cfg = parse_config(&standard_config(&mock.base_url()));
    cfg.cache.semantic.embedder = EmbedderKind::Remote;
    cfg.cache.semantic.model = Some("embed".into());
    let gateway = switchyard::proxy::gateway::Gateway::new(&cfg);
    let e = embed::from_config(&cfg.cache.semantic, &gateway).unwrap();
    assert_eq!(e.name(), "remote:embed");
    let v = embed::embed_off_executor(&e, "hello there").await.unwrap();
    let norm: f32 = v.iter().map(|x| x * x).sum();
    assert!(!v.is_empty() && (norm - 1.0).abs() < 1e-4);
    assert_eq!(v, embed::embed_off_executor(&e, "hello there").await.unwrap());
    assert!(
        mock.state.count_for("mock-embed") >= 2,
        "the mock's embedding model was called"
    );
    // Through the gateway: every semantic lookup embeds the question remotely.
    let text =
        standard_config(&mock.base_url()).replace("embedder = \"lexical\"", "embedder = \"remote\"\nmodel = \"embed\"");
    let gw = TestGateway::start(&text).await;
    let before = mock.state.count_for("mock-embed");
    chat(
        &gw,
        json!({"model": "cached-semantic", "messages": user("embed me remotely")}),
    )
    .await;
    assert_eq!(mock.state.count_for("mock-embed"), before + 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_evaluation_counts_every_pair_and_never_serves_another_scope() {
    let pairs = pairs();
    assert!(pairs.len() >= 560, "{}", pairs.len());
    let e: Arc<dyn Embedder> = Arc::new(embed::lexical::Lexical);
    let r = eval::run(&pairs, "all", &CacheConfig::default(), e).await.unwrap();
    let counted: usize = r.rows.values().map(|(n, _)| n).sum();
    assert_eq!(counted, pairs.len());
    assert_eq!(r.category("scope").1, 0, "another tenant is never served");
    assert_eq!(r.category("multi_turn_trap").1, 0, "earlier turns must match");
    assert!(r.kind("paraphrase").1 > 0, "light rewordings are served even lexically");
}

#[tokio::test]
async fn on_the_held_out_half_the_local_model_meets_its_targets() {
    let Some(dir) = model_dir("held-out evaluation") else {
        return;
    };
    let mut config = CacheConfig::default();
    config.semantic.model_dir = Some(dir.clone());
    let e: Arc<dyn Embedder> = Arc::new(embed::local::Local::load(&dir).unwrap());
    let r = eval::run(&pairs(), "heldout", &config, e).await.unwrap();
    println!("{r}");
    let (traps, served) = r.kind("trap");
    assert!(served * 100 <= traps, "traps served: {served} of {traps}\n{r}");
    assert_eq!(r.category("multi_turn_trap").1, 0);
    let (should, hit) = r.kind("paraphrase");
    assert!(hit * 2 >= should, "should-hits served: {hit} of {should}\n{r}");
}
