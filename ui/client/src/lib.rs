//! The dashboard in the browser: hydrates the server-rendered page.
//!
//! Built only for `wasm32-unknown-unknown` (by `server/build.rs`); on other targets it is empty.

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(switchyard_ui::App);
}
