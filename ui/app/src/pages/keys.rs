//! Keys: search and filter, create (the secret is shown once, with a copy button), spend against
//! budget as a bar, and revoke.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::usd;
use crate::api::{list_keys, take_created, CreateKey, RevokeKey};
use crate::error::UiError;
use crate::layout::Frame;
use crate::types::{Created, Key, Viewer};

/// The page's data and actions, made once per page (the frame may render its body again).
#[derive(Clone, Copy)]
struct Data {
    create: ServerAction<CreateKey>,
    revoke: ServerAction<RevokeKey>,
    keys: Resource<Result<Vec<Key>, UiError>>,
    flashed: Resource<Result<Option<Created>, UiError>>,
}

#[component]
pub fn Keys() -> impl IntoView {
    let q = use_query_map();
    let search = move || q.with(|q| q.get("q")).unwrap_or_default();
    let status = move || q.with(|q| q.get("status")).unwrap_or_default();
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let keys = Resource::new(
        move || (search(), status(), create.version().get(), revoke.version().get()),
        |(s, st, _, _)| list_keys(s, st),
    );
    let flashed = Resource::new(|| (), |_| take_created());
    let data = Data {
        create,
        revoke,
        keys,
        flashed,
    };
    view! { <Frame title="Keys" children=move |me| view! { <KeysBody me=me data=data /> } /> }
}

