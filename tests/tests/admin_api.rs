//! The admin API's OpenAPI document describes what the admin API really answers: every
//! documented operation is called here, and each answer is checked against the schema the
//! document gives for its status, with objects closed (a field the document does not name fails).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use switchyard::router::cascade::fits;
use switchyard_tests::{parse_config, standard_config, MockUpstream, TestGateway, TEST_MASTER_KEY};

/// Replaces every `$ref` by what it names (siblings of a `$ref` are annotations and dropped),
/// merges `allOf` parts into one object, and closes every object that lists its properties.
fn resolve(doc: &Value, schema: &Value, depth: usize) -> Value {
    assert!(depth < 40, "the schema nests too deep (a reference cycle?)");
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{r} names no schema");
        return resolve(doc, target, depth + 1);
    }
    let mut out = Map::new();
    for (k, v) in obj {
        let v = match k.as_str() {
            "properties" => Value::Object(
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, s)| (name.clone(), resolve(doc, s, depth + 1)))
                    .collect(),
            ),
            "items" | "additionalProperties" => resolve(doc, v, depth + 1),
            "allOf" | "oneOf" | "anyOf" => Value::Array(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| resolve(doc, s, depth + 1))
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if let Some(Value::Array(parts)) = out.remove("allOf") {
        let mut props = Map::new();
        let mut required = Vec::new();
        for p in &parts {
            assert!(
                p.get("properties").is_some(),
                "an allOf part without properties cannot be merged: {p}"
            );
            props.extend(p["properties"].as_object().unwrap().clone());
            required.extend(p["required"].as_array().cloned().unwrap_or_default());
        }
        out.insert("type".into(), json!("object"));
        out.insert("properties".into(), Value::Object(props));
        out.insert("required".into(), Value::Array(required));
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

/// Every `$ref` anywhere in the document names a schema it defines.
fn assert_refs_resolve(doc: &Value, v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "{at}: {r} names no schema"
                );
            }
            for (k, x) in m {
                assert_refs_resolve(doc, x, &format!("{at}/{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_refs_resolve(doc, x, at)),
        _ => {}
    }
}

/// Calls the admin API and checks the answer against the document.
struct Checked {
    doc: Value,
    client: reqwest::Client,
    base: String,
    seen: BTreeSet<(String, String)>,
}

impl Checked {
    /// [`Checked::call`] with the master key.
    async fn go(&mut self, method: &str, template: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, template, path, body, true).await
    }

    /// `template` is the documented path (e.g. `/admin/v1/keys/{id}`), `path` the one called
    /// (with its query). Returns the status and the JSON body (or the text, for text/csv).
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut rb = self.client.request(m, format!("{}{path}", self.base));
        if auth {
            rb = rb.bearer_auth(TEST_MASTER_KEY);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            r.headers().contains_key("x-request-id"),
            "{method} {path}: no x-request-id"
        );
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let answer = &op["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{method} {path} answered {status}, which the document does not list: {text}"
        );
        let media = content_type.split(';').next().unwrap().trim().to_string();
        let schema = &answer["content"][&media]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} answered {status} as {media}, which the document does not describe"
        );
        let value = if media == "application/json" {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        } else {
            Value::String(text)
        };
        let resolved = resolve(&self.doc, schema, 0);
        if let Err(e) = fits(&value, &resolved, 0) {
            panic!("{method} {path} → {status}: the answer does not fit the document: {e}\n{value:#}");
        }
        if (200..300).contains(&status) {
            self.seen.insert((method.to_string(), template.to_string()));
        }
        (status, value)
    }
}

const EXTRA_ROUTES: &str = r#"
[routes.ab]
cheap = "chat"
strong = "claude"
strong_share = 0.0
experiment = { candidate = "ab-v2", percent = 50, by = "key" }
shadow = "ab-v2"

[routes.ab-v2]
cheap = "chat"
strong = "claude"
strong_share = 1.0
"#;

