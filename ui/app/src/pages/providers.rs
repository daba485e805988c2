//! Providers and the cache: each deployment's breaker state, requests in flight, error rate and
//! latency over the last hour; the cache's entries, hit rate and savings per scope and route;
//! and, for admins, a purge behind a confirmation.

use leptos::prelude::*;

use super::usd;
use crate::api::{load_providers, PurgeCache};
use crate::layout::Frame;
use crate::types::{CacheStats, DeploymentRow, Viewer};

#[component]
pub fn Providers() -> impl IntoView {
    let purge = ServerAction::<PurgeCache>::new();
    let data = Resource::new(move || purge.version().get(), |_| load_providers());
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::prelude::set_interval(move || data.refetch(), std::time::Duration::from_secs(10));
    });
    view! {
        <Frame title="Providers and cache" children=move |me: Viewer| view! {
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {
                    let me = me.clone();
                    move || {
                        let me = me.clone();
                        Suspend::new(async move {
                            match data.await {
                                Ok(p) => view! {
                                    <Deployments rows=p.deployments />
                                    <Cache c=p.cache me=me purge=purge />
                                }
                                .into_any(),
                                Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                            }
                        })
                    }
                }
            </Transition>
            <p class="muted refresh">"Refreshes every 10 s (with JavaScript)."</p>
        } />
    }
}

#[component]
fn Deployments(rows: Vec<DeploymentRow>) -> impl IntoView {
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_string(), |v| format!("{v} ms"));
    view! {
        <section class="card" id="deployments">
            <h2>"Deployments, last hour"</h2>
            <table class="keys">
                <thead>
                    <tr>
                        <th scope="col">"Deployment"</th><th scope="col">"Model"</th><th scope="col">"Provider"</th>
                        <th scope="col">"Breaker"</th><th scope="col" class="num">"In flight"</th>
                        <th scope="col" class="num">"Requests"</th><th scope="col" class="num">"Error rate"</th>
                        <th scope="col" class="num">"Latency p50 / p95"</th>
                    </tr>
                </thead>
                <tbody>
                    {rows.into_iter().map(|d| {
                        let open = d.breaker == "open";
                        view! {
                            <tr data-deployment=d.id.clone()>
                                <td>{d.id.clone()}</td>
                                <td>{d.model.clone()}</td>
                                <td>{d.provider.clone()}</td>
                                <td><span class=if open { "badge revoked" } else { "badge" }>{d.breaker.clone()}</span></td>
                                <td class="num">{d.inflight}</td>
                                <td class="num">{d.requests}</td>
                                <td class="num">{if d.requests > 0 { format!("{:.1} %", d.error_rate * 100.0) } else { "–".into() }}</td>
                                <td class="num">{ms(d.latency.p50_ms)} " / " {ms(d.latency.p95_ms)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn Cache(c: CacheStats, me: Viewer, purge: ServerAction<PurgeCache>) -> impl IntoView {
    let purged = move || {
        purge.value().get().map(|r| match r {
            Ok(n) => view! { <p class="ok" role="status" id="purged">{format!("Purged {n} entries.")}</p> }.into_any(),
            Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
        })
    };
    if !c.enabled {
        return view! {
            <section class="card" id="cache"><h2>"Cache"</h2><p class="empty">"No cache is configured ([cache] in the config)."</p></section>
        }
        .into_any();
    }
    let (hits, lookups) = c.data.iter().fold((0u64, 0u64), |(h, l), s| {
        (h + s.hits + s.semantic_hits, l + s.hits + s.semantic_hits + s.misses)
    });
    let rate = if lookups > 0 {
        format!("{:.1} %", hits as f64 * 100.0 / lookups as f64)
    } else {
        "–".into()
    };
    view! {
        <section class="card" id="cache">
            <h2>"Cache"</h2>
            <p>
                <strong id="cache-entries">{c.entries}</strong> " entries, " {format!("{:.1} MB", c.bytes as f64 / 1e6)}
                " · hit rate " <strong id="cache-rate">{rate}</strong> " since start"
                {c.embedder.clone().map(|e| format!(" · semantic tier: {e}, {} questions", c.semantic_entries))}
            </p>
            {if c.data.is_empty() {
                view! { <p class="empty">"No lookups yet."</p> }.into_any()
            } else {
                view! {
                    <table class="keys">
                        <thead><tr>
                            <th scope="col">"Scope"</th><th scope="col">"Route or model"</th><th scope="col" class="num">"Hits"</th>
                            <th scope="col" class="num">"Semantic"</th><th scope="col" class="num">"Misses"</th>
                            <th scope="col" class="num">"Hit rate"</th><th scope="col" class="num">"Saved"</th><th scope="col" class="num">"Entries"</th>
                        </tr></thead>
                        <tbody>
                            {c.data.iter().map(|s| view! {
                                <tr>
                                    <td>{s.scope.clone()}</td><td>{s.target.clone()}</td>
                                    <td class="num">{s.hits}</td><td class="num">{s.semantic_hits}</td><td class="num">{s.misses}</td>
                                    <td class="num">{format!("{:.1} %", s.hit_rate * 100.0)}</td>
                                    <td class="num">{usd(&s.saved_usd)}</td><td class="num">{s.entries}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            {me.can_edit().then(|| view! {
                <details class="confirm">
                    <summary>"Purge…"</summary>
                    <ActionForm action=purge>
                        <input type="hidden" name="csrf" value=me.csrf.clone() />
                        <label for="purge-target">"Route or model (blank: everything)"</label>
                        <input id="purge-target" name="target" />
                        <p>"Purged answers are gone at once, here and in the database."</p>
                        <button type="submit" class="danger" id="purge-now">"Purge now"</button>
                    </ActionForm>
                </details>
            })}
            {purged}
        </section>
    }
    .into_any()
}
