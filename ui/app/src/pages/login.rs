//! Sign-in: a plain form posted to `/ui/login` (checked by the server, slowed down after failures).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub fn Login() -> impl IntoView {
    let q = use_query_map();
    let error = move || q.with(|q| q.get("error"));
    let next = move || q.with(|q| q.get("next")).unwrap_or_default();
    view! {
        <main class="login">
            <h1>"Sign in to Switchyard"</h1>
            <form method="post" action="/ui/login" class="card">
                <input type="hidden" name="next" value=next />
                <label for="user">"User"</label>
                <input id="user" name="user" autocomplete="username" placeholder="Leave empty to use the master key" />
                <label for="password">"Password or master key"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required />
                {move || error().map(|e| view! { <p class="error" role="alert" id="login-error">{e}</p> })}
                <button type="submit">"Sign in"</button>
            </form>
        </main>
    }
}
