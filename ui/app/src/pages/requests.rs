//! The request log: the latest requests with key, route, tier, model and deployment, tokens,
//! cost, latency, cache and outcome, filtered (a request id finds one request), page by page;
//! and one request with every field and why it went where it went, with its prompt and answer
//! where they were stored (shown to admins only).

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::usd;
use crate::api::{enc, load_request, load_request_bodies, load_requests};
use crate::layout::Frame;
use crate::types::{BodiesView, LoggedRequest, RequestPage, RequestQuery};

#[component]
pub fn Requests() -> impl IntoView {
    let q = use_query_map();
    let query = move || {
        q.with(|m| {
            let v = |k: &str| m.get(k).unwrap_or_default();
            RequestQuery {
                key_id: v("key_id"),
                model: v("model"),
                route: v("route"),
                outcome: v("outcome"),
                request_id: v("request_id"),
                before: v("before"),
            }
        })
    };
    let data = Resource::new(query, load_requests);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::prelude::set_interval(
            move || {
                // Only the newest page is live; an older one stays as it was.
                if query().before.is_empty() {
                    data.refetch();
                }
            },
            std::time::Duration::from_secs(10),
        );
    });
    view! {
        <Frame title="Requests" children=move |_me| {
            let f = query();
            view! {
                <form method="get" action="/ui/requests" class="filters" role="search">
                    <label for="r-id">"Request id"</label>
                    <input id="r-id" name="request_id" value=f.request_id.clone() placeholder="x-request-id" />
                    <label for="r-key">"Key id"</label>
                    <input id="r-key" name="key_id" value=f.key_id.clone() size="14" />
                    <label for="r-model">"Model"</label>
                    <input id="r-model" name="model" value=f.model.clone() size="10" />
                    <label for="r-route">"Route"</label>
                    <input id="r-route" name="route" value=f.route.clone() size="8" />
                    <label for="r-outcome">"Outcome"</label>
                    <select id="r-outcome" name="outcome">
                        {["", "success", "failed", "upstream_error", "rejected", "client_disconnect"]
                            .into_iter()
                            .map(|o| view! { <option value=o selected={f.outcome == o}>{if o.is_empty() { "any" } else { o }}</option> })
                            .collect_view()}
                    </select>
                    <button type="submit">"Find"</button>
                </form>
                <Transition fallback=|| view! { <p class="loading">"Loading requests…"</p> }>
                    {move || {
                        let f = query();
                        Suspend::new(async move {
                            match data.await {
                                Ok(p) => view! { <Log p=p f=f /> }.into_any(),
                                Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                            }
                        })
                    }}
                </Transition>
                <p class="muted refresh">"The newest page refreshes every 10 s (with JavaScript)."</p>
            }
        } />
    }
}

fn ms(v: u64) -> String {
    format!("{v} ms")
}

/// The route and tier, or the model asked for when no route chose.
fn routed(r: &LoggedRequest) -> String {
    match (&r.route, &r.tier) {
        (Some(route), Some(tier)) => format!("{route} → {tier}"),
        (Some(route), None) => route.clone(),
        _ => "–".into(),
    }
}

