//! One key: its last 30 days (requests, spend, latency, errors, spend per day), its budget as a
//! bar with its alerts, and, for admins, every setting to change, disable or enable, rotate
//! (the new secret is shown once) and revoke, each destructive action behind a confirmation.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{period_options, usd, BudgetBar, Secret, BUDGET_PERIODS};
use crate::api::{load_key, take_created, RevokeKey, RotateKey, SetKeyStatus, UpdateKey};
use crate::chart::{bars, Bar};
use crate::error::UiError;
use crate::layout::Frame;
use crate::types::{Created, KeyPage, Viewer};

#[derive(Clone, Copy)]
struct Data {
    update: ServerAction<UpdateKey>,
    status: ServerAction<SetKeyStatus>,
    rotate: ServerAction<RotateKey>,
    revoke: ServerAction<RevokeKey>,
    page: Resource<Result<KeyPage, UiError>>,
    flashed: Resource<Result<Option<Created>, UiError>>,
}

#[component]
pub fn KeyDetail() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id")).unwrap_or_default();
    let update = ServerAction::<UpdateKey>::new();
    let status = ServerAction::<SetKeyStatus>::new();
    let rotate = ServerAction::<RotateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let page = Resource::new(
        move || {
            (
                id(),
                update.version().get(),
                status.version().get(),
                rotate.version().get(),
                revoke.version().get(),
            )
        },
        |(id, ..)| load_key(id),
    );
    let flashed = Resource::new(|| (), |_| take_created());
    let data = Data {
        update,
        status,
        rotate,
        revoke,
        page,
        flashed,
    };
    view! { <Frame title="Key" children=move |me| view! { <KeyBody me=me data=data /> } /> }
}

