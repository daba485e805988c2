//! Keys: search and filter, create (the secret is shown once, with a copy button), spend against
//! budget as a bar, and revoke; each key's name leads to its own page (`key.rs`).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::{period_options, BudgetBar, Secret, BUDGET_PERIODS};
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
            <input id="q" name="q" value=search placeholder="name, id, prefix, tag or team id" />
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
                            {period_options(BUDGET_PERIODS[0])}
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
                                <td><a href=format!("/ui/keys/{}", k.id)>{k.name.clone()}</a> <br /> <small>{k.id.clone()}</small></td>
                                <td><code>{k.prefix.clone()}</code></td>
                                <td>{k.team_id.clone().unwrap_or_default()}</td>
                                <td><span class=format!("badge {}", k.status)>{k.status.clone()}</span></td>
                                <td><BudgetBar budget=k.limits.budget.clone() spent=None /></td>
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