#[component]
fn KeysBody(me: Viewer, data: Data) -> impl IntoView {
    let q = use_query_map();
    let search = move || q.with(|q| q.get("q")).unwrap_or_default();
    let status = move || q.with(|q| q.get("status")).unwrap_or_default();
    let Data {
        create,
        revoke,
        keys,
        flashed,
    } = data;
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
    let general_error = move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .filter(|e| e.param.is_none())
            .map(|e| view! { <p class="error" role="alert">{e.message}</p> })
    };
    view! {
        <form method="get" action="/ui/keys" class="filters" role="search">
            <label for="q">"Search"</label>
            <input id="q" name="q" value=search placeholder="name, id, prefix or tag" />
            <label for="status">"Status"</label>
            <select id="status" name="status">
                {["", "active", "disabled", "revoked"]
                    .into_iter()
                    .map(|s| view! { <option value=s selected=move || status() == s>{if s.is_empty() { "any" } else { s }}</option> })
                    .collect_view()}
            </select>
            <button type="submit">"Filter"</button>
        </form>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let from_form = create.value().get().and_then(Result::ok);
                let flashed = flashed.await.ok().flatten();
                let shown = from_form.or(flashed);
                shown.map(|c| view! { <Secret c=c /> })
            })}
        </Suspense>
        {editor.then(|| view! {
            <details class="card" open=move || create.value().get().is_some_and(|r| r.is_err())>
                <summary>"Create a key"</summary>
                <ActionForm action=create>
                    <input type="hidden" name="csrf" value=csrf.clone() />
                    <div class="fields">
                        <label for="new-name">"Name"</label>
                        <input id="new-name" name="name" required maxlength="128" />
                        {err("name")}
                        <label for="new-team">"Team id"</label>
                        <input id="new-team" name="team_id" placeholder="optional" />
                        {err("team_id")}
                        <label for="new-tags">"Tags"</label>
                        <input id="new-tags" name="tags" placeholder="comma-separated, optional" />
                        {err("tags")}
                        <label for="new-budget">"Budget (USD)"</label>
                        <input id="new-budget" name="budget_usd" inputmode="decimal" placeholder="optional, e.g. 25.00" />
                        {err("limits.budget.limit_usd")}
                        <label for="new-period">"Budget period"</label>
                        <select id="new-period" name="period">
                            <option value="monthly">"monthly"</option>
                            <option value="weekly">"weekly"</option>
                            <option value="daily">"daily"</option>
                            <option value="total">"total"</option>
                        </select>
                        {err("limits.budget.period")}
                        <label for="new-rpm">"Requests per minute"</label>
                        <input id="new-rpm" name="rpm" inputmode="numeric" placeholder="optional" />
                        {err("limits.rpm")}
                    </div>
                    {general_error}
                    <button type="submit">"Create key"</button>
                </ActionForm>
            </details>
        })}
        <Suspense fallback=|| view! { <p class="loading">"Loading keys…"</p> }>
            {move || {
                let csrf = me.csrf.clone();
                Suspend::new(async move {
                    match keys.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No keys match."</p> }.into_any(),
                        Ok(list) => view! { <KeyTable keys=list csrf=csrf editor=editor revoke=revoke /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The secret of a key just made: shown once, with a copy button.
#[component]
fn Secret(c: Created) -> impl IntoView {
    let secret = c.secret.clone();
    let copied = RwSignal::new(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            if let Some(w) = web_sys::window() {
                let _ = w.navigator().clipboard().write_text(&secret);
                copied.set(true);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &secret;
    };
    view! {
        <section class="card secret" aria-live="polite">
            <h2>"Key “" {c.name.clone()} "” created"</h2>
            <p>"Copy the secret now: it is shown only once."</p>
            <div class="copy">
                <input id="new-secret" readonly value=c.secret.clone() aria-label="The new key's secret" />
                <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
            </div>
        </section>
    }
}

#[component]
fn KeyTable(keys: Vec<Key>, csrf: String, editor: bool, revoke: ServerAction<RevokeKey>) -> impl IntoView {
    view! {
        <table class="keys">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Prefix"</th>
                    <th scope="col">"Team"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Budget"</th>
                    <th scope="col"><span class="sr">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {keys
                    .into_iter()
                    .map(|k| {
                        let csrf = csrf.clone();
                        let live = k.status != "revoked";
                        let id = k.id.clone();
                        view! {
                            <tr data-key=k.id.clone()>
                                <td>{k.name.clone()} <br /> <small>{k.id.clone()}</small></td>
                                <td><code>{k.prefix.clone()}</code></td>
                                <td>{k.team_id.clone().unwrap_or_default()}</td>
                                <td><span class=format!("badge {}", k.status)>{k.status.clone()}</span></td>
                                <td><BudgetBar k=k.clone() /></td>
                                <td>
                                    // Revoking asks once more: the button is inside a disclosure.
                                    {(editor && live).then(|| view! {
                                        <details class="confirm">
                                            <summary class="danger" aria-label=format!("Revoke {}…", k.name)>"Revoke…"</summary>
                                            <ActionForm action=revoke>
                                                <input type="hidden" name="csrf" value=csrf />
                                                <input type="hidden" name="id" value=id />
                                                <p>"Requests with this key will be refused at once. This cannot be undone."</p>
                                                <button type="submit" class="danger">"Revoke now"</button>
                                            </ActionForm>
                                        </details>
                                    })}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// Spend against budget as a bar (the spend is this process's view of the period).
#[component]
fn BudgetBar(k: Key) -> impl IntoView {
    match k.limits.budget {
        None => view! { <span class="muted">"none"</span> }.into_any(),
        Some(b) => {
            let limit: f64 = b.limit_usd.parse().unwrap_or(0.0);
            let spent: f64 = b.spent_usd_local.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let pct = if limit > 0.0 {
                (spent / limit * 100.0).clamp(0.0, 100.0)
            } else {
                100.0
            };
            let class = if pct >= 100.0 {
                "bar over"
            } else if pct >= f64::from(b.soft_limit_pct) {
                "bar warn"
            } else {
                "bar"
            };
            view! {
                <div class=class role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")
                    aria-label=format!("{} of {} {}", usd(&spent.to_string()), usd(&b.limit_usd), b.period)>
                    <span style=format!("width:{pct:.1}%")></span>
                </div>
                <small>{usd(&spent.to_string())} " of " {usd(&b.limit_usd)} " " {b.period.clone()}</small>
            }
            .into_any()
        }
    }
}
