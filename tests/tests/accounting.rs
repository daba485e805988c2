//! Accounting end to end: absurd upstream usage is replaced by an estimate and flagged while the
//! ledger and budgets stay intact; an event the database refuses is quarantined and the ledger
//! moves on; the exports carry every column of the event. On SQLite and, when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set, Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::clock::Clock;
use switchyard::money::ledger::{consume, LedgerWriter};
use switchyard::money::meter::{ChannelSink, Metered, UsageSink};
use switchyard::records::limits::Period;
use switchyard::records::usage::{Outcome, UsageEvent, UsageSource};
use switchyard::store::{Store, UsageFilter};
use switchyard_tests::{parse_config, test_databases, Admin, MockUpstream, TestGateway};

mod common;

/// Reports the mock can be told to send, and the flag each must leave on its event.
const SPOILED: &[(&str, Option<&str>)] = &[
    ("huge", Some("prompt_over_window")),
    ("negative", Some("malformed")),
    ("nulls", None),
    ("text", Some("malformed")),
    ("overcap", Some("completion_over_cap")),
];

fn config(db_url: &str, mock_base: &str) -> String {
    let mut models = String::new();
    for (kind, _) in SPOILED.iter().copied().chain([("fine", None)]) {
        let upstream = if kind == "fine" {
            "mock".to_string()
        } else {
            format!("mock;bad_usage={kind}")
        };
        models.push_str(&format!(
            r#"
[models.{kind}]
[[models.{kind}.deployments]]
provider = "oa"
model = "{upstream}"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
context_window = 100000
max_output_tokens = 100
"#
        ));
    }
    format!(
        r#"
[auth]
required = true
master_key_env = "TEST_MASTER_KEY"
[database]
url = "{db_url}"
[ledger]
budget_flush_ms = 50
flush_interval_ms = 20
[providers.oa]
kind = "openai"
base_url = "{mock_base}"
api_key_env = "MOCK_KEY"
{models}"#
    )
}

