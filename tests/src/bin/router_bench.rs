//! How long one routing decision takes: features, the model, the policy, for a conversation of
//! about 2,000 tokens, on one thread. Prints p50 / p99 / max over many decisions.

use std::time::Instant;

use serde_json::{json, Value};
use switchyard::money::tokens::{Encoding, PromptText};
use switchyard::router::features::Conversation;
use switchyard::router::policy::{builtin_model, Prefer, Route, Router};

fn main() {
    // A support conversation: a system prompt, six turns, a pasted log in the last message.
    let log_line = "2026-11-20T10:15:02Z ERROR payment-service: timeout calling ledger at 10.0.3.7:5432 after 3000 ms (attempt 2 of 3)\n";
    let mut messages = vec![
        json!({"role": "system", "content": "You are a careful support engineer for an online shop. Answer precisely, cite the log lines you rely on, and propose a next step."}),
    ];
    for i in 0..3 {
        messages.push(json!({"role": "user", "content": format!("Customer {i} says their payment failed twice yesterday evening and the card was charged once. What happened, and should we refund?")}));
        messages.push(json!({"role": "assistant", "content": "Let me look at the payment logs around that time. Could you paste the relevant lines from the payment service?"}));
    }
    messages.push(json!({"role": "user", "content": format!("Here are the logs:\n{}\nWhich step failed, was the customer charged, and what exactly should I tell them?", log_line.repeat(38))}));
    let body: Value = json!({"model": "auto", "messages": messages});
    let Value::Object(map) = body else { unreachable!() };
    let text: String = map["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let tokens = PromptText::new(text, 8, 0).count(Encoding::Cl100k);

    let route = Route::new("auto", "small", "large");
    let router = Router::new(builtin_model().clone(), [route.clone()]);
    let n = 20_000;
    let mut samples = Vec::with_capacity(n);
    let mut strong = 0usize;
    for i in 0..n + 1000 {
        let t = Instant::now();
        let conversation = Conversation::of_body(&map);
        let d = router.decide(&route, &conversation, Prefer::Balanced, Some(0.9), &|_: &str| true);
        let elapsed = t.elapsed();
        if i >= 1000 {
            samples.push(elapsed);
            strong += usize::from(d.model == "large");
        }
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "routing decision for a {tokens}-token, 8-message conversation, {n} decisions on one thread: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({strong} to the strong tier)",
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1].as_secs_f64() * 1e6
    );
}
