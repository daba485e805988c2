//! What the dashboard's server-side tests share: a gateway with the master key, signing in,
//! pages and server functions called over HTTP as a browser or a script would.
#![allow(dead_code)]

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;
use switchyard_tests::{parse_config, standard_config, MockUpstream, TestGateway};

pub const NONE: &[(&str, &str)] = &[];

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

pub async fn gateway(extra: &str) -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n{extra}\n{}",
        standard_config(&mock.base_url())
    );
    // The real ledger writer: pages read usage back from the database.
    let gw = TestGateway::start_with_ledger(parse_config(&toml)).await;
    (mock, gw)
}

pub fn location(h: &HeaderMap) -> String {
    h.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Signs in; returns the response's headers.
pub async fn sign_in_raw(gw: &TestGateway, user: &str, password: &str, extra: &[(&str, &str)]) -> (u16, HeaderMap) {
    let mut rb =
        client()
            .post(gw.url("/ui/login"))
            .form(&[("user", user), ("password", password), ("next", "/ui/keys")]);
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// Signs in and returns the session cookie (`name=value`).
pub async fn sign_in(gw: &TestGateway, user: &str, password: &str) -> String {
    let (status, h) = sign_in_raw(gw, user, password, &[]).await;
    assert_eq!(status, 303);
    assert_eq!(location(&h), "/ui/keys", "signed in and sent where it was going");
    let set = h
        .get(SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    set.split(';').next().unwrap().to_string()
}

/// The session's anti-forgery token, read from a page's sign-out form.
pub async fn csrf_of(gw: &TestGateway, cookie: &str) -> String {
    let html = page(gw, cookie, "/ui/keys").await.1;
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

pub async fn page(gw: &TestGateway, cookie: &str, path: &str) -> (u16, String) {
    let r = client().get(gw.url(path)).header(COOKIE, cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Calls a server function as a script would (JSON answer).
pub async fn server_fn<F: serde::Serialize + ?Sized>(
    gw: &TestGateway,
    cookie: &str,
    name: &str,
    form: &F,
) -> (u16, Value) {
    let r = client()
        .post(gw.url(&format!("/ui/api/{name}")))
        .header(COOKIE, cookie)
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The text of the element with this `id` in a page (up to its first child tag).
pub fn text_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let open = at + html[at..].find('>')? + 1;
    let end = open + html[open..].find('<')?;
    Some(html[open..end].to_string())
}
