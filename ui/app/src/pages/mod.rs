//! One file per page.

pub mod keys;
pub mod login;
pub mod overview;

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <main>
            <h1>"Not found"</h1>
            <p>"There is no such page. " <a href="/ui">"Back to the overview"</a></p>
        </main>
    }
}

/// USD from a decimal string such as `"12.500000000"`, shown to the cent (or to 4 places below a cent).
pub fn usd(s: &str) -> String {
    let v: f64 = s.parse().unwrap_or(0.0);
    if v != 0.0 && v.abs() < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}