#[component]
fn Log(p: RequestPage, f: RequestQuery) -> impl IntoView {
    if p.data.is_empty() {
        return view! { <p class="empty">"No requests match."</p> }.into_any();
    }
    let older = p.next.clone().map(|n| {
        let mut q = format!("before={}", enc(&n));
        for (k, v) in [
            ("key_id", &f.key_id),
            ("model", &f.model),
            ("route", &f.route),
            ("outcome", &f.outcome),
            ("request_id", &f.request_id),
        ] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        view! { <p><a href=format!("/ui/requests?{q}") id="older">"Older requests →"</a></p> }
    });
    view! {
        <table class="keys requests" id="request-log">
            <thead>
                <tr>
                    <th scope="col">"When (UTC)"</th>
                    <th scope="col">"Request"</th>
                    <th scope="col">"Key"</th>
                    <th scope="col">"Route"</th>
                    <th scope="col">"Model"</th>
                    <th scope="col" class="num">"Tokens"</th>
                    <th scope="col" class="num">"Cost"</th>
                    <th scope="col" class="num">"Latency"</th>
                    <th scope="col">"Cache"</th>
                    <th scope="col">"Outcome"</th>
                </tr>
            </thead>
            <tbody>
                {p.data.iter().map(|r| {
                    let ok = r.outcome == "success";
                    view! {
                        <tr data-request=r.request_id.clone()>
                            <td>{r.timestamp.get(..19).unwrap_or(&r.timestamp).replace('T', " ")}</td>
                            <td><a href=format!("/ui/requests/{}", r.event_id)><code>{r.request_id.clone()}</code></a></td>
                            <td>{r.key_id.clone().unwrap_or_else(|| "–".into())}</td>
                            <td title=r.route_reason.clone().unwrap_or_default()>{routed(r)}</td>
                            <td>{r.model.clone()} <br /> <small>{r.deployment.clone().unwrap_or_default()}</small></td>
                            <td class="num">{r.prompt_tokens} " / " {r.completion_tokens}</td>
                            <td class="num">{usd(&r.cost_usd)}</td>
                            <td class="num">{ms(r.latency_ms)}</td>
                            <td>{r.cache.clone().unwrap_or_default()}</td>
                            <td><span class=if ok { "badge" } else { "badge revoked" }>{if ok { r.outcome.clone() } else { r.error_kind.clone().unwrap_or_else(|| r.outcome.clone()) }}</span></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {older}
    }
    .into_any()
}

#[component]
pub fn RequestDetail() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id")).unwrap_or_default();
    let data = Resource::new(id, load_request);
    let bodies = Resource::new(id, load_request_bodies);
    view! {
        <Frame title="Request" children=move |_me| view! {
            <p><a href="/ui/requests">"← The request log"</a></p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the request…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(r) => view! { <Detail r=r /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Suspense>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match bodies.await {
                        Ok(b) => view! { <Bodies b=b /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Suspense>
        } />
    }
}

/// The prompt and the answer, where they were stored.
#[component]
fn Bodies(b: BodiesView) -> impl IntoView {
    let note = |cut: bool| cut.then(|| view! { <p class="muted">"Cut at the configured size."</p> });
    match b {
        BodiesView::Stored(b) => view! {
            <section class="card" id="request-bodies">
                <h2>"Request"</h2>
                <pre class="body" id="request-body" tabindex="0">{b.request.clone()}</pre>
                {note(b.request_truncated)}
                <h2>"Answer"</h2>
                {if b.response.is_empty() {
                    view! { <p class="empty">"No answer was sent."</p> }.into_any()
                } else {
                    view! { <pre class="body" id="response-body" tabindex="0">{b.response.clone()}</pre> }.into_any()
                }}
                {note(b.response_truncated)}
                <p class="muted">{format!("{} match(es) of the redaction patterns replaced.", b.redactions)}</p>
            </section>
        }
        .into_any(),
        BodiesView::NotStored => view! {
            <p class="muted" id="no-bodies">"Bodies are not stored for this request: they are kept only where its key, team or route opts in, and only until their retention ends."</p>
        }
        .into_any(),
        BodiesView::AdminsOnly => view! {
            <p class="muted" id="no-bodies">"Stored bodies, where there are any, are shown to admins only."</p>
        }
        .into_any(),
    }
}

#[component]
fn Detail(r: LoggedRequest) -> impl IntoView {
    let opt = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "–".into());
    let nanos = |n: i64| usd(&format!("{}", n as f64 / 1e9));
    let rows: Vec<(&str, String)> = vec![
        ("Request id", r.request_id.clone()),
        ("Event id", r.event_id.clone()),
        ("When", r.timestamp.clone()),
        ("Key", opt(&r.key_id)),
        ("Team", opt(&r.team_id)),
        (
            "Endpoint",
            format!("{}{}", r.endpoint, if r.stream { " (stream)" } else { "" }),
        ),
        ("Route", opt(&r.route)),
        ("Tier", opt(&r.tier)),
        ("Intent", opt(&r.intent)),
        ("Why", opt(&r.route_reason)),
        ("Experiment arm", opt(&r.route_variant)),
        ("Shadow's choice", opt(&r.shadow_model)),
        (
            "Cascade",
            format!(
                "{}{}",
                opt(&r.cascade),
                r.escalation_reason
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        ),
        ("Model", r.model.clone()),
        (
            "Deployment",
            format!(
                "{} {}",
                opt(&r.deployment),
                r.provider.as_ref().map(|p| format!("({p})")).unwrap_or_default()
            ),
        ),
        ("Attempts", r.attempts.to_string()),
        ("Status", format!("{} {}", r.status, r.outcome)),
        ("Error", opt(&r.error_kind)),
        (
            "Tokens",
            format!(
                "{} in ({} cached), {} out",
                r.prompt_tokens, r.cached_tokens, r.completion_tokens
            ),
        ),
        (
            "Usage",
            format!(
                "{}{}",
                r.usage_source,
                r.usage_flag.as_ref().map(|f| format!(" ({f})")).unwrap_or_default()
            ),
        ),
        ("Cost", usd(&r.cost_usd)),
        ("On the strong model, without the cache", nanos(r.baseline_cost_nanos)),
        ("Latency", ms(r.latency_ms)),
        ("Time to first token", r.ttft_ms.map(ms).unwrap_or_else(|| "–".into())),
        (
            "Cache",
            format!(
                "{}{}",
                opt(&r.cache),
                if r.cache_saved_nanos > 0 {
                    format!(", saved {}", nanos(r.cache_saved_nanos))
                } else {
                    String::new()
                }
            ),
        ),
    ];
    view! {
        <section class="card" id="request-detail">
            <dl class="fields">
                {rows.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
            </dl>
        </section>
    }
}
