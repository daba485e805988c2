//! The frame of every signed-in page: the navigation, who is signed in, and sign-out.

use leptos::prelude::*;
use leptos_router::hooks::use_location;

use crate::api::whoami;
use crate::types::Viewer;

const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/keys", "Keys"),
    ("/ui/teams", "Teams"),
    ("/ui/usage", "Usage"),
    ("/ui/requests", "Requests"),
    ("/ui/routing", "Routing"),
    ("/ui/providers", "Providers"),
    ("/ui/audit", "Audit"),
];

/// Loads the signed-in user and renders `children` with it.
#[component]
pub fn Frame<F, V>(title: &'static str, children: F) -> impl IntoView
where
    F: Fn(Viewer) -> V + Send + Sync + Clone + 'static,
    V: IntoView + 'static,
{
    let me = Resource::new(|| (), |_| whoami());
    let here = use_location().pathname;
    view! {
        <header class="top">
            <a class="brand" href="/ui">"Switchyard"</a>
            <nav aria-label="Main">
                {NAV
                    .iter()
                    .map(|(href, label)| {
                        let current = move || (here.get() == *href).then_some("page");
                        view! {
                            <a href=*href aria-current=current>
                                {*label}
                            </a>
                        }
                    })
                    .collect_view()}
            </nav>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    me.await
                        .ok()
                        .map(|v| {
                            view! {
                                <form class="who" method="post" action="/ui/logout">
                                    <span>{v.name.clone()} " · " {v.role.as_str()}</span>
                                    <input type="hidden" name="csrf" value=v.csrf.clone() />
                                    <button type="submit" class="link">"Sign out"</button>
                                </form>
                            }
                        })
                })}
            </Suspense>
        </header>
        <main>
            <h1>{title}</h1>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {
                    let children = children.clone();
                    move || {
                        let children = children.clone();
                        Suspend::new(async move {
                            match me.await {
                                Ok(v) => children(v).into_any(),
                                Err(e) => view! {
                                    <p class="error" role="alert">{e.message} " " <a href="/ui/login">"Sign in"</a></p>
                                }
                                .into_any(),
                            }
                        })
                    }
                }
            </Suspense>
        </main>
    }
}
