//! The overview: requests, spend, savings (against each route's strong model, and from the
//! cache), cache hit rate, latency and time to first token, errors by kind, tracked versus
//! estimated cost, spend and requests over time, and the top keys, teams and models by spend.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::usd;
use crate::api::{load_overview, PERIODS};
use crate::chart::{bars, Bar};
use crate::layout::Frame;
use crate::types::{Group, LabelCount, Overview as Data};

#[component]
pub fn Overview() -> impl IntoView {
    let q = use_query_map();
    let period = move || q.with(|q| q.get("period")).unwrap_or_else(|| "7d".into());
    let data = Resource::new(period, load_overview);
    // Live numbers: with JavaScript the figures reload every 30 s (effects run only in the browser).
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::prelude::set_interval(move || data.refetch(), std::time::Duration::from_secs(30));
    });
    view! {
        <Frame title="Overview" children=move |_me| {
            view! {
                <nav class="periods" aria-label="Period">
                    {PERIODS
                        .iter()
                        .map(|(id, label, _)| {
                            let current = move || (period() == *id).then_some("page");
                            view! { <a href=format!("/ui?period={id}") aria-current=current>{*label}</a> }
                        })
                        .collect_view()}
                </nav>
                <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match data.await {
                            Ok(d) => view! { <Numbers d=d /> }.into_any(),
                            Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        }
                    })}
                </Transition>
                <p class="muted refresh">"Figures refresh every 30 s while this page is open (with JavaScript)."</p>
            }
        } />
    }
}

