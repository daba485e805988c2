//! Switchyard's admin dashboard, written with Leptos: pages rendered on the server (every page
//! and form works without JavaScript) and hydrated in the browser by the `ui/client` bundle.
//!
//! - [`types`]: what the pages show; [`error`]: the one error type of every call;
//! - [`api`]: the server functions (session, role and anti-forgery checks, then the admin API);
//! - `backend` (server only): what the server provides: the admin API in process, sessions;
//! - [`chart`]: SVG charts as text; [`time`]: UTC times as text; `pages`: one file per page;
//!   `layout`: the frame around them.

pub mod api;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod chart;
pub mod error;
mod layout;
mod pages;
pub mod time;
pub mod types;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The stylesheet, served at `/ui/style.css`.
pub const STYLE: &str = include_str!("style.css");

/// The whole page: the document around [`App`], with the hydration script when a bundle is built.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions, hydrate: bool) -> impl IntoView {
    use leptos::hydration::HydrationScripts;
    use leptos_meta::MetaTags;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="stylesheet" href="/ui/style.css" />
                {hydrate.then(|| view! { <HydrationScripts options=options.clone() /> })}
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser: this marks the page as hydrated (tests wait for it).
    Effect::new(|_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title text="Switchyard" />
        <Router>
            <Routes fallback=|| view! { <pages::NotFound /> }>
                <Route path=path!("/ui/login") view=pages::login::Login />
                <Route path=path!("/ui") view=pages::overview::Overview />
                <Route path=path!("/ui/keys") view=pages::keys::Keys />
                <Route path=path!("/ui/keys/:id") view=pages::key::KeyDetail />
                <Route path=path!("/ui/teams") view=pages::teams::Teams />
                <Route path=path!("/ui/usage") view=pages::usage::Usage />
                <Route path=path!("/ui/requests") view=pages::requests::Requests />
                <Route path=path!("/ui/requests/:id") view=pages::requests::RequestDetail />
                <Route path=path!("/ui/routing") view=pages::routing::Routing />
                <Route path=path!("/ui/providers") view=pages::providers::Providers />
                <Route path=path!("/ui/audit") view=pages::audit::Audit />
            </Routes>
        </Router>
    }
}