#[component]
fn KeyBody(me: Viewer, data: Data) -> impl IntoView {
    let Data {
        rotate, page, flashed, ..
    } = data;
    view! {
        <p><a href="/ui/keys">"← All keys"</a></p>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let from_form = rotate.value().get().and_then(Result::ok);
                let shown = from_form.or(flashed.await.ok().flatten());
                shown.map(|c| view! { <Secret c=c /> })
            })}
        </Suspense>
        <Suspense fallback=|| view! { <p class="loading">"Loading the key…"</p> }>
            {move || {
                let me = me.clone();
                Suspend::new(async move {
                    match page.await {
                        Ok(p) => view! { <KeyView p=p me=me data=data /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

#[component]
fn KeyView(p: KeyPage, me: Viewer, data: Data) -> impl IntoView {
    let k = p.key.clone();
    let t = &p.summary.totals;
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_string(), |v| format!("{v} ms"));
    let spend: Vec<Bar> = p
        .series
        .iter()
        .map(|g| Bar {
            label: g.group.get(..10).unwrap_or(&g.group).to_string(),
            value: g.totals.cost_nanos as f64 / 1e9,
        })
        .collect();
    let editable = me.can_edit() && k.status != "revoked";
    view! {
        <section class="card" id="key-head">
            <h2>{k.name.clone()} " " <span class=format!("badge {}", k.status)>{k.status.clone()}</span></h2>
            <p class="muted">
                <code>{k.prefix.clone()} "…"</code> " · " {k.id.clone()} " · created " {k.created_at.get(..10).unwrap_or_default().to_string()}
                {k.rotated_at.clone().map(|r| format!(" · rotated {}", r.get(..10).unwrap_or_default()))}
            </p>
            <BudgetBar budget=k.limits.budget.clone() spent=p.period_spent_usd.clone() />
        </section>
        <section class="cards" aria-label="Last 30 days">
            <div class="card stat"><span class="label">"Requests, 30 days"</span><span class="value" id="key-requests">{t.requests}</span></div>
            <div class="card stat"><span class="label">"Spend, 30 days"</span><span class="value" id="key-spend">{usd(&t.cost_usd)}</span></div>
            <div class="card stat"><span class="label">"Latency p50 / p95"</span><span class="value">{ms(p.summary.latency.p50_ms)} " / " {ms(p.summary.latency.p95_ms)}</span></div>
            <div class="card stat"><span class="label">"Errors"</span><span class="value">{t.errors}</span></div>
        </section>
        <section class="card">
            <h2>"Spend per day"</h2>
            <div inner_html=bars("Spend per day", &spend, |v| format!("${v:.4}"))></div>
        </section>
        <section class="card" id="alerts">
            <h2>"Budget alerts"</h2>
            {if p.alerts.is_empty() {
                view! { <p class="empty">"No alerts for this key."</p> }.into_any()
            } else {
                view! {
                    <table>
                        <thead><tr><th scope="col">"When"</th><th scope="col">"Kind"</th><th scope="col" class="num">"Spent"</th><th scope="col" class="num">"Limit"</th></tr></thead>
                        <tbody>
                            {p.alerts.iter().map(|a| view! {
                                <tr>
                                    <td>{a.at.get(..16).unwrap_or(&a.at).replace('T', " ")}</td>
                                    <td>{if a.kind == "hard" { "limit reached" } else { "soft limit passed" }}</td>
                                    <td class="num">{usd(&a.spent_usd)}</td>
                                    <td class="num">{usd(&a.limit_usd)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
        {if editable {
            view! { <EditKey p=p.clone() csrf=me.csrf.clone() data=data /> }.into_any()
        } else {
            view! { <ReadKey p=p.clone() /> }.into_any()
        }}
    }
}

/// The settings, read only (viewers, and revoked keys).
#[component]
fn ReadKey(p: KeyPage) -> impl IntoView {
    let k = p.key;
    let or_none = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "–".into());
    let l = &k.limits;
    view! {
        <section class="card" id="settings">
            <h2>"Settings"</h2>
            <dl class="fields">
                <dt>"Team"</dt><dd>{or_none(k.team_id.clone())}</dd>
                <dt>"Cost center"</dt><dd>{or_none(k.cost_center.clone())}</dd>
                <dt>"Tags"</dt><dd>{or_none(Some(k.tags.join(", ")))}</dd>
                <dt>"Allowed models"</dt><dd>{k.allowed_models.as_ref().map_or_else(|| "all".to_string(), |m| m.join(", "))}</dd>
                <dt>"Routing preference"</dt><dd>{or_none(k.route_prefer.clone())}</dd>
                <dt>"Expires"</dt><dd>{or_none(k.expires_at.clone())}</dd>
                <dt>"Requests per minute"</dt><dd>{or_none(l.rpm.map(|v| v.to_string()))}</dd>
                <dt>"Tokens per minute"</dt><dd>{or_none(l.tpm.map(|v| v.to_string()))}</dd>
                <dt>"In flight at once"</dt><dd>{or_none(l.max_concurrent.map(|v| v.to_string()))}</dd>
                <dt>"Stored bodies"</dt><dd>{if k.store_bodies { "on" } else { "off" }}</dd>
            </dl>
        </section>
    }
}

#[component]
fn EditKey(p: KeyPage, csrf: String, data: Data) -> impl IntoView {
    let Data {
        update,
        status,
        rotate,
        revoke,
        ..
    } = data;
    let k = p.key;
    let err = move |field: &'static str| {
        move || {
            update
                .value()
                .get()
                .and_then(|r| r.err())
                .and_then(|e: UiError| e.about(field))
                .map(|m| view! { <span class="field-error" role="alert">{m}</span> })
        }
    };
    let general = move || {
        let problem = |e: UiError| e.param.is_none().then_some(e.message);
        update
            .value()
            .get()
            .and_then(|r| r.err())
            .and_then(problem)
            .or_else(|| status.value().get().and_then(|r| r.err()).and_then(problem))
            .or_else(|| rotate.value().get().and_then(|r| r.err()).and_then(problem))
            .map(|m| view! { <p class="error" role="alert">{m}</p> })
    };
    let saved = move || {
        update
            .value()
            .get()
            .is_some_and(|r| r.is_ok())
            .then(|| view! { <p class="ok" role="status">"Saved."</p> })
    };
    let budget = k.limits.budget.clone();
    let period = budget
        .as_ref()
        .map_or(BUDGET_PERIODS[0].to_string(), |b| b.period.clone());
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let prefer = k.route_prefer.clone().unwrap_or_default();
    // Each form's children own their copies.
    let (csrf1, csrf2, csrf3, csrf4) = (csrf.clone(), csrf.clone(), csrf.clone(), csrf);
    let (id1, id2, id3, id4) = (k.id.clone(), k.id.clone(), k.id.clone(), k.id.clone());
    let (next_status, toggle_label) = if k.status == "disabled" {
        ("active", "Enable the key")
    } else {
        ("disabled", "Disable the key")
    };
    view! {
        <section class="card" id="settings">
            <h2>"Settings"</h2>
            <ActionForm action=update>
                <input type="hidden" name="csrf" value=csrf4 />
                <input type="hidden" name="id" value=id1 />
                <div class="fields">
                    <label for="k-name">"Name"</label>
                    <input id="k-name" name="name" required maxlength="128" value=k.name.clone() />
                    {err("name")}
                    <label for="k-team">"Team id"</label>
                    <input id="k-team" name="team_id" value=k.team_id.clone().unwrap_or_default() placeholder="none" />
                    {err("team_id")}
                    <label for="k-cc">"Cost center"</label>
                    <input id="k-cc" name="cost_center" value=k.cost_center.clone().unwrap_or_default() placeholder="the team's" />
                    {err("cost_center")}
                    <label for="k-tags">"Tags"</label>
                    <input id="k-tags" name="tags" value=k.tags.join(", ") placeholder="comma-separated" />
                    {err("tags")}
                    <label for="k-models">"Allowed models"</label>
                    <input id="k-models" name="allowed_models" value=k.allowed_models.clone().map(|m| m.join(", ")).unwrap_or_default() placeholder="all; or comma-separated models and routes" />
                    {err("allowed_models")}
                    <label for="k-prefer">"Routing preference"</label>
                    <select id="k-prefer" name="route_prefer">
                        {["", "cost", "balanced", "quality"]
                            .into_iter()
                            .map(|v| view! { <option value=v selected={prefer == v}>{if v.is_empty() { "default (balanced)" } else { v }}</option> })
                            .collect_view()}
                    </select>
                    {err("route_prefer")}
                    <label for="k-expires">"Expires"</label>
                    <input id="k-expires" name="expires_at" type="date" value=k.expires_at.clone().map(|e| e.get(..10).unwrap_or_default().to_string()).unwrap_or_default() />
                    {err("expires_at")}
                    <label for="k-budget">"Budget (USD)"</label>
                    <input id="k-budget" name="budget_usd" inputmode="decimal" value=budget.as_ref().map(|b| b.limit_usd.clone()).unwrap_or_default() placeholder="none" />
                    {err("limits.budget.limit_usd")}
                    <label for="k-period">"Budget period"</label>
                    <select id="k-period" name="period">
                        {period_options(&period)}
                    </select>
                    {err("limits.budget.period")}
                    <label for="k-soft">"Alert at (% of budget)"</label>
                    <input id="k-soft" name="soft_limit_pct" inputmode="numeric" value=budget.as_ref().map(|b| b.soft_limit_pct.to_string()).unwrap_or_else(|| "80".into()) />
                    {err("limits.budget.soft_limit_pct")}
                    <label for="k-rpm">"Requests per minute"</label>
                    <input id="k-rpm" name="rpm" inputmode="numeric" value=num(k.limits.rpm) placeholder="no limit" />
                    {err("limits.rpm")}
                    <label for="k-tpm">"Tokens per minute"</label>
                    <input id="k-tpm" name="tpm" inputmode="numeric" value=num(k.limits.tpm) placeholder="no limit" />
                    {err("limits.tpm")}
                    <label for="k-conc">"In flight at once"</label>
                    <input id="k-conc" name="max_concurrent" inputmode="numeric" value=num(k.limits.max_concurrent.map(u64::from)) placeholder="no limit" />
                    {err("limits.max_concurrent")}
                    <label for="k-bodies">"Store request bodies"</label>
                    <span class="check">
                        <input id="k-bodies" name="store_bodies" type="checkbox" value="on" checked=k.store_bodies aria-describedby="k-bodies-help" />
                        <small id="k-bodies-help" class="muted">"Keep this key's prompts and answers in the request log, redacted, cut and expired as configured."</small>
                    </span>
                    {err("store_bodies")}
                </div>
                {general}
                {saved}
                <button type="submit">"Save"</button>
            </ActionForm>
        </section>
        <section class="card actions" id="key-actions">
            <h2>"Actions"</h2>
            <ActionForm action=status>
                <input type="hidden" name="csrf" value=csrf1 />
                <input type="hidden" name="id" value=id2 />
                <input type="hidden" name="status" value=next_status />
                <button type="submit" id="toggle-status">{toggle_label}</button>
            </ActionForm>
            <details class="confirm">
                <summary>"Rotate the secret…"</summary>
                <ActionForm action=rotate>
                    <input type="hidden" name="csrf" value=csrf2 />
                    <input type="hidden" name="id" value=id3 />
                    <p>"The current secret stops working at once; the new one is shown once."</p>
                    <button type="submit" class="danger">"Rotate now"</button>
                </ActionForm>
            </details>
            <details class="confirm">
                <summary>"Revoke…"</summary>
                <ActionForm action=revoke>
                    <input type="hidden" name="csrf" value=csrf3 />
                    <input type="hidden" name="id" value=id4 />
                    <p>"Requests with this key will be refused at once. This cannot be undone."</p>
                    <button type="submit" class="danger">"Revoke now"</button>
                </ActionForm>
            </details>
        </section>
    }
}
