//! What the server gives the dashboard (server side only): the admin API, called in process
//! with the signed-in user as the actor, and one-time messages kept with the session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use leptos::prelude::*;
use serde::de::DeserializeOwned;

use crate::error::UiError;
use crate::types::{Created, Viewer};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One call of the admin API.
#[derive(Clone, Debug)]
pub struct AdminCall {
    pub method: http::Method,
    /// Path and query, e.g. `/admin/v1/keys`.
    pub uri: String,
    pub body: Option<serde_json::Value>,
    /// Who asks: the dashboard user's name.
    pub actor: String,
    /// From where: the browser's address.
    pub address: Option<String>,
}

/// Its answer: the status and the JSON body.
#[derive(Clone, Debug)]
pub struct AdminReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The server side of the dashboard, provided as context to every page and server function.
pub trait Backend: Send + Sync + 'static {
    fn admin(&self, call: AdminCall) -> BoxFuture<AdminReply>;
    /// Keeps a new secret for the session's next page (forms posted without JavaScript).
    fn put_created(&self, session: &str, created: Created);
    fn take_created(&self, session: &str) -> Option<Created>;
}

/// The signed-in session, put in the request's extensions by the server's session check.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session's server-side handle (never sent to the page).
    pub id: String,
    pub viewer: Viewer,
    /// The browser's address, for the audit log.
    pub address: Option<String>,
}

/// Gives the response the error's status (a server function's errors are 500 otherwise). A
/// form posted without JavaScript keeps its redirect back to the page, which shows the error.
pub(crate) fn fail(e: UiError) -> UiError {
    if plain_form() {
        return e;
    }
    if let Some(r) = use_context::<leptos_axum::ResponseOptions>() {
        if let Ok(s) = http::StatusCode::from_u16(e.status) {
            r.set_status(s);
        }
    }
    e
}

impl Session {
    /// Whether a form's anti-forgery token is the session's, compared in time that depends only
    /// on the lengths.
    pub fn token_matches(&self, token: &str) -> bool {
        same(token.as_bytes(), self.viewer.csrf.as_bytes())
    }
}

pub(crate) fn backend() -> Result<Arc<dyn Backend>, UiError> {
    use_context::<Arc<dyn Backend>>().ok_or_else(|| UiError::new(500, "the dashboard backend is missing"))
}

pub(crate) fn session() -> Result<Session, UiError> {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Session>().cloned())
        .ok_or_else(|| fail(UiError::new(401, "Your session has ended. Sign in again.")))
}

/// The session of a user who may change things, after checking the form's anti-forgery token.
pub(crate) fn editor(csrf: &str) -> Result<Session, UiError> {
    let s = session()?;
    if !s.token_matches(csrf) {
        return Err(fail(UiError::new(
            403,
            "The form is out of date or was not sent from this dashboard. Reload the page and try again.",
        )));
    }
    if !s.viewer.can_edit() {
        return Err(fail(UiError::new(
            403,
            "Your role is viewer: you can look, not change.",
        )));
    }
    Ok(s)
}

/// Compares two tokens in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the current request is a plain form post (no JavaScript): it then gets a redirect.
pub(crate) fn plain_form() -> bool {
    use_context::<http::request::Parts>()
        .and_then(|p| p.headers.get(http::header::ACCEPT).cloned())
        .and_then(|v| v.to_str().ok().map(|s| s.contains("text/html")))
        .unwrap_or(false)
}

/// Calls the admin API as the session's user and reads its JSON answer; an error answer also
/// becomes the response's status.
pub(crate) async fn call<T: DeserializeOwned>(
    method: http::Method,
    uri: String,
    body: Option<serde_json::Value>,
) -> Result<T, UiError> {
    ask(method, uri, body).await.map_err(fail)
}

/// [`call`], leaving the response's status alone: for an answer the page handles itself (a
/// 404 that means "none").
pub(crate) async fn ask<T: DeserializeOwned>(
    method: http::Method,
    uri: String,
    body: Option<serde_json::Value>,
) -> Result<T, UiError> {
    let s = session()?;
    let reply = backend()?
        .admin(AdminCall {
            method,
            uri,
            body,
            actor: s.viewer.name.clone(),
            address: s.address.clone(),
        })
        .await;
    if (200..300).contains(&reply.status) {
        return serde_json::from_slice(&reply.body)
            .map_err(|e| UiError::new(500, format!("unexpected answer from the admin API: {e}")));
    }
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let e = &v["error"];
    Err(UiError {
        message: e["message"].as_str().unwrap_or("The request failed.").to_string(),
        param: e["param"].as_str().map(str::to_string),
        status: reply.status,
        target: None,
    })
}

pub(crate) async fn get<T: DeserializeOwned>(uri: String) -> Result<T, UiError> {
    call(http::Method::GET, uri, None).await
}
