//! The overview: requests, spend and errors for a period, spend over time, and the top keys,
//! teams and models by spend.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::usd;
use crate::api::{load_overview, PERIODS};
use crate::chart::{bars, Bar};
use crate::layout::Frame;
use crate::types::{Group, Overview as Data};

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
    let t = &d.totals;
    let error_rate = if t.requests > 0 {
        format!("{:.1} %", t.errors as f64 * 100.0 / t.requests as f64)
    } else {
        "–".into()
    };
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
            <div class="card stat"><span class="label">"Errors"</span><span class="value" id="stat-errors">{t.errors} " · " {error_rate}</span></div>
            <div class="card stat"><span class="label">"Tokens in / out"</span><span class="value">{t.prompt_tokens} " / " {t.completion_tokens}</span></div>
        </section>
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
        <div class="grid3">
            <Top title="Top keys" rows=d.top_keys.clone() name=key_name />
            <Top title="Top teams" rows=d.top_teams.clone() name=|g: &str| if g.is_empty() { "(no team)".to_string() } else { g.to_string() } />
            <Top title="Top models" rows=d.top_models.clone() name=|g: &str| g.to_string() />
        </div>
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