async fn wait_for_events(store: &Store, n: i64) -> Vec<UsageEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.usage_page(&UsageFilter::default(), None, 1000).await.unwrap();
        if rows.len() as i64 >= n || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn absurd_upstream_usage_is_estimated_and_flagged_and_the_ledger_keeps_flowing() {
    let mock = MockUpstream::start().await;
    for (backend, url) in test_databases().await {
        let gw = TestGateway::start_with_ledger(parse_config(&config(&url, &mock.base_url()))).await;
        let admin = Admin::new(&gw);
        let (key_id, key) = admin
            .key(json!({"name": "k", "limits": {"budget": {"limit_usd": "5", "period": "daily"}}}))
            .await;
        let c = reqwest::Client::new();
        let body = |model: &str, stream: bool| {
            json!({"model": model, "stream": stream, "max_tokens": 50,
                   "messages": [{"role": "user", "content": "How many tokens is this?"}]})
        };
        for (kind, flag) in SPOILED {
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body(kind, false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{backend} {kind}");
            let h = r.headers().clone();
            assert_eq!(
                common::header(&h, "x-switchyard-usage-source"),
                "estimated",
                "{backend} {kind}"
            );
            assert_eq!(
                common::header(&h, "x-switchyard-usage-flag"),
                flag.unwrap_or(""),
                "{backend} {kind}"
            );
            let tokens_in: u64 = common::header(&h, "x-switchyard-tokens-in").parse().unwrap();
            assert!((10..1000).contains(&tokens_in), "{backend} {kind}: {tokens_in}");
            // The stream's content arrives whole, and its last chunk carries the estimate.
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body(kind, true))
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{backend} {kind}: {text}");
            assert!(
                text.contains(r#""usage_source":"estimated""#),
                "{backend} {kind}: {text}"
            );
        }
        // Later events keep flowing.
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body("fine", false))
            .send()
            .await
            .unwrap();
        assert_eq!(common::header(r.headers(), "x-switchyard-usage-source"), "reported");
        let store = Store::connect(&url, 2).await.unwrap();
        let expected = SPOILED.len() as i64 * 2 + 1;
        let events = wait_for_events(&store, expected).await;
        assert_eq!(
            events.len() as i64,
            expected,
            "{backend}: every request is in the ledger"
        );
        for e in &events {
            let kind = e.model.as_str();
            assert_eq!(e.outcome, Outcome::Success, "{backend} {e:?}");
            assert!(e.prompt_tokens < 1000 && e.completion_tokens <= 50, "{backend} {e:?}");
            assert!(e.cost_nanos >= 0 && e.cost_nanos < 1_000_000, "{backend} {e:?}");
            match SPOILED.iter().find(|(k, _)| *k == kind) {
                Some((_, flag)) => {
                    assert_eq!(e.usage_source, UsageSource::Estimated, "{backend} {e:?}");
                    assert_eq!(e.usage_flag.as_deref(), *flag, "{backend} {e:?}");
                }
                None => assert_eq!((e.usage_source, e.usage_flag.as_deref()), (UsageSource::Reported, None)),
            }
        }
        // The budget holds exactly what the ledger says was spent.
        let ledger_total: i64 = events.iter().map(|e| e.cost_nanos).sum();
        let day = Period::Daily.start_of(switchyard::clock::SystemClock.now_ms());
        let scope = format!("key:{key_id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut spent = store.spent(&scope, day).await.unwrap();
        while spent != ledger_total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            spent = store.spent(&scope, day).await.unwrap();
        }
        assert_eq!(spent, ledger_total, "{backend}: budget spend equals the ledger");
        let (_, usage) = admin.call(reqwest::Method::GET, "/usage", None).await;
        assert_eq!(
            usage["totals"]["cost_nanos"].as_i64(),
            Some(ledger_total),
            "{backend}: {usage}"
        );
        gw.stop().await.unwrap();
    }
}

fn event(i: usize, cost_nanos: i64) -> UsageEvent {
    let mut e = UsageEvent::new(
        format!("evt_poison_{i}_{}", std::process::id()),
        format!("req_{i}"),
        1_790_000_000_000 + i as i64,
        "chat",
        "m".into(),
    );
    e.status = 200;
    e.prompt_tokens = 10;
    e.completion_tokens = 5;
    e.usage_source = UsageSource::Reported;
    e.cost_nanos = cost_nanos;
    e.key_id = Some("key_x".into());
    e
}

#[tokio::test]
async fn a_poison_event_is_quarantined_and_never_stalls_the_writer() {
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 2).await.unwrap();
        let (sink, rx) = ChannelSink::new(1024);
        let writer = LedgerWriter {
            store: store.clone(),
            batch_size: 16,
            flush_interval: Duration::from_millis(10),
            billing: true,
        };
        let consumer = tokio::spawn(consume(rx, Some(writer)));
        // A batch of 40 with one event the database refuses (a negative cost: out of range),
        // then more events after it.
        for i in 0..40 {
            let cost = if i == 17 { -1 } else { 100 };
            sink.record(Metered {
                event: event(i, cost),
                estimate: None,
                settlement: None,
                baseline: None,
                bodies: None,
            });
        }
        let late = Arc::clone(&sink);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 40..50 {
            late.record(Metered {
                event: event(i, 100),
                estimate: None,
                settlement: None,
                baseline: None,
                bodies: None,
            });
        }
        drop(late);
        drop(sink);
        tokio::time::timeout(Duration::from_secs(20), consumer)
            .await
            .expect("the writer finishes")
            .unwrap();
        let totals = store.usage_totals(&UsageFilter::default()).await.unwrap();
        assert_eq!(totals.requests, 49, "{backend}: every other event is written");
        assert_eq!(totals.cost_nanos, 49 * 100, "{backend}");
        let q = store.quarantined().await.unwrap();
        assert_eq!(q.len(), 1, "{backend}: {q:?}");
        assert!(q[0].0.starts_with("evt_poison_17_"), "{backend}: {q:?}");
        // The rollups agree with the events written.
        let by_hour = store
            .usage_grouped(&UsageFilter::default(), switchyard::store::GroupBy::Hour)
            .await
            .unwrap();
        let rolled: i64 = by_hour.iter().map(|(_, t)| t.cost_nanos).sum();
        assert_eq!(rolled, 49 * 100, "{backend}");
        let billing = store.billing_status().await.unwrap();
        assert_eq!(billing.pending, 49, "{backend}: one outbox row per written event");
    }
}

