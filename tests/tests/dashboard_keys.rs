//! The dashboard's key and team pages over real HTTP: every setting of a key changed through
//! its server function and read back from the admin API, bad input refused with the field
//! named and nothing changed, disable and enable, rotate (the new secret once, also without
//! JavaScript) and revoke, each seen by the gateway at once; teams created, listed with their
//! spend from the ledger and changed; viewers and forged tokens refused.

use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::{json, Value};
use switchyard_tests::{Admin, TestGateway, TEST_MASTER_KEY};

mod ui_common;

use ui_common::*;

async fn chat(gw: &TestGateway, key: &str) -> u16 {
    send_chat(gw, key, "chat", None).await
}

/// A short chat request to `model` with `key`, tagged with `request_id` when given.
async fn send_chat(gw: &TestGateway, key: &str, model: &str, request_id: Option<&str>) -> u16 {
    let mut rb = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hello there"}]}));
    if let Some(id) = request_id {
        rb = rb.header("x-request-id", id);
    }
    rb.send().await.unwrap().status().as_u16()
}

/// Each server function answers 401 without a session.
async fn refused_without_a_session(gw: &TestGateway, fns: &[&str]) {
    for f in fns {
        let (s, _) = server_fn(gw, "", f, NONE).await;
        assert_eq!(s, 401, "{f}");
    }
}

