//! The audit log: who changed what, when, through what (API, CLI or this dashboard) and from
//! where, newest first, page by page.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{enc, load_audit};
use crate::layout::Frame;
use crate::time::iso;
use crate::types::AuditPage;

#[component]
pub fn Audit() -> impl IntoView {
    let q = use_query_map();
    let before = move || q.with(|q| q.get("before")).unwrap_or_default();
    let data = Resource::new(before, load_audit);
    view! {
        <Frame title="Audit log" children=move |_me| view! {
            <Transition fallback=|| view! { <p class="loading">"Loading the audit log…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(p) => view! { <Entries p=p /> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        } />
    }
}

#[component]
fn Entries(p: AuditPage) -> impl IntoView {
    if p.data.is_empty() {
        return view! { <p class="empty">"No changes recorded yet."</p> }.into_any();
    }
    let older = p.next.clone().map(|n| {
        view! { <p><a href=format!("/ui/audit?before={}", enc(&n)) id="older">"Older changes →"</a></p> }
    });
    view! {
        <table class="keys audit" id="audit-log">
            <thead>
                <tr>
                    <th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"Through"</th>
                    <th scope="col">"From"</th><th scope="col">"What"</th><th scope="col">"To"</th><th scope="col">"Sent"</th>
                </tr>
            </thead>
            <tbody>
                {p.data.into_iter().map(|e| view! {
                    <tr data-action=e.action.clone()>
                        <td>{iso(e.ts_ms).get(..19).unwrap_or_default().replace('T', " ")}</td>
                        <td>{e.actor.clone()}</td>
                        <td>{e.via.clone()}</td>
                        <td>{e.address.clone().unwrap_or_default()}</td>
                        <td>{e.action.clone()}</td>
                        <td><code>{e.target.clone().unwrap_or_default()}</code></td>
                        <td><small class="detail">{e.detail.clone().unwrap_or_default()}</small></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        {older}
    }
    .into_any()
}