#[tokio::test]
async fn every_admin_answer_fits_the_openapi_document() {
    let mock = MockUpstream::start().await;
    let mut cfg = parse_config(&format!(
        "{}{EXTRA_ROUTES}\n[ledger]\nflush_interval_ms = 20\nbudget_flush_ms = 50\n\
         [billing]\nurl = \"http://127.0.0.1:9\"\napi_key_env = \"TEST_MASTER_KEY\"\nbackoff_ms = 10\nmax_backoff_secs = 1\n",
        standard_config(&mock.base_url())
    ));
    cfg.auth.master_key = Some(switchyard::config::Secret::new(TEST_MASTER_KEY));
    let gw = TestGateway::start_with_ledger(cfg).await;

    let client = reqwest::Client::new();
    let doc: Value = client
        .get(gw.url("/admin/v1/openapi.json"))
        .bearer_auth(TEST_MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_refs_resolve(&doc, &doc, "#");
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(operation_ids.insert(id.clone()), "operationId {id} is used twice");
            assert!(op["responses"]["401"].is_object(), "{method} {path}: no 401");
        }
    }
    let mut api = Checked {
        doc,
        client: client.clone(),
        base: gw.url(""),
        seen: BTreeSet::new(),
    };
    api.go("get", "/admin/v1/openapi.json", "/admin/v1/openapi.json", None)
        .await;
    // Teams.
    let (s, team) = api.go(
        "post",
        "/admin/v1/teams",
        "/admin/v1/teams",
        Some(json!({"name": "research", "cost_center": "cc-1", "limits": {"rpm": 600, "budget": {"limit_usd": "50", "period": "monthly", "soft_limit_pct": 80}}})),
    )
    .await;
    assert_eq!(s, 201, "{team}");
    let team_id = team["id"].as_str().unwrap().to_string();
    let (s, other) = api
        .go(
            "post",
            "/admin/v1/teams",
            "/admin/v1/teams",
            Some(json!({"name": "short-lived"})),
        )
        .await;
    assert_eq!(s, 201);
    let other_id = other["id"].as_str().unwrap().to_string();
    let (s, _) = api.go("get", "/admin/v1/teams", "/admin/v1/teams", None).await;
    assert_eq!(s, 200);
    let team_path = format!("/admin/v1/teams/{team_id}");
    assert_eq!(api.go("get", "/admin/v1/teams/{id}", &team_path, None).await.0, 200);
    let (s, patched) = api
        .go(
            "patch",
            "/admin/v1/teams/{id}",
            &team_path,
            Some(json!({"limits": {"tpm": 100000}})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    let (s, gone) = api
        .go(
            "delete",
            "/admin/v1/teams/{id}",
            &format!("/admin/v1/teams/{other_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{gone}");

    // Keys: one in the team, one with a budget small enough to raise alerts, one to revoke.
    let (s, key) = api.go(
        "post",
        "/admin/v1/keys",
        "/admin/v1/keys",
        Some(json!({"name": "app", "team_id": team_id, "tags": ["prod"], "allowed_models": ["chat", "careful", "ab", "ab-v2", "claude", "embed"]})),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let key_id = key["id"].as_str().unwrap().to_string();
    // The check bites: an extra field, a missing one or a wrong type does not fit.
    let key_schema = resolve(&api.doc, &api.doc["components"]["schemas"]["KeyWithSecret"], 0);
    assert!(fits(&key, &key_schema, 0).is_ok());
    for broken in [
        json!({"bogus": 1}),
        json!({"status": "lost"}),
        json!({"limits": {"rpm": "many"}}),
    ] {
        let mut k = key.clone();
        k.as_object_mut().unwrap().extend(broken.as_object().unwrap().clone());
        assert!(fits(&k, &key_schema, 0).is_err(), "{broken} should not fit");
    }
    let mut k = key.clone();
    k.as_object_mut().unwrap().remove("prefix");
    assert!(fits(&k, &key_schema, 0).is_err(), "a missing field should not fit");
    let secret = key["key"].as_str().unwrap().to_string();
    let (s, tight) = api.go(
        "post",
        "/admin/v1/keys",
        "/admin/v1/keys",
        Some(json!({"name": "tight", "limits": {"budget": {"limit_usd": "0.0002", "period": "daily", "soft_limit_pct": 10}}})),
    )
    .await;
    assert_eq!(s, 201, "{tight}");
    let tight_secret = tight["key"].as_str().unwrap().to_string();
    let (s, doomed) = api
        .go(
            "post",
            "/admin/v1/keys",
            "/admin/v1/keys",
            Some(json!({"name": "doomed"})),
        )
        .await;
    assert_eq!(s, 201);
    let doomed_id = doomed["id"].as_str().unwrap().to_string();
    assert_eq!(api.go("get", "/admin/v1/keys", "/admin/v1/keys", None).await.0, 200);
    let (s, _) = api
        .go(
            "get",
            "/admin/v1/keys",
            &format!("/admin/v1/keys?team_id={team_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let key_path = format!("/admin/v1/keys/{key_id}");
    assert_eq!(api.go("get", "/admin/v1/keys/{id}", &key_path, None).await.0, 200);
    let (s, v) = api
        .go(
            "patch",
            "/admin/v1/keys/{id}",
            &key_path,
            Some(json!({"route_prefer": "cost", "limits": {"rpm": 1000}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, rotated) = api
        .go(
            "post",
            "/admin/v1/keys/{id}/rotate",
            &format!("/admin/v1/keys/{doomed_id}/rotate"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    let (s, v) = api
        .go(
            "post",
            "/admin/v1/keys/{id}/revoke",
            &format!("/admin/v1/keys/{doomed_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Traffic, so that usage, route stats, alerts and the outbox have something to show.
    let mut sent = 0;
    for (i, model) in ["chat", "careful", "ab", "ab", "chat", "careful"].iter().enumerate() {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": model, "stream": i % 2 == 1, "messages": [{"role": "user", "content": format!("question {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        r.bytes().await.unwrap();
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused == 0 && Instant::now() < deadline {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&tight_secret)
            .json(&json!({"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "spend"}]}))
            .send()
            .await
            .unwrap();
        refused += usize::from(r.status() == 429);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0, "the tight budget ran out");

    // Usage (once the ledger holds every event), exports, prices, re-pricing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, report) = api.go("get", "/admin/v1/usage", "/admin/v1/usage", None).await;
        assert_eq!(s, 200, "{report}");
        if report["totals"]["requests"] == sent {
            break;
        }
        assert!(Instant::now() < deadline, "{sent} requests sent: {report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for group in ["hour", "day", "key", "team", "model"] {
        let (s, v) = api
            .go(
                "get",
                "/admin/v1/usage",
                &format!("/admin/v1/usage?group_by={group}&from=2020-01-01"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(!v["groups"].as_array().unwrap().is_empty(), "{group}: {v}");
    }
    let (s, export) = api
        .go(
            "get",
            "/admin/v1/usage/export",
            "/admin/v1/usage/export?format=json",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        export["data"].as_array().unwrap().len(),
        sent,
        "every event is exported"
    );
    let (s, csv) = api
        .go("get", "/admin/v1/usage/export", "/admin/v1/usage/export", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        csv.as_str().unwrap().lines().count(),
        sent + 1,
        "a header and one line an event"
    );
    let (s, v) = api
        .go(
            "post",
            "/admin/v1/usage/reprice",
            "/admin/v1/usage/reprice",
            Some(json!({"dry_run": true, "from": "2020-01-01"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api.go("get", "/admin/v1/prices", "/admin/v1/prices", None).await.0, 200);

    // Alerts, the billing outbox, routes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, alerts) = api.go("get", "/admin/v1/alerts", "/admin/v1/alerts", None).await;
        assert_eq!(s, 200);
        if !alerts["data"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no budget alert was stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, outbox) = api.go("get", "/admin/v1/billing", "/admin/v1/billing", None).await;
    assert_eq!(s, 200, "{outbox}");
    let (s, v) = api
        .go(
            "post",
            "/admin/v1/billing/requeue",
            "/admin/v1/billing/requeue",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, routes) = api.go("get", "/admin/v1/routes", "/admin/v1/routes", None).await;
    assert_eq!(s, 200);
    assert!(routes["data"].as_array().unwrap().len() >= 4, "{routes}");
    let (s, v) = api.go(
        "put",
        "/admin/v1/routes",
        "/admin/v1/routes",
        Some(json!({"routes": {"auto": {"cheap": "chat", "strong": "claude"}, "ab": {"cheap": "chat", "strong": "claude", "cascade": {}}}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, stats) = api
        .go("get", "/admin/v1/routes/stats", "/admin/v1/routes/stats", None)
        .await;
    assert_eq!(s, 200);
    assert!(!stats["data"].as_array().unwrap().is_empty(), "{stats}");

    // The cache: an answer kept, then its figures and a purge.
    for _ in 0..2 {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "cached", "messages": [{"role": "user", "content": "cache me for the admin api"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, stats) = api
        .go("get", "/admin/v1/cache/stats", "/admin/v1/cache/stats", None)
        .await;
    assert_eq!(s, 200, "{stats}");
    assert_eq!(stats["data"][0]["hits"], 1, "{stats}");
    let (s, v) = api
        .go(
            "post",
            "/admin/v1/cache/purge",
            "/admin/v1/cache/purge",
            Some(json!({"route": "cached"})),
        )
        .await;
    assert_eq!((s, &v["purged"]), (200, &json!(1)), "{v}");
    let (s, e) = api
        .go(
            "post",
            "/admin/v1/cache/purge",
            "/admin/v1/cache/purge",
            Some(json!({"scoop": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{e}");

    // Dashboard users: added, listed (never with a password), deleted.
    let (s, u) = api
        .go(
            "post",
            "/admin/v1/users",
            "/admin/v1/users",
            Some(json!({"name": "finance", "password": "a long passphrase", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let (s, list) = api.go("get", "/admin/v1/users", "/admin/v1/users", None).await;
    assert_eq!((s, &list["data"][0]["role"]), (200, &json!("viewer")), "{list}");
    let (s, e) = api
        .go(
            "post",
            "/admin/v1/users",
            "/admin/v1/users",
            Some(json!({"name": "x", "password": "short", "role": "viewer"})),
        )
        .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("password")), "{e}");
    let (s, _) = api
        .go("delete", "/admin/v1/users/{name}", "/admin/v1/users/finance", None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .go("delete", "/admin/v1/users/{name}", "/admin/v1/users/finance", None)
        .await;
    assert_eq!(s, 404);

    // The dashboard's views: the summary, the request log, the routing mix and playground,
    // the deployments, the audit log.
    for (template, path) in [
        ("/admin/v1/usage/summary", "/admin/v1/usage/summary?from=2020-01-01"),
        ("/admin/v1/requests", "/admin/v1/requests?limit=2"),
        ("/admin/v1/routes/mix", "/admin/v1/routes/mix?group_by=hour"),
        ("/admin/v1/deployments", "/admin/v1/deployments"),
        ("/admin/v1/audit", "/admin/v1/audit?limit=3"),
    ] {
        let (s, v) = api.go("get", template, path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (_, log) = api
        .go("get", "/admin/v1/requests", "/admin/v1/requests?limit=1", None)
        .await;
    let event = log["data"][0]["event_id"].as_str().unwrap().to_string();
    let (s, v) = api
        .go(
            "get",
            "/admin/v1/requests/{event_id}",
            &format!("/admin/v1/requests/{event}"),
            None,
        )
        .await;
    assert_eq!((s, v["event_id"].as_str()), (200, Some(event.as_str())));
    // A key that opts in to stored bodies: its request's bodies.
    let (s, k) = api
        .go(
            "post",
            "/admin/v1/keys",
            "/admin/v1/keys",
            Some(json!({"name": "logged", "store_bodies": true})),
        )
        .await;
    assert_eq!((s, &k["store_bodies"]), (201, &json!(true)), "{k}");
    let r = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(k["key"].as_str().unwrap())
        .header("x-request-id", "with-bodies")
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "keep this"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut logged = String::new();
    for _ in 0..200 {
        let (_, v) = api
            .go(
                "get",
                "/admin/v1/requests",
                "/admin/v1/requests?request_id=with-bodies",
                None,
            )
            .await;
        if let Some(id) = v["data"][0]["event_id"].as_str() {
            logged = id.to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (s, v) = api
        .go(
            "get",
            "/admin/v1/requests/{event_id}/bodies",
            &format!("/admin/v1/requests/{logged}/bodies"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["request"].as_str().unwrap().contains("keep this"), "{v}");
    let (s, _) = api
        .go(
            "get",
            "/admin/v1/requests/{event_id}/bodies",
            "/admin/v1/requests/evt_none/bodies",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = api
        .go(
            "post",
            "/admin/v1/routes/explain",
            "/admin/v1/routes/explain?prefer=quality",
            Some(json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!((s, v["object"].as_str()), (200, Some("route.decision")), "{v}");

    // Errors have the documented shape too.
    let missing = "/admin/v1/keys/key_0000000000000000";
    assert_eq!(api.go("get", "/admin/v1/keys/{id}", missing, None).await.0, 404);
    let (s, e) = api
        .go("post", "/admin/v1/teams", "/admin/v1/teams", Some(json!({"nmae": "x"})))
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = api
        .go("get", "/admin/v1/usage", "/admin/v1/usage?group_by=week", None)
        .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("group_by")));
    let (s, _) = api.call("get", "/admin/v1/teams", "/admin/v1/teams", None, false).await;
    assert_eq!(s, 401);

    let untested: Vec<_> = documented.difference(&api.seen).collect();
    assert!(
        untested.is_empty(),
        "documented but never answered 2xx here: {untested:?}"
    );
    gw.stop().await.unwrap();
    drop(mock);
}