#[component]
fn Numbers(d: Data) -> impl IntoView {
    let t = &d.summary.totals;
    let share = |part: i64, whole: i64| {
        if whole > 0 {
            format!("{:.1} %", part as f64 * 100.0 / whole as f64)
        } else {
            "–".into()
        }
    };
    let dollars = |nanos: i64| usd(&format!("{}", nanos as f64 / 1e9));
    let error_rate = share(t.errors, t.requests);
    let saved = t.baseline_nanos.saturating_sub(t.cost_nanos);
    let by_routing = saved.saturating_sub(t.cache_saved_nanos);
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_string(), |v| format!("{v} ms"));
    let lat = &d.summary.latency;
    let ttft = &d.summary.time_to_first_token;
    let tracked = t.cost_nanos.saturating_sub(t.estimated_cost_nanos);
    let spend: Vec<Bar> = d
        .series
        .iter()
        .map(|g| Bar {
            label: g.group.clone(),
            value: g.totals.cost_nanos as f64 / 1e9,
        })
        .collect();
    let requests: Vec<Bar> = d
        .series
        .iter()
        .map(|g| Bar {
            label: g.group.clone(),
            value: g.totals.requests as f64,
        })
        .collect();
    let axis = || {
        let first = d
            .series
            .first()
            .map(|g| g.group.get(..16).unwrap_or(&g.group).replace('T', " "))
            .unwrap_or_default();
        let last = d
            .series
            .last()
            .map(|g| g.group.get(..16).unwrap_or(&g.group).replace('T', " "))
            .unwrap_or_default();
        view! { <p class="axis"><span>{first} " UTC"</span><span>{last} " UTC"</span></p> }
    };
    let names = d.key_names.clone();
    let key_name = move |id: &str| {
        names
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, n)| format!("{n} ({id})"))
            .unwrap_or_else(|| id.to_string())
    };
    view! {
        <section class="cards" aria-label="Totals">
            <div class="card stat"><span class="label">"Requests"</span><span class="value" id="stat-requests">{t.requests}</span></div>
            <div class="card stat"><span class="label">"Spend"</span><span class="value" id="stat-spend">{usd(&t.cost_usd)}</span></div>
            <div class="card stat">
                <span class="label">"Saved"</span>
                <span class="value" id="stat-saved">{dollars(saved)}</span>
                <small>{share(saved, t.baseline_nanos)} " of " {dollars(t.baseline_nanos)} " on the strong models"</small>
            </div>
            <div class="card stat">
                <span class="label">"Cache hit rate"</span>
                <span class="value" id="stat-cache">{share(t.cache_hits, t.requests)}</span>
                <small>{t.cache_hits} " hits"</small>
            </div>
            <div class="card stat"><span class="label">"Errors"</span><span class="value" id="stat-errors">{t.errors} " · " {error_rate}</span></div>
            <div class="card stat">
                <span class="label">"Latency p50 / p95"</span>
                <span class="value" id="stat-latency">{ms(lat.p50_ms)} " / " {ms(lat.p95_ms)}</span>
                <small>{lat.samples} " answers"</small>
            </div>
            <div class="card stat">
                <span class="label">"Time to first token p50 / p95"</span>
                <span class="value" id="stat-ttft">{ms(ttft.p50_ms)} " / " {ms(ttft.p95_ms)}</span>
                <small>{ttft.samples} " streams"</small>
            </div>
            <div class="card stat"><span class="label">"Tokens in / out"</span><span class="value">{t.prompt_tokens} " / " {t.completion_tokens}</span></div>
        </section>
        <div class="grid3">
            <section class="card" id="savings">
                <h2>"Savings"</h2>
                <table>
                    <tbody>
                        <tr><th scope="row">"All on the strong models, no cache"</th><td class="num">{dollars(t.baseline_nanos)}</td></tr>
                        <tr><th scope="row">"Saved by routing"</th><td class="num" id="saved-routing">{dollars(by_routing)}</td></tr>
                        <tr><th scope="row">"Saved by the cache"</th><td class="num" id="saved-cache">{dollars(t.cache_saved_nanos)}</td></tr>
                        <tr><th scope="row">"Spent"</th><td class="num">{usd(&t.cost_usd)}</td></tr>
                    </tbody>
                </table>
                <p class="muted">"A route's baseline is each answer's tokens at its strong model's price."</p>
            </section>
            <section class="card" id="tracked">
                <h2>"Tracked and estimated cost"</h2>
                <table>
                    <tbody>
                        <tr><th scope="row">"Tracked (reported by the provider)"</th><td class="num" id="cost-tracked">{dollars(tracked)}</td></tr>
                        <tr><th scope="row">"Estimated (counted by the gateway)"</th><td class="num" id="cost-estimated">{dollars(t.estimated_cost_nanos)}</td></tr>
                    </tbody>
                </table>
                <p class="muted">"Estimated where a provider reported no usage it could be believed on, or a stream ended early."</p>
            </section>
            <Counts title="Errors by kind" id="errors" rows=d.summary.errors.clone() empty="No errors in this period." />
            <Counts title="Routing tiers" id="tiers" rows=d.summary.tiers.clone() empty="No routed requests in this period." />
        </div>
        <section class="card">
            <h2>"Spend over time"</h2>
            <div inner_html=bars("Spend over time", &spend, |v| format!("${v:.4}"))></div>
            {axis()}
        </section>
        <section class="card">
            <h2>"Requests over time"</h2>
            <div inner_html=bars("Requests over time", &requests, |v| format!("{v} requests"))></div>
            {axis()}
        </section>
        <section class="card" id="alerts">
            <h2>"Budget alerts"</h2>
            {if d.alerts.is_empty() {
                view! { <p class="empty">"No budget alerts."</p> }.into_any()
            } else {
                let named = d.key_names.clone();
                view! {
                    <table class="keys">
                        <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"Alert"</th><th scope="col" class="num">"Spent"</th><th scope="col" class="num">"Budget"</th></tr></thead>
                        <tbody>
                            {d.alerts.iter().map(|a| {
                                let who = match a.scope.strip_prefix("key:") {
                                    Some(id) => named.iter().find(|(k, _)| k == id).map(|(_, n)| format!("key {n}")).unwrap_or_else(|| a.scope.clone()),
                                    None => a.scope.replacen("team:", "team ", 1),
                                };
                                let link = a.scope.strip_prefix("key:").map(|id| format!("/ui/keys/{id}")).unwrap_or_else(|| "/ui/teams".into());
                                view! {
                                    <tr class=if a.kind == "hard" { "over" } else { "warn" }>
                                        <td>{a.at.get(..16).unwrap_or(&a.at).replace('T', " ")}</td>
                                        <td><a href=link>{who}</a></td>
                                        <td>{if a.kind == "hard" { "budget reached: requests refused" } else { "soft limit passed" }}</td>
                                        <td class="num">{usd(&a.spent_usd)}</td>
                                        <td class="num">{usd(&a.limit_usd)}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <div class="grid3">
            <Top title="Top keys" rows=d.top_keys.clone() name=key_name />
            <Top title="Top teams" rows=d.top_teams.clone() name=|g: &str| if g.is_empty() { "(no team)".to_string() } else { g.to_string() } />
            <Top title="Top models" rows=d.top_models.clone() name=|g: &str| g.to_string() />
        </div>
    }
}

#[component]
fn Counts(title: &'static str, id: &'static str, rows: Vec<LabelCount>, empty: &'static str) -> impl IntoView {
    view! {
        <section class="card" id=id>
            <h2>{title}</h2>
            {if rows.is_empty() {
                view! { <p class="empty">{empty}</p> }.into_any()
            } else {
                view! {
                    <table>
                        <tbody>
                            {rows
                                .into_iter()
                                .map(|r| view! { <tr><td>{r.label}</td><td class="num">{r.requests}</td></tr> })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
fn Top<N>(title: &'static str, rows: Vec<Group>, name: N) -> impl IntoView
where
    N: Fn(&str) -> String + 'static,
{
    let empty = rows.is_empty();
    view! {
        <section class="card">
            <h2>{title}</h2>
            {if empty {
                view! { <p class="empty">"Nothing in this period."</p> }.into_any()
            } else {
                view! {
                    <table>
                        <thead><tr><th scope="col">"Name"</th><th scope="col" class="num">"Requests"</th><th scope="col" class="num">"Spend"</th></tr></thead>
                        <tbody>
                            {rows
                                .iter()
                                .map(|g| view! {
                                    <tr>
                                        <td>{name(&g.group)}</td>
                                        <td class="num">{g.totals.requests}</td>
                                        <td class="num">{usd(&g.totals.cost_usd)}</td>
                                    </tr>
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}