#[tokio::test]
async fn the_exports_carry_every_column_of_the_event() {
    let mock = MockUpstream::start().await;
    for (backend, url) in test_databases().await {
        let gw = TestGateway::start_with_ledger(parse_config(&config(&url, &mock.base_url()))).await;
        let admin = Admin::new(&gw);
        let (_, key) = admin.key(json!({"name": "k", "tags": ["a", "b"]})).await;
        let c = reqwest::Client::new();
        for model in ["fine", "huge"] {
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .header("x-request-id", "id,with \"quotes\"")
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let store = Store::connect(&url, 2).await.unwrap();
        let stored = wait_for_events(&store, 2).await;
        assert_eq!(stored.len(), 2);

        let csv = common::admin_text(&gw, "/admin/v1/usage/export?format=csv").await;
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let mut want: Vec<&str> = vec!["timestamp", "cost_usd"];
        want.extend(UsageEvent::COLUMNS);
        assert_eq!(header, want, "{backend}: the CSV has every column, in order");
        let records: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        for (rec, e) in records.iter().zip(&stored) {
            for (col, cell) in UsageEvent::COLUMNS.iter().zip(e.cells()) {
                let i = header.iter().position(|h| h == col).unwrap();
                assert_eq!(&rec[i], cell.text().as_ref(), "{backend}: column {col}");
            }
        }

        let (_, json_export) = admin
            .call(reqwest::Method::GET, "/usage/export?format=json", None)
            .await;
        let rows = json_export["data"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for (row, e) in rows.iter().zip(&stored) {
            let expected = serde_json::to_value(e).unwrap();
            for col in UsageEvent::COLUMNS {
                assert_eq!(row[col], expected[col], "{backend}: JSON column {col}");
            }
            assert!(row["timestamp"].is_string() && row["cost_usd"].is_string());
        }
        // The flagged event says so in both forms.
        assert!(rows.iter().any(|r| r["usage_flag"] == "prompt_over_window"));
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_retried_batch_is_written_once_and_counted_once() {
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 2).await.unwrap();
        let first: Vec<UsageEvent> = (0..10).map(|i| event(1000 + i, 100)).collect();
        store.write_usage(&first, true).await.unwrap();
        // The same batch again (its commit's answer was lost), and one that overlaps it.
        store.write_usage(&first, true).await.unwrap();
        let overlap: Vec<UsageEvent> = (5..15).map(|i| event(1000 + i, 100)).collect();
        store.write_usage(&overlap, true).await.unwrap();
        let totals = store.usage_totals(&UsageFilter::default()).await.unwrap();
        assert_eq!((totals.requests, totals.cost_nanos), (15, 1500), "{backend}");
        let by_hour = store
            .usage_grouped(&UsageFilter::default(), switchyard::store::GroupBy::Hour)
            .await
            .unwrap();
        let rolled: (i64, i64) = by_hour
            .iter()
            .fold((0, 0), |a, (_, t)| (a.0 + t.requests, a.1 + t.cost_nanos));
        assert_eq!(rolled, (15, 1500), "{backend}: the rollups count each event once");
        assert_eq!(store.billing_status().await.unwrap().pending, 15, "{backend}");
    }
}
