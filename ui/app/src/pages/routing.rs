//! Routing: the table in force; the tier mix over time and the intents seen; per route, the
//! models served, the A/B arms, the shadow's agreement and the cascade's escalation rate; the
//! latest decisions with their reasons; and a playground that routes a pasted prompt.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::usd;
use crate::api::{explain_route, load_decisions, load_routing, PERIODS};
use crate::chart::stacked;
use crate::error::UiError;
use crate::layout::Frame;
use crate::types::{Explained, LoggedRequest, RouteRow, RouteStatsRow, RoutingPage};

#[component]
pub fn Routing() -> impl IntoView {
    let q = use_query_map();
    let period = move || q.with(|q| q.get("period")).unwrap_or_else(|| "7d".into());
    let data = Resource::new(period, load_routing);
    // The playground is a GET form: its answer is part of the page, with or without JavaScript.
    let asked = move || {
        q.with(|q| {
            let v = |k: &str| q.get(k).unwrap_or_default();
            (v("route"), v("prompt"), v("prefer"))
        })
    };
    let explained = Resource::new(asked, |(route, prompt, prefer)| async move {
        if prompt.trim().is_empty() {
            Ok(None)
        } else {
            explain_route(route, prompt, prefer).await.map(Some)
        }
    });
    // The decision log is live; the rest stays put (so the playground keeps what is typed).
    let decisions = Resource::new(|| (), |_| load_decisions());
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::prelude::set_interval(move || decisions.refetch(), std::time::Duration::from_secs(10));
    });
    view! {
        <Frame title="Routing" children=move |_me| view! {
            <nav class="periods" aria-label="Period">
                {PERIODS
                    .iter()
                    .map(|(id, label, _)| {
                        let current = move || (period() == *id).then_some("page");
                        view! { <a href=format!("/ui/routing?period={id}") aria-current=current>{*label}</a> }
                    })
                    .collect_view()}
            </nav>
            <Transition fallback=|| view! { <p class="loading">"Loading routing…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(p) => view! { <Page p=p period=period() asked=asked() explained=explained /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=|| view! { <p class="loading">"Loading decisions…"</p> }>
                {move || Suspend::new(async move {
                    match decisions.await {
                        Ok(d) => view! { <Decisions d=d /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
            <p class="muted refresh">"The latest decisions refresh every 10 s (with JavaScript)."</p>
        } />
    }
}

/// The latest routed requests, with why each went where it went.
#[component]
fn Decisions(d: Vec<LoggedRequest>) -> impl IntoView {
    view! {
        <section class="card" id="decisions">
            <h2>"Latest decisions"</h2>
            {if d.is_empty() {
                view! { <p class="empty">"No routed requests yet."</p> }.into_any()
            } else {
                view! {
                    <table class="keys">
                        <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Route → tier"</th><th scope="col">"Model"</th><th scope="col">"Intent"</th><th scope="col">"Why"</th></tr></thead>
                        <tbody>
                            {d.iter().map(|r| view! {
                                <tr>
                                    <td><a href=format!("/ui/requests/{}", r.event_id)>{r.timestamp.get(..19).unwrap_or(&r.timestamp).replace('T', " ")}</a></td>
                                    <td>{r.route.clone().unwrap_or_default()} " → " {r.tier.clone().unwrap_or_default()}</td>
                                    <td>{r.model.clone()}</td>
                                    <td>{r.intent.clone().unwrap_or_default()}</td>
                                    <td><small>{r.route_reason.clone().unwrap_or_default()}</small></td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn Decision(d: Explained) -> impl IntoView {
    view! {
        <section class="decision" id="decision">
            <h2>"The decision"</h2>
            <dl class="fields">
                <dt>"Route"</dt><dd>{d.route.clone()}</dd>
                <dt>"Tier"</dt><dd id="decision-tier">{d.tier.clone()}</dd>
                <dt>"Model"</dt><dd id="decision-model">{d.model.clone()}</dd>
                <dt>"Intent"</dt><dd>{format!("{} ({:.0} % sure)", d.intent, d.intent_confidence * 100.0)}</dd>
                <dt>"Difficulty"</dt><dd>{format!("{:.2}, percentile {:.2} against a threshold of {:.2}", d.difficulty, d.percentile, d.threshold)}</dd>
                <dt>"Preference"</dt><dd>{d.prefer.clone()}</dd>
                <dt>"Why"</dt><dd id="decision-reason">{d.reason.clone()}</dd>
            </dl>
        </section>
    }
}

/// Share of `part` in `whole` as a percentage, or a dash.
fn pct(part: i64, whole: i64) -> String {
    if whole > 0 {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    } else {
        "–".into()
    }
}

#[component]
fn Page(
    p: RoutingPage,
    period: String,
    asked: (String, String, String),
    explained: Resource<Result<Option<Explained>, UiError>>,
) -> impl IntoView {
    // The tier mix as one series per tier over the period's buckets.
    let mut by_tier: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &p.tiers {
        if let Some(i) = p.buckets.iter().position(|b| *b == r.group) {
            by_tier
                .entry(r.label.clone())
                .or_insert_with(|| vec![0.0; p.buckets.len()])[i] += r.requests as f64;
        }
    }
    let legend: Vec<(usize, String, i64)> = by_tier
        .iter()
        .enumerate()
        .map(|(i, (t, v))| (i % 6, t.clone(), v.iter().sum::<f64>() as i64))
        .collect();
    let series: Vec<(String, Vec<f64>)> = by_tier.into_iter().collect();
    let mut intents: BTreeMap<String, i64> = BTreeMap::new();
    for r in &p.intents {
        *intents.entry(r.label.clone()).or_default() += r.requests;
    }
    let mut intents: Vec<(String, i64)> = intents.into_iter().collect();
    intents.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let intent_total: i64 = intents.iter().map(|i| i.1).sum();
    let route_names: Vec<String> = p.routes.iter().map(|r| r.name.clone()).collect();
    view! {
        <section class="card" id="route-table">
            <h2>"Routing table"</h2>
            <RouteTable routes=p.routes.clone() />
        </section>
        <div class="grid3">
            <section class="card" id="tier-mix">
                <h2>"Tier mix"</h2>
                <div inner_html=stacked("Routed requests by tier", &p.buckets, &series)></div>
                <p class="legend">
                    {legend.into_iter().map(|(i, t, n)| view! {
                        <span><i class=format!("swatch s{i}")></i>{t} " " {n}</span>
                    }).collect_view()}
                </p>
            </section>
            <section class="card" id="intent-mix">
                <h2>"Intents"</h2>
                {if intents.is_empty() {
                    view! { <p class="empty">"No routed requests in this period."</p> }.into_any()
                } else {
                    view! {
                        <table><tbody>
                            {intents.into_iter().map(|(i, n)| view! {
                                <tr><td>{i}</td><td class="num">{n}</td><td class="num">{pct(n, intent_total)}</td></tr>
                            }).collect_view()}
                        </tbody></table>
                    }.into_any()
                }}
            </section>
        </div>
        <section class="card" id="route-stats">
            <h2>"Per route"</h2>
            <RouteStats stats=p.stats.clone() />
        </section>
        <section class="card" id="playground">
            <h2>"Playground"</h2>
            <p class="muted">"Paste a prompt to see where a route would send it and why. No model is called."</p>
            <form method="get" action="/ui/routing">
                <input type="hidden" name="period" value=period />
                <div class="fields">
                    <label for="pg-route">"Route"</label>
                    <select id="pg-route" name="route">
                        {route_names.into_iter().map(|n| {
                            let selected = n == asked.0;
                            view! { <option value=n.clone() selected=selected>{n.clone()}</option> }
                        }).collect_view()}
                    </select>
                    <label for="pg-prefer">"Preference"</label>
                    <select id="pg-prefer" name="prefer">
                        {[("", "the key's or the default"), ("cost", "cost"), ("balanced", "balanced"), ("quality", "quality")]
                            .into_iter()
                            .map(|(v, l)| view! { <option value=v selected={asked.2 == v}>{l}</option> })
                            .collect_view()}
                    </select>
                    <label for="pg-prompt">"Prompt"</label>
                    <textarea id="pg-prompt" name="prompt" rows="5" maxlength="8000">{asked.1.clone()}</textarea>
                </div>
                <button type="submit" id="pg-submit">"Route it"</button>
            </form>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match explained.await {
                        Ok(Some(d)) => Some(view! { <Decision d=d /> }.into_any()),
                        Ok(None) => None,
                        Err(e) => Some(view! { <p class="error" role="alert" id="decision-error">{e.message}</p> }.into_any()),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn RouteTable(routes: Vec<RouteRow>) -> impl IntoView {
    if routes.is_empty() {
        return view! { <p class="empty">"No routes are configured."</p> }.into_any();
    }
    view! {
        <table class="keys">
            <thead>
                <tr>
                    <th scope="col">"Route"</th><th scope="col">"Cheap"</th><th scope="col">"Strong"</th>
                    <th scope="col" class="num">"Strong share"</th><th scope="col">"Specialists"</th>
                    <th scope="col">"Experiment"</th><th scope="col">"Shadow"</th><th scope="col">"Cascade"</th>
                </tr>
            </thead>
            <tbody>
                {routes.into_iter().map(|r| {
                    let specialists = r.intents.iter().map(|(i, m)| format!("{i} → {m}")).collect::<Vec<_>>().join(", ");
                    let experiment = r.experiment.as_ref().map(|e| format!("{} % to {}", e["percent"], e["candidate"].as_str().unwrap_or(""))).unwrap_or_default();
                    view! {
                        <tr data-route=r.name.clone()>
                            <td>{r.name.clone()} <br /> <small>{r.description.clone().unwrap_or_default()}</small></td>
                            <td>{r.cheap.clone()}</td>
                            <td>{r.strong.clone()}</td>
                            <td class="num">{format!("{:.0} %", r.strong_share * 100.0)}</td>
                            <td>{specialists}</td>
                            <td>{experiment}</td>
                            <td>{r.shadow.clone().unwrap_or_default()}</td>
                            <td>{if r.cascade.is_some() { "cheap first, checked" } else { "" }}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn RouteStats(stats: Vec<RouteStatsRow>) -> impl IntoView {
    if stats.is_empty() {
        return view! { <p class="empty">"No routed requests in this period."</p> }.into_any();
    }
    let dollars = |n: i64| usd(&format!("{}", n as f64 / 1e9));
    view! {
        <table class="keys">
            <thead>
                <tr>
                    <th scope="col">"Route"</th><th scope="col" class="num">"Requests"</th><th scope="col" class="num">"Cost"</th>
                    <th scope="col">"Models served"</th><th scope="col">"A/B arms"</th><th scope="col">"Shadow"</th>
                    <th scope="col">"Cascade"</th>
                </tr>
            </thead>
            <tbody>
                {stats.into_iter().map(|s| {
                    let models = s.by_model.iter().map(|(m, n)| format!("{m} {n}")).collect::<Vec<_>>().join(", ");
                    let arms = s.by_variant.iter().map(|(v, a)| format!("{v}: {} req, {}", a.requests, dollars(a.cost_nanos))).collect::<Vec<_>>().join("; ");
                    let shadow = if s.shadow.requests > 0 {
                        format!(
                            "agreed {} · would cost {} vs {}",
                            pct(s.shadow.agreed, s.shadow.requests),
                            dollars(s.shadow.projected_cost_nanos),
                            dollars(s.shadow.actual_cost_nanos),
                        )
                    } else {
                        String::new()
                    };
                    let c = &s.cascade;
                    let ran = c.accepted + c.unchecked + c.escalated;
                    let cascade = if ran > 0 {
                        format!(
                            "escalated {} ({} of {}), accepted {}, unchecked {}",
                            pct(c.escalated, ran), c.escalated, ran, c.accepted, c.unchecked
                        )
                    } else {
                        String::new()
                    };
                    view! {
                        <tr data-route-stats=s.route.clone()>
                            <td>{s.route.clone()}</td>
                            <td class="num">{s.requests}</td>
                            <td class="num">{dollars(s.cost_nanos)}</td>
                            <td>{models}</td>
                            <td>{arms}</td>
                            <td>{shadow}</td>
                            <td>{cascade}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
