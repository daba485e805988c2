//! One file per page.

pub mod audit;
pub mod key;
pub mod keys;
pub mod login;
pub mod overview;
pub mod providers;
pub mod requests;
pub mod routing;
pub mod teams;
pub mod usage;

use leptos::prelude::*;

use crate::types::{Budget, Created};

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <main>
            <h1>"Not found"</h1>
            <p>"There is no such page. " <a href="/ui">"Back to the overview"</a></p>
        </main>
    }
}

/// A budget's periods, as the admin API names them; the first is the default.
pub const BUDGET_PERIODS: [&str; 4] = ["monthly", "weekly", "daily", "total"];

/// The `<option>`s of a budget-period select, `selected` chosen.
pub fn period_options(selected: &str) -> impl IntoView {
    let selected = selected.to_string();
    BUDGET_PERIODS
        .into_iter()
        .map(|v| view! { <option value=v selected={selected == v}>{v}</option> })
        .collect_view()
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

/// The secret of a key just made: shown once, with a copy button.
#[component]
pub(crate) fn Secret(c: Created) -> impl IntoView {
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
            <h2>"New secret for “" {c.name.clone()} "”"</h2>
            <p>"Copy the secret now: it is shown only once."</p>
            <div class="copy">
                <input id="new-secret" readonly value=c.secret.clone() aria-label="The new key's secret" />
                <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
            </div>
        </section>
    }
}

/// Spend against a budget as a bar: amber past the soft limit, red at the limit. `spent`, when
/// given, is the ledger's spend in the period; otherwise this process's view of it.
#[component]
pub(crate) fn BudgetBar(budget: Option<Budget>, spent: Option<String>) -> impl IntoView {
    match budget {
        None => view! { <span class="muted">"none"</span> }.into_any(),
        Some(b) => {
            let limit: f64 = b.limit_usd.parse().unwrap_or(0.0);
            let spent: f64 = spent
                .as_deref()
                .or(b.spent_usd_local.as_deref())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
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
