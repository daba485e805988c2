//! Teams: each team's spend against its budget as a bar (from the ledger), its keys and limits,
//! searched and filtered by budget;
//! for admins, create a team and change a team's cost center, budget, limits and stored bodies
//! (a row's errors shown next to its fields).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::{period_options, BudgetBar, BUDGET_PERIODS};
use crate::api::{list_teams, CreateTeam, UpdateTeam};
use crate::error::UiError;
use crate::layout::Frame;
use crate::types::{TeamRow, Viewer};

#[derive(Clone, Copy)]
struct Data {
    create: ServerAction<CreateTeam>,
    update: ServerAction<UpdateTeam>,
    teams: Resource<Result<Vec<TeamRow>, UiError>>,
}

#[component]
pub fn Teams() -> impl IntoView {
    let create = ServerAction::<CreateTeam>::new();
    let update = ServerAction::<UpdateTeam>::new();
    let teams = Resource::new(
        move || (create.version().get(), update.version().get()),
        |_| list_teams(),
    );
    let data = Data { create, update, teams };
    view! { <Frame title="Teams" children=move |me| view! { <TeamsBody me=me data=data /> } /> }
}

#[component]
fn TeamsBody(me: Viewer, data: Data) -> impl IntoView {
    let Data { create, update, teams } = data;
    let csrf = me.csrf.clone();
    let editor = me.can_edit();
    let err = move |field: &'static str| {
        move || {
            create
                .value()
                .get()
                .and_then(|r| r.err())
                .and_then(|e: UiError| e.about(field))
                .map(|m| view! { <span class="field-error" role="alert">{m}</span> })
        }
    };
    let general = move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| update.value().get().and_then(|r| r.err()))
            .filter(|e| e.param.is_none())
            .map(|e| view! { <p class="error" role="alert">{e.message}</p> })
    };
    let q = use_query_map();
    let search = move || q.with(|m| m.get("q").unwrap_or_default());
    let budget = move || q.with(|m| m.get("budget").unwrap_or_default());
    view! {
        <form method="get" action="/ui/teams" class="filters" role="search">
            <label for="tq">"Search"</label>
            <input id="tq" name="q" value=search placeholder="name, id or cost center" />
            <label for="tb">"Budget"</label>
            <select id="tb" name="budget">
                {[("", "any"), ("set", "with a budget"), ("none", "without"), ("alert", "past its alert")]
                    .into_iter()
                    .map(|(v, label)| view! { <option value=v selected=move || budget() == v>{label}</option> })
                    .collect_view()}
            </select>
            <button type="submit">"Filter"</button>
        </form>
        {general}
        {editor.then(|| view! {
            <details class="card" open=move || create.value().get().is_some_and(|r| r.is_err())>
                <summary>"Create a team"</summary>
                <ActionForm action=create>
                    <input type="hidden" name="csrf" value=csrf.clone() />
                    <div class="fields">
                        <label for="t-name">"Name"</label>
                        <input id="t-name" name="name" required maxlength="128" />
                        {err("name")}
                        <label for="t-cc">"Cost center"</label>
                        <input id="t-cc" name="cost_center" placeholder="optional" />
                        {err("cost_center")}
                        <label for="t-budget">"Budget (USD)"</label>
                        <input id="t-budget" name="budget_usd" inputmode="decimal" placeholder="optional" />
                        {err("limits.budget.limit_usd")}
                        <label for="t-period">"Budget period"</label>
                        <select id="t-period" name="period">
                            {period_options(BUDGET_PERIODS[0])}
                        </select>
                        {err("limits.budget.period")}
                        <label for="t-rpm">"Requests per minute"</label>
                        <input id="t-rpm" name="rpm" inputmode="numeric" placeholder="optional" />
                        {err("limits.rpm")}
                    </div>
                    <button type="submit">"Create team"</button>
                </ActionForm>
            </details>
        })}
        <Suspense fallback=|| view! { <p class="loading">"Loading teams…"</p> }>
            {move || {
                let csrf = me.csrf.clone();
                Suspend::new(async move {
                    match teams.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No teams yet."</p> }.into_any(),
                        Ok(list) => {
                            let rows: Vec<TeamRow> = list.into_iter().filter(|r| shown(r, &search(), &budget())).collect();
                            if rows.is_empty() {
                                view! { <p class="empty">"No team matches."</p> }.into_any()
                            } else {
                                view! { <TeamTable rows=rows csrf=csrf editor=editor update=update /> }.into_any()
                            }
                        }
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// Whether a team passes the search (name, id or cost center, any case) and the budget filter.
fn shown(r: &TeamRow, search: &str, budget: &str) -> bool {
    let t = &r.team;
    let needle = search.trim().to_lowercase();
    let found = needle.is_empty()
        || t.name.to_lowercase().contains(&needle)
        || t.id.contains(&needle)
        || t.cost_center
            .as_deref()
            .is_some_and(|c| c.to_lowercase().contains(&needle));
    let b = t.limits.budget.as_ref();
    let spent: f64 = r.spent_usd.parse().unwrap_or(0.0);
    let past_alert = b.is_some_and(|b| {
        let limit: f64 = b.limit_usd.parse().unwrap_or(f64::INFINITY);
        spent >= limit * f64::from(b.soft_limit_pct) / 100.0
    });
    found
        && match budget {
            "set" => b.is_some(),
            "none" => b.is_none(),
            "alert" => past_alert,
            _ => true,
        }
}

#[component]
fn TeamTable(rows: Vec<TeamRow>, csrf: String, editor: bool, update: ServerAction<UpdateTeam>) -> impl IntoView {
    view! {
        <table class="keys teams">
            <thead>
                <tr>
                    <th scope="col">"Team"</th>
                    <th scope="col">"Cost center"</th>
                    <th scope="col" class="num">"Keys"</th>
                    <th scope="col">"Budget"</th>
                    <th scope="col">"Limits"</th>
                    <th scope="col"><span class="sr">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {rows
                    .into_iter()
                    .map(|r| {
                        let t = r.team.clone();
                        let l = t.limits.clone();
                        let limits = [
                            l.rpm.map(|v| format!("{v} rpm")),
                            l.tpm.map(|v| format!("{v} tpm")),
                            l.max_concurrent.map(|v| format!("{v} at once")),
                            t.store_bodies.then(|| "bodies stored".to_string()),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" · ");
                        let csrf = csrf.clone();
                        view! {
                            <tr data-team=t.id.clone()>
                                <td>{t.name.clone()} <br /> <small>{t.id.clone()}</small></td>
                                <td>{t.cost_center.clone().unwrap_or_default()}</td>
                                <td class="num"><a href=format!("/ui/keys?q={}", crate::api::enc(&t.id))>{r.keys}</a></td>
                                <td><BudgetBar budget=l.budget.clone() spent=Some(r.spent_usd.clone()) /></td>
                                <td>{if limits.is_empty() { "none".to_string() } else { limits }}</td>
                                <td>{editor.then(|| view! { <EditTeam r=r.clone() csrf=csrf update=update /> })}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn EditTeam(r: TeamRow, csrf: String, update: ServerAction<UpdateTeam>) -> impl IntoView {
    let t = r.team;
    let b = t.limits.budget.clone();
    let period = b.as_ref().map_or(BUDGET_PERIODS[0].to_string(), |b| b.period.clone());
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let tid = t.id.clone();
    let id = move |f: &str| format!("{f}-{tid}");
    let label = format!("Edit {}", t.name);
    let team_id = t.id.clone();
    // This row's form's errors, next to their fields; the form stays open while one is shown.
    let (for_err, for_open) = (t.id.clone(), t.id.clone());
    let err = move |field: &'static str| {
        let team = for_err.clone();
        move || {
            update
                .value()
                .get()
                .and_then(|r| r.err())
                .and_then(|e: UiError| e.about_on(&team, field))
                .map(|m| view! { <span class="field-error" role="alert">{m}</span> })
        }
    };
    let open = move || {
        update
            .value()
            .get()
            .and_then(|r| r.err())
            .is_some_and(|e| e.target.as_deref() == Some(for_open.as_str()) && e.param.is_some())
    };
    view! {
        <details class="edit" open=open>
            <summary aria-label=label>"Edit…"</summary>
            <ActionForm action=update>
                <input type="hidden" name="csrf" value=csrf />
                <input type="hidden" name="id" value=team_id />
                <div class="fields">
                    <label for=id("cc")>"Cost center"</label>
                    <input id=id("cc") name="cost_center" value=t.cost_center.clone().unwrap_or_default() />
                    {err("cost_center")}
                    <label for=id("budget")>"Budget (USD)"</label>
                    <input id=id("budget") name="budget_usd" inputmode="decimal" value=b.as_ref().map(|b| b.limit_usd.clone()).unwrap_or_default() placeholder="none" />
                    {err("limits.budget.limit_usd")}
                    <label for=id("period")>"Period"</label>
                    <select id=id("period") name="period">
                        {period_options(&period)}
                    </select>
                    {err("limits.budget.period")}
                    <label for=id("soft")>"Alert at (%)"</label>
                    <input id=id("soft") name="soft_limit_pct" inputmode="numeric" value=b.as_ref().map(|b| b.soft_limit_pct.to_string()).unwrap_or_else(|| "80".into()) />
                    {err("limits.budget.soft_limit_pct")}
                    <label for=id("rpm")>"Requests per minute"</label>
                    <input id=id("rpm") name="rpm" inputmode="numeric" value=num(t.limits.rpm) placeholder="no limit" />
                    {err("limits.rpm")}
                    <label for=id("tpm")>"Tokens per minute"</label>
                    <input id=id("tpm") name="tpm" inputmode="numeric" value=num(t.limits.tpm) placeholder="no limit" />
                    {err("limits.tpm")}
                    <label for=id("conc")>"In flight at once"</label>
                    <input id=id("conc") name="max_concurrent" inputmode="numeric" value=num(t.limits.max_concurrent.map(u64::from)) placeholder="no limit" />
                    {err("limits.max_concurrent")}
                    <label for=id("bodies")>"Store request bodies"</label>
                    <input id=id("bodies") name="store_bodies" type="checkbox" value="on" checked=t.store_bodies />
                    {err("store_bodies")}
                </div>
                <button type="submit">"Save"</button>
            </ActionForm>
        </details>
    }
}
