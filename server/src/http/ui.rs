//! `/ui`: the dashboard. Pages are rendered by `switchyard-ui` (all data loaded before the page
//! is sent, so it works without JavaScript) and hydrated by the embedded wasm bundle.
//!
//! Every path but the sign-in page, the stylesheet and the bundle needs a session: a page
//! without one redirects to the sign-in page, a server function answers 401. Every POST must
//! come from this origin (`Origin`, `Sec-Fetch-Site`), and every change carries the session's
//! anti-forgery token. The server functions call the admin API in process, as the signed-in user.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use switchyard_ui::backend::{AdminCall, AdminReply, Backend, BoxFuture, Session};
use switchyard_ui::error::UiError;
use switchyard_ui::types::Created;

use super::admin::Actor;
use super::{AppState, Peer};
use crate::dashboard::{Dashboard, SignInError};

mod bundle {
    /// The browser bundle: its output name and its files (path under `/ui/pkg/`, bytes).
    pub struct Bundle {
        pub name: &'static str,
        pub files: &'static [(&'static str, &'static [u8])],
    }
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// The session cookie.
const COOKIE: &str = "switchyard_session";
/// Largest sign-in form.
const MAX_FORM: usize = 16 * 1024;

/// What every dashboard response carries.
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
form-action 'self'; base-uri 'none'";

struct Ui {
    dashboard: Arc<Dashboard>,
    backend: Arc<dyn Backend>,
    /// The admin API, for downloads streamed straight through.
    admin: Router,
    options: LeptosOptions,
    secure_cookie: Option<bool>,
}

/// The admin API, called in process by the dashboard's server functions.
struct InProcess {
    admin: Router,
    dashboard: Arc<Dashboard>,
}

impl Backend for InProcess {
    fn admin(&self, call: AdminCall) -> BoxFuture<AdminReply> {
        let admin = self.admin.clone();
        Box::pin(async move {
            // The admin API records its changes as this user, through the dashboard.
            let actor = Actor {
                name: call.actor,
                via: "ui",
                address: call.address,
            };
            let mut req = Request::builder().method(call.method).uri(&call.uri).extension(actor);
            if call.body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let body = call.body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
            let Ok(req) = req.body(body) else {
                return AdminReply {
                    status: 400,
                    body: br#"{"error":{"message":"invalid request"}}"#.to_vec(),
                };
            };
            let resp = match tower::ServiceExt::oneshot(admin, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            AdminReply { status, body }
        })
    }

    fn put_created(&self, session: &str, created: Created) {
        self.dashboard.put_created(session, created);
    }

    fn take_created(&self, session: &str) -> Option<Created> {
        self.dashboard.take_created(session)
    }
}

/// The `/ui` routes; none when the dashboard is disabled.
pub(super) fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let Some(dashboard) = state.dashboard.clone() else {
        return Router::new();
    };
    // Leptos runs its tasks on tokio (already set when a second gateway starts in one process).
    let _ = any_spawner::Executor::init_tokio();
    let admin = super::admin::routes(state).with_state(state.clone());
    let (name, hydrate) = match &bundle::BUNDLE {
        Some(b) => (b.name, true),
        None => ("switchyard", false),
    };
    let options = LeptosOptions::builder()
        .output_name(name)
        .site_pkg_dir("ui/pkg")
        // The bundle is embedded: nothing is read from a site directory.
        .site_root("/nonexistent")
        .build();
    let ui = Arc::new(Ui {
        backend: Arc::new(InProcess {
            admin: admin.clone(),
            dashboard: dashboard.clone(),
        }),
        admin,
        dashboard,
        options: options.clone(),
        secure_cookie: state.config.dashboard.secure_cookie,
    });
    let pages = {
        let ui = ui.clone();
        move |req: Request| page(ui.clone(), hydrate, req)
    };
    let fns = {
        let ui = ui.clone();
        move |req: Request| server_fn(ui.clone(), req)
    };
    let login_post = {
        let ui = ui.clone();
        move |req: Request| sign_in(ui.clone(), req)
    };
    let logout = {
        let ui = ui.clone();
        move |req: Request| sign_out(ui.clone(), req)
    };
    let download = {
        let ui = ui.clone();
        move |req: Request| export(ui.clone(), req)
    };
    let signed_in = Router::new()
        .route("/ui/export", get(download))
        .route("/ui", get(pages.clone()))
        .route("/ui/", get(pages.clone()))
        .route("/ui/{*rest}", get(pages.clone()))
        .route("/ui/api/{*fn}", post(fns.clone()).get(fns))
        .route("/ui/logout", post(logout))
        .layer(middleware::from_fn_with_state(ui.clone(), require_session));
    let open = Router::new()
        .route("/ui/login", get(pages).post(login_post))
        .route("/ui/style.css", get(style))
        .route("/ui/pkg/{*file}", get(asset));
    Router::new()
        .merge(signed_in)
        .merge(open)
        .layer(middleware::from_fn(same_origin))
        .layer(middleware::from_fn(security_headers))
}

async fn page(ui: Arc<Ui>, hydrate: bool, req: Request) -> Response {
    // A form posted without JavaScript comes back here with its error in the query.
    let action_error = req.uri().query().and_then(|q| {
        let mut path = None;
        let mut err = None;
        for (k, v) in form_urlencoded(q) {
            match k.as_str() {
                "__path" => path = Some(v),
                "__err" => err = Some(v),
                _ => {}
            }
        }
        Some(leptos::server::ServerActionError::new(&path?, &err?))
    });
    let backend = ui.backend.clone();
    let options = ui.options.clone();
    let handler = leptos_axum::render_app_async_with_context(
        move || {
            provide_context(backend.clone());
            if let Some(e) = action_error.clone() {
                provide_context(e);
            }
        },
        move || switchyard_ui::shell(options.clone(), hydrate),
    );
    handler(req).await
}

async fn server_fn(ui: Arc<Ui>, req: Request) -> Response {
    let backend = ui.backend.clone();
    leptos_axum::handle_server_fns_with_context(move || provide_context(backend.clone()), req)
        .await
        .into_response()
}

/// `/ui/export?…`: the usage export of exactly the filters given, streamed from the admin API
/// (`/admin/v1/usage/export`) as a download. Any signed-in user may export; the admin API
/// validates the filters (an OpenAI-shaped 400 names a bad one).
async fn export(ui: Arc<Ui>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let csv = !form_urlencoded(query)
        .into_iter()
        .any(|(k, v)| k == "format" && v == "json");
    let Ok(admin_req) = Request::get(format!("/admin/v1/usage/export?{query}")).body(Body::empty()) else {
        return ui_error(StatusCode::BAD_REQUEST, "The filters are not a valid query.");
    };
    let mut resp = match tower::ServiceExt::oneshot(ui.admin.clone(), admin_req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if resp.status().is_success() {
        let name = if csv {
            "switchyard-usage.csv"
        } else {
            "switchyard-usage.json"
        };
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

/// Pages and server functions need a live session.
async fn require_session(State(ui): State<Arc<Ui>>, mut req: Request, next: Next) -> Response {
    let secret = cookie(req.headers(), COOKIE).unwrap_or_default();
    let session = match ui.dashboard.session(&secret).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: cannot read sessions");
            return ui_error(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable.");
        }
    };
    match session {
        Some(mut s) => {
            s.address = req.extensions().get::<Peer>().map(|p| p.0.ip().to_string());
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None if req.uri().path().starts_with("/ui/api/") || req.method() != Method::GET => {
            ui_error(StatusCode::UNAUTHORIZED, "Your session has ended. Sign in again.")
        }
        None => {
            let next_url = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            redirect(&format!("/ui/login?next={}", switchyard_ui::api::enc(next_url)))
        }
    }
}

/// Refuses state-changing requests sent from another site.
async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !from_here(req.headers()) {
        tracing::warn!(path = req.uri().path(), "dashboard: cross-site request refused");
        return ui_error(StatusCode::FORBIDDEN, "Cross-site requests are refused.");
    }
    next.run(req).await
}

/// Whether a request comes from the dashboard's own pages: `Sec-Fetch-Site` (sent by current
/// browsers) is `same-origin` or `none`, and an `Origin`, when sent, names this host.
fn from_here(h: &HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            !host.is_empty() && bare == host
        }
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/ui/pkg/") || req.uri().path() == "/ui/style.css";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Same-origin requests keep their Referer: a form posted without JavaScript is sent back there.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn sign_in(ui: Arc<Ui>, req: Request) -> Response {
    let from = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0)
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let https = over_tls(req.headers());
    let form = match axum::body::to_bytes(req.into_body(), MAX_FORM).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => return redirect("/ui/login?error=The+form+is+too+large."),
    };
    let mut user = String::new();
    let mut password = String::new();
    let mut next = String::new();
    for (k, v) in form_urlencoded(&form) {
        match k.as_str() {
            "user" => user = v,
            "password" => password = v,
            "next" => next = v,
            _ => {}
        }
    }
    let back = |msg: &str| {
        let mut to = format!("/ui/login?error={}", switchyard_ui::api::enc(msg));
        if !next.is_empty() {
            to.push_str(&format!("&next={}", switchyard_ui::api::enc(&next)));
        }
        to
    };
    match ui.dashboard.sign_in(&user, &password, &from.ip().to_string()).await {
        Ok((secret, _viewer)) => {
            let mut r = redirect(safe_next(&next));
            let secure = ui.secure_cookie.unwrap_or(https);
            let cookie = format!(
                "{COOKIE}={secret}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
                ui.dashboard.session_ttl_ms() / 1000,
                if secure { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(SignInError::Wrong) => redirect(&back("Wrong user or password.")),
        Err(SignInError::Throttled(ms)) => redirect(&back(&format!(
            "Too many failed sign-ins. Try again in {} s.",
            (ms + 999) / 1000
        ))),
        Err(SignInError::Unavailable) => redirect(&back("The database is unavailable. Try again shortly.")),
    }
}

async fn sign_out(ui: Arc<Ui>, req: Request) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return ui_error(StatusCode::UNAUTHORIZED, "Not signed in.");
    };
    let form = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .unwrap_or_default();
    let form = String::from_utf8_lossy(&form);
    let token = form_urlencoded(&form)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v)
        .unwrap_or_default();
    if !session.token_matches(&token) {
        return ui_error(StatusCode::FORBIDDEN, "The form is out of date. Reload the page.");
    }
    if let Err(e) = ui.dashboard.sign_out(&session).await {
        tracing::error!(error = %e, "dashboard: cannot end the session");
        return ui_error(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable.");
    }
    let mut r = redirect("/ui/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("switchyard_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// Only a path of the dashboard itself is a place to go after signing in.
fn safe_next(next: &str) -> &str {
    let ok = (next == "/ui" || next.starts_with("/ui/") || next.starts_with("/ui?"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next.starts_with("/ui/login");
    if ok {
        next
    } else {
        "/ui"
    }
}

fn over_tls(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn style() -> Response {
    let mut r = Response::new(Body::from(switchyard_ui::STYLE));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    r
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let found = bundle::BUNDLE
        .as_ref()
        .and_then(|b| b.files.iter().find(|(name, _)| *name == file));
    let Some((name, bytes)) = found else {
        return ui_error(StatusCode::NOT_FOUND, "No such file.");
    };
    let kind = if name.ends_with(".wasm") {
        "application/wasm"
    } else if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let mut r = Response::new(Body::from(*bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The bundle's name is its content hash.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An error in the shape the dashboard's server functions use.
fn ui_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&UiError::new(status.as_u16(), message)).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = form_urlencoded("user=a+b&password=p%26q%3D&next=%2Fui%2Fkeys&bad=%zz&end=%4");
        assert_eq!(f[0], ("user".into(), "a b".into()));
        assert_eq!(f[1], ("password".into(), "p&q=".into()));
        assert_eq!(f[2], ("next".into(), "/ui/keys".into()));
        assert_eq!(f[3], ("bad".into(), "%zz".into()));
        assert_eq!(f[4], ("end".into(), "%4".into()));
    }

    #[test]
    fn only_dashboard_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/ui/keys?q=x"), "/ui/keys?q=x");
        assert_eq!(safe_next("/ui"), "/ui");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/ui//evil",
            "/admin/v1/keys",
            "/ui\\x",
            "/ui/login",
            "/uix",
        ] {
            assert_eq!(safe_next(bad), "/ui", "{bad}");
        }
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(from_here(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(from_here(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!from_here(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!from_here(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(from_here(&h));
    }
}