/// The edit form as the page sends it, with `changes` over the given values.
fn key_form(csrf: &str, id: &str, changes: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut f: Vec<(&'static str, String)> = [
        ("csrf", csrf),
        ("id", id),
        ("name", "renamed"),
        ("team_id", ""),
        ("cost_center", "cc-1"),
        ("tags", "a, b"),
        ("allowed_models", "chat"),
        ("route_prefer", "quality"),
        ("expires_at", "2099-01-01"),
        ("budget_usd", "7.50"),
        ("period", "weekly"),
        ("soft_limit_pct", "50"),
        ("rpm", "60"),
        ("tpm", ""),
        ("max_concurrent", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    for (k, v) in changes {
        f.iter_mut().find(|(name, _)| name == k).expect("a form field").1 = v.to_string();
    }
    f
}

async fn key_of(admin: &Admin, id: &str) -> Value {
    admin.call(reqwest::Method::GET, &format!("/keys/{id}"), None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_changed_disabled_rotated_and_revoked_from_its_page() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    let (_, team) = admin.post("/teams", json!({"name": "web"})).await;
    let team_id = team["id"].as_str().unwrap().to_string();
    let (id, secret) = admin.key(json!({"name": "k"})).await;
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw, &cookie).await;

    // Every setting at once, read back from the admin API.
    let (s, v) = server_fn(
        &gw,
        &cookie,
        "update_key",
        &key_form(&csrf, &id, &[("team_id", &team_id)]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let k = key_of(&admin, &id).await;
    assert_eq!(k["name"], "renamed");
    assert_eq!(k["team_id"], team_id.as_str());
    assert_eq!(k["cost_center"], "cc-1");
    assert_eq!(k["tags"], json!(["a", "b"]));
    assert_eq!(k["allowed_models"], json!(["chat"]));
    assert_eq!(k["route_prefer"], "quality");
    assert!(k["expires_at"].as_str().unwrap().starts_with("2099-01-01"), "{k}");
    let l = &k["limits"];
    assert_eq!(
        (
            &l["budget"]["limit_usd"],
            &l["budget"]["period"],
            &l["budget"]["soft_limit_pct"]
        ),
        (&json!("7.500000000"), &json!("weekly"), &json!(50))
    );
    assert_eq!(
        (&l["rpm"], &l["tpm"], &l["max_concurrent"]),
        (&json!(60), &Value::Null, &json!(3))
    );
    assert_eq!(chat(&gw, &secret).await, 200, "the key still works");

    // Bad input: refused naming the field, and nothing changes.
    for (field, value, param) in [
        ("rpm", "0", "limits.rpm"),
        ("rpm", "lots", "limits.rpm"),
        ("max_concurrent", "-2", "limits.max_concurrent"),
        ("soft_limit_pct", "150", "limits.budget.soft_limit_pct"),
        ("budget_usd", "-1", "limits.budget.limit_usd"),
        ("allowed_models", "chat, no-such-model", "allowed_models[1]"),
        ("expires_at", "someday", "expires_at"),
        ("tags", "has space", "tags[0]"),
        ("team_id", "team_nope", "team_id"),
        ("name", "  ", "name"),
    ] {
        // A later change overrides an earlier one: the bad field comes last.
        let form = key_form(
            &csrf,
            &id,
            &[("team_id", &team_id), ("cost_center", "changed"), (field, value)],
        );
        let (s, v) = server_fn(&gw, &cookie, "update_key", &form).await;
        assert_eq!((s, v["param"].as_str()), (400, Some(param)), "{field}={value}: {v}");
        assert_eq!(
            key_of(&admin, &id).await["cost_center"],
            "cc-1",
            "{field}: nothing changed"
        );
    }
    // A forged token changes nothing either.
    let (s, _) = server_fn(&gw, &cookie, "update_key", &key_form("forged", &id, &[("name", "x")])).await;
    assert_eq!(s, 403);
    assert_eq!(key_of(&admin, &id).await["name"], "renamed");
    // Blank fields clear their setting.
    let blank = [
        ("team_id", ""),
        ("cost_center", ""),
        ("tags", ""),
        ("allowed_models", ""),
        ("route_prefer", ""),
        ("expires_at", ""),
        ("budget_usd", ""),
        ("rpm", ""),
        ("max_concurrent", ""),
    ];
    let (s, v) = server_fn(&gw, &cookie, "update_key", &key_form(&csrf, &id, &blank)).await;
    assert_eq!(s, 200, "{v}");
    let k = key_of(&admin, &id).await;
    for field in ["team_id", "cost_center", "allowed_models", "route_prefer", "expires_at"] {
        assert!(k[field].is_null(), "{field} cleared: {k}");
    }
    assert_eq!(k["tags"], json!([]));
    assert_eq!(
        k["limits"],
        json!({"budget": null, "rpm": null, "tpm": null, "max_concurrent": null})
    );

    // Its page: the settings form for an admin, the numbers of its traffic.
    let (s, html) = page(&gw, &cookie, &format!("/ui/keys/{id}")).await;
    assert_eq!(s, 200);
    assert!(html.contains("renamed") && html.contains("id=\"settings\"") && html.contains("Rotate the secret"));
    let mut requests = 0;
    for _ in 0..100 {
        let (s, p) = server_fn(&gw, &cookie, "key", &[("id", id.as_str())]).await;
        assert_eq!(s, 200, "{p}");
        requests = p["summary"]["totals"]["requests"].as_i64().unwrap();
        if requests == 1 {
            assert_eq!(p["series"].as_array().unwrap().len(), 30, "30 days, empty ones too");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(requests, 1, "the request made with the key");

    // Disabled: refused at once; enabled: served again.
    let status = |to: &str| [("csrf", csrf.clone()), ("id", id.clone()), ("status", to.to_string())];
    let (s, v) = server_fn(&gw, &cookie, "key_status", &status("disabled")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("disabled")), "{v}");
    assert_eq!(chat(&gw, &secret).await, 401);
    let (s, _) = server_fn(&gw, &cookie, "key_status", &status("revoked")).await;
    assert_eq!(s, 400, "revoking has its own confirmed action");
    server_fn(&gw, &cookie, "key_status", &status("active")).await;
    assert_eq!(chat(&gw, &secret).await, 200);

    // Rotated: the old secret stops, the new one (shown once) works.
    let (s, v) = server_fn(
        &gw,
        &cookie,
        "rotate_key",
        &[("csrf", csrf.as_str()), ("id", id.as_str())],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let new_secret = v["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(chat(&gw, &secret).await, 401);
    assert_eq!(chat(&gw, &new_secret).await, 200);
    // Without JavaScript the page it returns to shows the new secret, once.
    let r = client()
        .post(gw.url("/ui/api/rotate_key"))
        .header(COOKIE, &cookie)
        .header("accept", "text/html")
        .header("referer", gw.url(&format!("/ui/keys/{id}")))
        .form(&[("csrf", csrf.as_str()), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let (_, html) = page(&gw, &cookie, &format!("/ui/keys/{id}")).await;
    let at = html.find("id=\"new-secret\"").expect("the new secret is shown");
    let shown = html[at..]
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(chat(&gw, &shown).await, 200, "the secret shown is the key's");
    assert_eq!(chat(&gw, &new_secret).await, 401, "the one before it stopped");
    let (_, again) = page(&gw, &cookie, &format!("/ui/keys/{id}")).await;
    assert!(!again.contains("id=\"new-secret\""), "only once");

    // A viewer sees the key but no form, and is refused by hand.
    let (s, _) = admin
        .post(
            "/users",
            json!({"name": "finance", "password": "read only please", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 201);
    let viewer = sign_in(&gw, "finance", "read only please").await;
    let vcsrf = csrf_of(&gw, &viewer).await;
    let (_, html) = page(&gw, &viewer, &format!("/ui/keys/{id}")).await;
    assert!(html.contains("renamed") && !html.contains("Rotate the secret") && !html.contains("name=\"rpm\""));
    for (f, form) in [
        ("update_key", key_form(&vcsrf, &id, &[])),
        ("rotate_key", vec![("csrf", vcsrf.clone()), ("id", id.clone())]),
        (
            "key_status",
            vec![
                ("csrf", vcsrf.clone()),
                ("id", id.clone()),
                ("status", "disabled".into()),
            ],
        ),
    ] {
        let (s, _) = server_fn(&gw, &viewer, f, &form).await;
        assert_eq!(s, 403, "{f}");
    }
    assert_eq!(chat(&gw, &shown).await, 200, "nothing a viewer sent changed the key");

    // Revoked: the page says so and offers nothing to change; an unknown key is a 404.
    let (s, _) = server_fn(
        &gw,
        &cookie,
        "revoke_key",
        &[("csrf", csrf.as_str()), ("id", id.as_str())],
    )
    .await;
    assert_eq!(s, 200);
    let (_, html) = page(&gw, &cookie, &format!("/ui/keys/{id}")).await;
    assert!(html.contains("revoked") && !html.contains("Rotate the secret"));
    let (s, v) = server_fn(&gw, &cookie, "key", &[("id", "key_nope")]).await;
    assert_eq!(s, 404, "{v}");

    // The audit log holds each change once, as who made it and through what; refused ones
    // (bad input, a forged token, a viewer) are not there.
    let (_, audit) = admin.call(reqwest::Method::GET, "/audit", None).await;
    let rows: Vec<(String, String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let t = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (t("action"), t("actor"), t("via"))
        })
        .collect();
    let by = |action: &str, actor: &str, via: &str| (action.to_string(), actor.to_string(), via.to_string());
    assert_eq!(
        rows,
        vec![
            by("key revoked", "master key", "ui"),
            by("user added", "master key", "api"),
            by("key rotated", "master key", "ui"),
            by("key rotated", "master key", "ui"),
            by("key changed", "master key", "ui"),
            by("key changed", "master key", "ui"),
            by("key changed", "master key", "ui"),
            by("key changed", "master key", "ui"),
            by("key created", "master key", "api"),
            by("team created", "master key", "api"),
        ],
        "{audit}"
    );
    let first = &audit["data"][0];
    assert_eq!(
        (first["target"].as_str(), first["address"].as_str()),
        (Some(id.as_str()), Some("127.0.0.1"))
    );
    assert!(
        !audit.to_string().contains("read only please"),
        "a password never reaches the audit log"
    );
    let (_, html) = page(&gw, &viewer, "/ui/audit").await;
    assert!(html.contains("data-action=\"key revoked\"") && html.contains("master key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_are_created_listed_with_their_spend_and_changed() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw, &cookie).await;
    let create = |name: &str, budget: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", name.to_string()),
            ("cost_center", "research".to_string()),
            ("budget_usd", budget.to_string()),
            ("period", "monthly".to_string()),
            ("rpm", String::new()),
        ]
    };
    let (s, v) = server_fn(&gw, &cookie, "create_team", &create("Research", "-1")).await;
    assert_eq!((s, v["param"].as_str()), (400, Some("limits.budget.limit_usd")), "{v}");
    let (s, team) = server_fn(&gw, &cookie, "create_team", &create("Research", "10")).await;
    assert_eq!(s, 200, "{team}");
    let team_id = team["id"].as_str().unwrap().to_string();
    let (s, v) = server_fn(&gw, &cookie, "create_team", &create("Research", "10")).await;
    assert_eq!(s, 409, "a second team of the same name: {v}");

    // A key of the team spends; the list shows the team's spend from the ledger and its keys.
    let (_, secret) = admin.key(json!({"name": "r1", "team_id": team_id})).await;
    assert_eq!(chat(&gw, &secret).await, 200);
    let mut row = Value::Null;
    for _ in 0..100 {
        let (s, list) = server_fn(&gw, &cookie, "teams", NONE).await;
        assert_eq!(s, 200, "{list}");
        row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["team"]["id"] == team_id.as_str())
            .cloned()
            .unwrap();
        if row["spent_usd"].as_str().unwrap().parse::<f64>().unwrap() > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(row["keys"], 1);
    let spent: f64 = row["spent_usd"].as_str().unwrap().parse().unwrap();
    let (_, usage) = admin
        .call(reqwest::Method::GET, &format!("/usage?team_id={team_id}"), None)
        .await;
    assert_eq!(
        spent,
        usage["totals"]["cost_usd"].as_str().unwrap().parse::<f64>().unwrap()
    );
    assert!(spent > 0.0);
    let (_, html) = page(&gw, &cookie, "/ui/teams").await;
    assert!(html.contains("Research") && html.contains("role=\"meter\"") && html.contains("Edit…"));
    // Searched by name (any case) or cost center, and filtered by budget.
    for (query, found) in [
        ("q=rESEA".to_string(), true),
        (format!("q={}", &team_id[5..14]), true),
        ("q=nothing-like-it".to_string(), false),
        ("budget=set".to_string(), true),
        ("budget=none".to_string(), false),
    ] {
        let (_, html) = page(&gw, &cookie, &format!("/ui/teams?{query}")).await;
        assert_eq!(html.contains(&format!("data-team=\"{team_id}\"")), found, "{query}");
        assert_eq!(html.contains("No team matches."), !found, "{query}");
    }

    // Changed: budget, period, alert threshold and limits; a blank clears.
    let update = |budget: &str, rpm: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("id", team_id.clone()),
            ("cost_center", "research-2".to_string()),
            ("budget_usd", budget.to_string()),
            ("period", "weekly".to_string()),
            ("soft_limit_pct", "90".to_string()),
            ("rpm", rpm.to_string()),
            ("tpm", String::new()),
            ("max_concurrent", String::new()),
        ]
    };
    let (s, v) = server_fn(&gw, &cookie, "update_team", &update("20", "100")).await;
    assert_eq!(s, 200, "{v}");
    let (_, t) = admin
        .call(reqwest::Method::GET, &format!("/teams/{team_id}"), None)
        .await;
    assert_eq!(t["cost_center"], "research-2");
    assert_eq!(t["limits"]["budget"]["limit_usd"], "20.000000000");
    assert_eq!(t["limits"]["budget"]["period"], "weekly");
    assert_eq!(t["limits"]["budget"]["soft_limit_pct"], 90);
    assert_eq!(t["limits"]["rpm"], 100);
    assert_eq!(t["store_bodies"], false, "an unticked box turns stored bodies off");
    let mut with_bodies = update("20", "100");
    with_bodies.push(("store_bodies", "on".to_string()));
    let (s, v) = server_fn(&gw, &cookie, "update_team", &with_bodies).await;
    assert_eq!((s, &v["store_bodies"]), (200, &json!(true)), "{v}");
    // A field's error names the field and the team, so the page puts it in that row's form.
    let (s, v) = server_fn(&gw, &cookie, "update_team", &update("", "zero")).await;
    assert_eq!((s, v["param"].as_str()), (400, Some("limits.rpm")));
    assert_eq!(v["target"].as_str(), Some(team_id.as_str()), "{v}");
    let (s, _) = server_fn(&gw, &cookie, "update_team", &update("", "")).await;
    assert_eq!(s, 200);
    let (_, t) = admin
        .call(reqwest::Method::GET, &format!("/teams/{team_id}"), None)
        .await;
    assert!(t["limits"]["budget"].is_null() && t["limits"]["rpm"].is_null(), "{t}");

    // A viewer sees the list but cannot create or change.
    admin
        .post(
            "/users",
            json!({"name": "fin", "password": "read only please", "role": "viewer"}),
        )
        .await;
    let viewer = sign_in(&gw, "fin", "read only please").await;
    let vcsrf = csrf_of(&gw, &viewer).await;
    let (s, _) = server_fn(&gw, &viewer, "teams", NONE).await;
    assert_eq!(s, 200);
    let (_, html) = page(&gw, &viewer, "/ui/teams").await;
    assert!(html.contains("Research") && !html.contains("Edit…") && !html.contains("Create a team"));
    let mut form = update("5", "");
    form[0].1 = vcsrf;
    let (s, _) = server_fn(&gw, &viewer, "update_team", &form).await;
    assert_eq!(s, 403);
    // Without a session, nothing.
    refused_without_a_session(
        &gw,
        &[
            "teams",
            "create_team",
            "update_team",
            "key",
            "update_key",
            "rotate_key",
            "key_status",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_requests_routing_and_providers_pages_serve_admins_and_viewers() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    let (key_id, secret) = admin.key(json!({"name": "pages"})).await;
    // `cached` keeps its answers; `auto` is a route (cheap: `chat`).
    for model in ["cached", "auto"] {
        assert_eq!(
            send_chat(&gw, &secret, model, Some(&format!("pages-{model}"))).await,
            200
        );
        // The log orders by arrival, to the millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw, &cookie).await;
    // The request log, once the ledger has both.
    let mut log = Value::Null;
    for _ in 0..100 {
        log = server_fn(&gw, &cookie, "requests", &[("q[key_id]", key_id.as_str())])
            .await
            .1;
        if log["data"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log["data"][0]["request_id"], "pages-auto", "{log}");
    assert_eq!(log["data"][0]["tier"], "cheap");
    let (_, html) = page(&gw, &cookie, "/ui/requests?request_id=pages-cached").await;
    assert!(html.contains("data-request=\"pages-cached\"") && !html.contains("data-request=\"pages-auto\""));
    let event_id = log["data"][1]["event_id"].as_str().unwrap();
    let (s, html) = page(&gw, &cookie, &format!("/ui/requests/{event_id}")).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("pages-cached")
            && html.contains(&key_id)
            && html.contains("Bodies are not stored for this request")
    );

    // Usage grouped by key, with export links of exactly its filter; a bad date is named.
    let (_, html) = page(&gw, &cookie, &format!("/ui/usage?group_by=key&key_id={key_id}")).await;
    assert!(
        html.contains(&format!("/ui/export?key_id={key_id}&amp;format=csv")),
        "{html}"
    );
    assert_eq!(text_of(&html, "usage-requests").as_deref(), Some("2"), "{html}");
    let (s, v) = server_fn(&gw, &cookie, "usage", &[("q[to]", "31/12/2026")]).await;
    assert_eq!((s, v["param"].as_str()), (400, Some("to")), "{v}");
    let (s, v) = server_fn(
        &gw,
        &cookie,
        "usage",
        &[("q[from]", "2020-01-01"), ("q[group_by]", "hour")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group_by"], "day", "a long range is grouped by day");
    assert!(v["note"].as_str().unwrap().contains("14 days"));
    // The download is the admin API's export of that filter, as an attachment.
    let r = client()
        .get(gw.url(&format!("/ui/export?key_id={key_id}&format=csv")))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"switchyard-usage.csv\""
    );
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "a header and two events: {csv}");
    let r = client()
        .get(gw.url("/ui/export?from=soon"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client().get(gw.url("/ui/export?format=csv")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "no session, no export");

    // Routing: the table, the mix, the decisions and the playground (a GET form).
    let (_, html) = page(
        &gw,
        &cookie,
        "/ui/routing?period=24h&route=auto&prompt=hi%20there&prefer=cost",
    )
    .await;
    assert!(html.contains("data-route=\"auto\""), "{html}");
    assert_eq!(text_of(&html, "decision-tier").as_deref(), Some("cheap"), "{html}");
    let (s, v) = server_fn(
        &gw,
        &cookie,
        "explain",
        &[("route", "auto"), ("prompt", ""), ("prefer", "")],
    )
    .await;
    assert_eq!((s, v["param"].as_str()), (400, Some("prompt")));
    let (s, v) = server_fn(&gw, &cookie, "decisions", NONE).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Providers and the cache; a purge needs an admin.
    let (s, html) = page(&gw, &cookie, "/ui/providers").await;
    assert_eq!(s, 200);
    assert!(html.contains("id=\"deployments\"") && html.contains("Purge…"));
    assert!(
        text_of(&html, "cache-entries").is_some_and(|n| n.parse::<u64>().unwrap() >= 1),
        "{html}"
    );
    let (s, v) = server_fn(&gw, &cookie, "providers", NONE).await;
    assert_eq!(s, 200);
    let chat = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model"] == "chat")
        .unwrap();
    assert_eq!(chat["requests"], 1, "the routed request: {chat}");
    assert!(v["cache"]["entries"].as_u64().unwrap() >= 1, "{v}");
    admin
        .post(
            "/users",
            json!({"name": "fin", "password": "read only please", "role": "viewer"}),
        )
        .await;
    let viewer = sign_in(&gw, "fin", "read only please").await;
    let vcsrf = csrf_of(&gw, &viewer).await;
    let (_, html) = page(&gw, &viewer, "/ui/providers").await;
    assert!(html.contains("id=\"deployments\"") && !html.contains("Purge…"));
    let (s, _) = server_fn(&gw, &viewer, "purge_cache", &[("csrf", vcsrf.as_str()), ("target", "")]).await;
    assert_eq!(s, 403);
    let (s, _) = server_fn(&gw, &cookie, "purge_cache", &[("csrf", "forged"), ("target", "")]).await;
    assert_eq!(s, 403);
    let (s, v) = server_fn(&gw, &cookie, "purge_cache", &[("csrf", csrf.as_str()), ("target", "")]).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.as_u64().unwrap() >= 1);
    let (_, v) = server_fn(&gw, &cookie, "providers", NONE).await;
    assert_eq!(v["cache"]["entries"], 0);
    // A viewer reads every page.
    for path in ["/ui/usage", "/ui/requests", "/ui/routing", "/ui/providers", "/ui/teams"] {
        let (s, _) = page(&gw, &viewer, path).await;
        assert_eq!(s, 200, "{path}");
    }
    refused_without_a_session(
        &gw,
        &[
            "usage",
            "requests",
            "request",
            "request_bodies",
            "routing",
            "decisions",
            "explain",
            "providers",
            "purge_cache",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_alerts_show_on_the_overview_and_the_key_page() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    // A budget a few requests spend: the soft alert at half of it, the hard one at the refusal.
    let (id, secret) = admin
        .key(json!({"name": "thrifty", "limits": {"budget": {"limit_usd": "0.0002", "period": "monthly", "soft_limit_pct": 50}}}))
        .await;
    let mut refused = false;
    for _ in 0..20 {
        if send_chat(&gw, &secret, "chat", None).await == 429 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the budget runs out");
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let (_, v) = admin.call(reqwest::Method::GET, "/alerts", None).await;
        kinds = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect();
        if kinds.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kinds.sort();
    assert_eq!(kinds, ["hard", "soft"]);
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let (_, html) = page(&gw, &cookie, "/ui").await;
    let at = html.find("id=\"alerts\"").expect("an alerts card");
    let card = &html[at..at + html[at..].find("</section>").unwrap()];
    assert!(
        card.contains("key thrifty") && card.contains("soft limit passed") && card.contains("budget reached"),
        "{card}"
    );
    assert!(card.contains(&format!("/ui/keys/{id}")));
    let (_, html) = page(&gw, &cookie, &format!("/ui/keys/{id}")).await;
    let at = html.find("id=\"alerts\"").unwrap();
    let card = &html[at..at + html[at..].find("</section>").unwrap()];
    assert!(
        card.contains("limit reached") && card.contains("soft limit passed"),
        "{card}"
    );
}
