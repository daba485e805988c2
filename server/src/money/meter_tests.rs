//! Tests of [`super`]: one event per meter whatever the path, and the sink's bounds.

use super::*;
use crate::money::pricing::PicoPerToken;

fn meter(sink: &Arc<MemorySink>) -> Meter {
    Meter::start(sink.clone(), Instant::now(), "r1", "chat", "m", true, 10)
}

fn reported(p: u64, c: u64) -> Reported {
    Reported::from(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        cached_tokens: 0,
    })
}

#[test]
fn exactly_one_event_per_meter_whatever_the_path() {
    let sink = Arc::new(MemorySink::default());
    let m = meter(&sink);
    m.finish(200, Outcome::Success, None);
    let m = meter(&sink);
    drop(m);
    let mut m = meter(&sink);
    m.account_later(Some(&reported(1, 1)), String::new());
    m.finish(502, Outcome::UpstreamError, Some("upstream_5xx"));
    let ev = sink.events();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0].outcome, Outcome::Success);
    assert_eq!(ev[1].outcome, Outcome::ClientDisconnect);
    assert_eq!(ev[1].status, 499);
    assert_eq!(ev[2].error_kind.as_deref(), Some("upstream_5xx"));
    assert_eq!(ev[2].usage_source, UsageSource::Reported);
}

fn priced(m: &mut Meter) {
    m.price = Price {
        input: PicoPerToken(1_000_000),
        output: PicoPerToken(2_000_000),
        cached_input: PicoPerToken(1_000_000),
    };
    m.set_prompt(Arc::new(PromptText::new("hello world".into(), 1, 0)));
}

#[test]
fn missing_usage_is_estimated_later_and_flagged() {
    let sink = Arc::new(MemorySink::default());
    let mut m = meter(&sink);
    priced(&mut m);
    m.account_later(None, "hello world".into());
    m.finish(200, Outcome::Success, None);
    let ev = &sink.events()[0];
    assert_eq!(ev.usage_source, UsageSource::Estimated);
    assert_eq!(ev.prompt_tokens, 2 + 3 + 3);
    assert_eq!(ev.completion_tokens, 2);
    assert_eq!(ev.cost_nanos, (8 * 1_000_000 + 2 * 2_000_000) / 1000);
    assert_eq!(ev.usage_flag, None, "a missing report is not a suspicious one");
}

#[test]
fn an_absurd_report_is_estimated_and_flagged() {
    let sink = Arc::new(MemorySink::default());
    let mut m = meter(&sink);
    priced(&mut m);
    m.bounds = Bounds {
        prompt: 100,
        completion: 10,
    };
    let absurd = Reported {
        prompt_tokens: Some(1 << 62),
        ..reported(0, 2)
    };
    m.account_later(Some(&absurd), "hello world".into());
    m.finish(200, Outcome::Success, None);
    let ev = &sink.events()[0];
    assert_eq!(ev.usage_source, UsageSource::Estimated);
    assert_eq!(ev.usage_flag.as_deref(), Some("prompt_over_window"));
    assert_eq!((ev.prompt_tokens, ev.completion_tokens), (8, 2));
}

#[test]
fn full_channel_counts_drops() {
    let (sink, _rx) = ChannelSink::new(1);
    let s: Arc<dyn UsageSink> = sink.clone();
    Meter::start(s.clone(), Instant::now(), "a", "chat", "m", false, 0).finish(200, Outcome::Success, None);
    Meter::start(s, Instant::now(), "b", "chat", "m", false, 0).finish(200, Outcome::Success, None);
    assert_eq!(sink.dropped(), 1);
}

#[test]
fn text_waiting_to_be_counted_is_bounded_by_bytes() {
    let (sink, mut rx) = ChannelSink::with_byte_bound(16, 1000);
    let s: Arc<dyn UsageSink> = sink.clone();
    let send = |text: &str| {
        let mut m = Meter::start(s.clone(), Instant::now(), "r", "chat", "m", true, 0);
        m.set_prompt(Arc::new(PromptText::new(text.to_string(), 1, 0)));
        m.account_later(None, String::new());
        m.finish(200, Outcome::Success, None);
    };
    send(&"a".repeat(600));
    assert_eq!(sink.pending_bytes(), 600);
    send(&"b".repeat(600));
    assert_eq!(sink.pending_bytes(), 600, "the second would pass the bound");
    let first = rx.rx.try_recv().unwrap();
    let second = rx.rx.try_recv().unwrap();
    assert!(first.estimate.is_some() && first.event.usage_flag.is_none());
    assert!(second.estimate.is_none(), "approximated at once");
    assert_eq!(second.event.usage_flag.as_deref(), Some("approximate"));
    assert_eq!(second.event.prompt_tokens, 150);
    rx.taken(&first);
    rx.taken(&second);
    assert_eq!(sink.pending_bytes(), 0);
}

#[test]
fn bodies_count_against_the_byte_bound_and_go_first() {
    use crate::capture::{BodyRules, Capture};
    let rules = Arc::new(BodyRules::new(&crate::config::RequestLogConfig::default()).unwrap());
    let (sink, mut rx) = ChannelSink::with_byte_bound(16, 1000);
    let s: Arc<dyn UsageSink> = sink.clone();
    let send = |body: &str, prompt: &str| {
        let mut m = Meter::start(s.clone(), Instant::now(), "r", "chat", "m", false, 0);
        m.capture_bodies(Capture::new(rules.clone(), bytes::Bytes::from(body.to_string())));
        m.add_response(b"answer");
        if !prompt.is_empty() {
            m.set_prompt(Arc::new(PromptText::new(prompt.to_string(), 1, 0)));
            m.account_later(None, String::new());
        }
        m.finish(200, Outcome::Success, None);
    };
    send(&"a".repeat(500), "");
    assert_eq!(sink.pending_bytes(), 506, "the request and the answer held");
    // Over the bound with its bodies, within it without: the event keeps its estimate.
    send(&"b".repeat(600), &"p".repeat(300));
    assert_eq!(sink.pending_bytes(), 806);
    let first = rx.rx.try_recv().unwrap();
    let second = rx.rx.try_recv().unwrap();
    assert!(first.bodies.is_some());
    assert!(
        second.bodies.is_none() && second.estimate.is_some(),
        "bodies dropped, not usage"
    );
    rx.taken(&first);
    rx.taken(&second);
    assert_eq!(sink.pending_bytes(), 0);
    let (ev, b) = first.finalize_with_bodies();
    let b = b.unwrap();
    assert_eq!((b.event_id, b.ts_ms), (ev.event_id, ev.ts_ms));
    assert_eq!((b.request.len(), b.response.as_str()), (500, "answer"));
}
