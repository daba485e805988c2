//! Usage: the ledger filtered by period, key, team, model, tag and cost center, as a chart (for
//! groups over time) and a table with totals, and CSV or JSON downloads of exactly that filter.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::usd;
use crate::api::load_usage;
use crate::chart::{bars, Bar};
use crate::layout::Frame;
use crate::types::{UsagePage, UsageQuery};

#[component]
pub fn Usage() -> impl IntoView {
    let q = use_query_map();
    let query = move || {
        q.with(|m| {
            let v = |k: &str| m.get(k).unwrap_or_default();
            UsageQuery {
                from: v("from"),
                to: v("to"),
                key_id: v("key_id"),
                team_id: v("team_id"),
                model: v("model"),
                tag: v("tag"),
                cost_center: v("cost_center"),
                group_by: v("group_by"),
            }
        })
    };
    let data = Resource::new(query, load_usage);
    view! {
        <Frame title="Usage" children=move |_me| {
            let f = query();
            view! {
                <form method="get" action="/ui/usage" class="filters usage-filters" role="search">
                    <label for="u-from">"From"</label>
                    <input id="u-from" name="from" type="date" value=f.from.clone() />
                    <label for="u-to">"To"</label>
                    <input id="u-to" name="to" type="date" value=f.to.clone() />
                    <label for="u-key">"Key id"</label>
                    <input id="u-key" name="key_id" value=f.key_id.clone() size="14" />
                    <label for="u-team">"Team id"</label>
                    <input id="u-team" name="team_id" value=f.team_id.clone() size="14" />
                    <label for="u-model">"Model"</label>
                    <input id="u-model" name="model" value=f.model.clone() size="10" />
                    <label for="u-tag">"Tag"</label>
                    <input id="u-tag" name="tag" value=f.tag.clone() size="8" />
                    <label for="u-cc">"Cost center"</label>
                    <input id="u-cc" name="cost_center" value=f.cost_center.clone() size="8" />
                    <label for="u-group">"Group by"</label>
                    <select id="u-group" name="group_by">
                        {["day", "hour", "key", "team", "model"]
                            .into_iter()
                            .map(|g| {
                                let selected = f.group_by == g || (f.group_by.is_empty() && g == "day");
                                view! { <option value=g selected=selected>{g}</option> }
                            })
                            .collect_view()}
                    </select>
                    <button type="submit">"Show"</button>
                </form>
                <Transition fallback=|| view! { <p class="loading">"Loading usage…"</p> }>
                    {move || Suspend::new(async move {
                        match data.await {
                            Ok(p) => view! { <Report p=p /> }.into_any(),
                            Err(e) => {
                                let field = e.param.clone().map(|p| format!("{p}: ")).unwrap_or_default();
                                view! { <p class="error" role="alert" id="usage-error">{field}{e.message}</p> }.into_any()
                            }
                        }
                    })}
                </Transition>
            }
        } />
    }
}

#[component]
fn Report(p: UsagePage) -> impl IntoView {
    let t = p.report.totals.clone();
    let over_time = p.group_by == "day" || p.group_by == "hour";
    let chart: Vec<Bar> = p
        .report
        .groups
        .iter()
        .map(|g| Bar {
            label: g.group.clone(),
            value: g.totals.cost_nanos as f64 / 1e9,
        })
        .collect();
    let sep = if p.filter.is_empty() { "" } else { "&" };
    let csv = format!("/ui/export?{}{sep}format=csv", p.filter);
    let json = format!("/ui/export?{}{sep}format=json", p.filter);
    let label = {
        let by = p.group_by.clone();
        move |g: &str| -> AnyView {
            match by.as_str() {
                "day" => g.get(..10).unwrap_or(g).to_string().into_any(),
                "hour" => g.get(..16).unwrap_or(g).replace('T', " ").into_any(),
                "key" if !g.is_empty() => view! { <a href=format!("/ui/keys/{g}")>{g.to_string()}</a> }.into_any(),
                _ if g.is_empty() => "(none)".into_any(),
                _ => g.to_string().into_any(),
            }
        }
    };
    let dollars = |n: i64| usd(&format!("{}", n as f64 / 1e9));
    view! {
        {p.note.clone().map(|n| view! { <p class="muted" role="status">{n}</p> })}
        <section class="card downloads">
            <h2>"Export exactly this"</h2>
            <p>
                <a href=csv.clone() id="export-csv" download>"Download CSV"</a> " · "
                <a href=json id="export-json" download>"Download JSON"</a>
                <span class="muted">" — every column of every matching event, with totals equal to the ledger's."</span>
            </p>
        </section>
        {over_time.then(|| view! {
            <section class="card">
                <h2>"Spend"</h2>
                <div inner_html=bars("Spend", &chart, |v| format!("${v:.4}"))></div>
            </section>
        })}
        <section class="card">
            {if p.report.groups.is_empty() {
                view! { <p class="empty">"No usage matches these filters."</p> }.into_any()
            } else {
                view! {
                    <table class="usage" id="usage-table">
                        <thead>
                            <tr>
                                <th scope="col">{p.group_by.clone()}</th>
                                <th scope="col" class="num">"Requests"</th>
                                <th scope="col" class="num">"Errors"</th>
                                <th scope="col" class="num">"Tokens in"</th>
                                <th scope="col" class="num">"Tokens out"</th>
                                <th scope="col" class="num">"Estimated"</th>
                                <th scope="col" class="num">"Spend"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {p.report.groups.iter().map(|g| view! {
                                <tr>
                                    <td>{label(&g.group)}</td>
                                    <td class="num">{g.totals.requests}</td>
                                    <td class="num">{g.totals.errors}</td>
                                    <td class="num">{g.totals.prompt_tokens}</td>
                                    <td class="num">{g.totals.completion_tokens}</td>
                                    <td class="num">{dollars(g.totals.estimated_cost_nanos)}</td>
                                    <td class="num">{usd(&g.totals.cost_usd)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                        <tfoot>
                            <tr>
                                <th scope="row">"Total"</th>
                                <td class="num" id="usage-requests">{t.requests}</td>
                                <td class="num">{t.errors}</td>
                                <td class="num">{t.prompt_tokens}</td>
                                <td class="num">{t.completion_tokens}</td>
                                <td class="num">{dollars(t.estimated_cost_nanos)}</td>
                                <td class="num" id="usage-spend" data-usd=t.cost_usd.clone()>{usd(&t.cost_usd)}</td>
                            </tr>
                        </tfoot>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}
