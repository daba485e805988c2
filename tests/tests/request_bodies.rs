//! The request log's bodies: stored only where a key, its team or the route opts in; redacted,
//! cut to the cap, written with their usage event, shown to admins in the dashboard, hidden once
//! their retention ends and then deleted; never stored by default. On SQLite and, where
//! configured, Postgres.

mod ui_common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::clock::{Clock, ManualClock, HOUR_MS};
use switchyard::money::meter::MemorySink;
use switchyard::store::Store;
use switchyard_tests::{parse_config, standard_config, test_databases, Admin, MockUpstream, TestGateway};
use ui_common::{page, server_fn, sign_in};

const REQUEST_LOG: &str = r#"
[request_log]
body_retention_hours = 1
max_body_bytes = 1500
redact = ['sk-[A-Za-z0-9_-]{16,}', '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}', 'ticket-[0-9]{4}']
"#;

struct Setup {
    gw: TestGateway,
    admin: Admin,
    clock: Arc<ManualClock>,
    url: String,
    _mock: MockUpstream,
}

async fn setup(url: &str) -> Setup {
    let mock = MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n{REQUEST_LOG}\n{}\n\
         [routes.logged]\ncheap = \"chat\"\nstrong = \"claude\"\nstore_bodies = true\n",
        standard_config(&mock.base_url())
    );
    let mut config = parse_config(&toml);
    config.database.url = url.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = Arc::new(ManualClock::new(now));
    let c: Arc<dyn Clock> = clock.clone();
    let gw = TestGateway::start_with(
        config,
        switchyard::RunOptions {
            clock: Some(c),
            ..Default::default()
        },
        Arc::new(MemorySink::default()),
    )
    .await;
    let admin = Admin::new(&gw);
    Setup {
        gw,
        admin,
        clock,
        url: url.to_string(),
        _mock: mock,
    }
}

/// Sends a chat request; returns the body the client received, as text.
async fn chat(gw: &TestGateway, secret: &str, id: &str, body: Value) -> String {
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(secret)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{id}");
    r.text().await.unwrap()
}

/// The event id of a request once the ledger has it.
async fn event_of(admin: &Admin, request_id: &str) -> String {
    for _ in 0..200 {
        let (_, v) = admin
            .call(
                reqwest::Method::GET,
                &format!("/requests?request_id={request_id}"),
                None,
            )
            .await;
        if let Some(id) = v["data"][0]["event_id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{request_id} reached the ledger");
}

async fn bodies(admin: &Admin, event_id: &str) -> (u16, Value) {
    admin
        .call(reqwest::Method::GET, &format!("/requests/{event_id}/bodies"), None)
        .await
}

fn ask(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_stored_only_where_opted_in_redacted_cut_and_expired() {
    for (backend, url) in test_databases().await {
        let Setup {
            gw,
            admin,
            clock,
            url,
            _mock,
        } = setup(&url).await;
        let (s, team) = admin
            .post("/teams", json!({"name": "support", "store_bodies": true}))
            .await;
        assert_eq!((s, &team["store_bodies"]), (201, &json!(true)), "{backend}: {team}");
        let (_, plain) = admin.key(json!({"name": "plain"})).await;
        let (logged_id, logged) = admin.key(json!({"name": "logged", "store_bodies": true})).await;
        let (_, of_team) = admin.key(json!({"name": "of-team", "team_id": team["id"]})).await;

        // Not by default: a key without the flag, to a plain model.
        chat(&gw, &plain, "plain-1", ask("chat", "hello there", false)).await;
        let e = event_of(&admin, "plain-1").await;
        let (s, v) = bodies(&admin, &e).await;
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (404, Some("invalid_request_error")),
            "{backend}: {v}"
        );

        // The key opts in: the request as sent, the answer as received, secrets redacted.
        let secrets = ["sk-abcdefghijklmnopqrstuvwx", "bob@example.com", "ticket-1234"];
        let secret_text = format!("my key is {}, mail {} about {}", secrets[0], secrets[1], secrets[2]);
        let body = ask("chat", &secret_text, false);
        let got = chat(&gw, &logged, "logged-json", body.clone()).await;
        let e = event_of(&admin, "logged-json").await;
        let (s, b) = bodies(&admin, &e).await;
        assert_eq!(s, 200, "{backend}: {b}");
        let redacted = |text: &str| secrets.iter().fold(text.to_string(), |t, s| t.replace(s, "[REDACTED]"));
        let sent = serde_json::to_string(&body).unwrap();
        assert_eq!(
            b["request"].as_str().unwrap(),
            redacted(&sent),
            "{backend}: the request as sent, redacted"
        );
        assert_eq!(b["request_truncated"], false, "{b}");
        let answer = b["response"].as_str().unwrap();
        assert_eq!(
            answer,
            redacted(&got),
            "{backend}: the answer as the client got it, redacted"
        );
        let in_answer: usize = secrets.iter().map(|s| got.matches(s).count()).sum();
        assert_eq!(b["redactions"].as_u64(), Some(3 + in_answer as u64), "{b}");

        // A stream: the SSE events as the client got them, [DONE] included.
        let got = chat(&gw, &logged, "logged-stream", ask("chat", "say something", true)).await;
        let e = event_of(&admin, "logged-stream").await;
        let (_, b) = bodies(&admin, &e).await;
        let answer = b["response"].as_str().unwrap();
        assert!(answer.starts_with("data: {"), "{answer}");
        if b["response_truncated"] == false {
            assert_eq!(answer, got, "{backend}");
            assert!(answer.ends_with("data: [DONE]\n\n"));
        } else {
            assert!(got.starts_with(answer));
        }

        // Over the cap: cut to it, and said so.
        let long = ask("chat", &"lorem ipsum ".repeat(400), false);
        chat(&gw, &logged, "logged-long", long.clone()).await;
        let e = event_of(&admin, "logged-long").await;
        let (_, b) = bodies(&admin, &e).await;
        assert_eq!(b["request_truncated"], true, "{b}");
        let kept = b["request"].as_str().unwrap();
        assert_eq!(kept.len(), 1500, "{backend}: cut at the cap");
        assert!(serde_json::to_string(&long).unwrap().starts_with(kept));

        // The team opts in for its keys; a route opts in for every caller.
        chat(&gw, &of_team, "team-1", ask("chat", "from the team", false)).await;
        let e_team = event_of(&admin, "team-1").await;
        assert_eq!(bodies(&admin, &e_team).await.0, 200, "{backend}: the team's flag");
        chat(&gw, &plain, "route-1", ask("logged", "through the route", false)).await;
        let e_route = event_of(&admin, "route-1").await;
        let (s, b) = bodies(&admin, &e_route).await;
        assert_eq!(s, 200, "{backend}: the route's flag");
        assert!(b["request"].as_str().unwrap().contains("through the route"));

        // Turned off again: the next request is not stored.
        let (s, k) = admin
            .call(
                reqwest::Method::PATCH,
                &format!("/keys/{logged_id}"),
                Some(json!({"store_bodies": false})),
            )
            .await;
        assert_eq!((s, &k["store_bodies"]), (200, &json!(false)), "{k}");
        chat(&gw, &logged, "logged-off", ask("chat", "not kept", false)).await;
        let e_off = event_of(&admin, "logged-off").await;
        assert_eq!(bodies(&admin, &e_off).await.0, 404, "{backend}: off again");

        // The dashboard shows them to admins, and not to viewers.
        let cookie = sign_in(&gw, "", switchyard_tests::TEST_MASTER_KEY).await;
        let (s, html) = page(&gw, &cookie, &format!("/ui/requests/{e_route}")).await;
        assert_eq!(s, 200);
        assert!(
            html.contains("id=\"request-body\"") && html.contains("through the route"),
            "{html}"
        );
        let (_, html) = page(&gw, &cookie, &format!("/ui/requests/{e_off}")).await;
        assert!(html.contains("id=\"no-bodies\"") && !html.contains("id=\"request-body\""));
        admin
            .post(
                "/users",
                json!({"name": "finance", "password": "read only please", "role": "viewer"}),
            )
            .await;
        let viewer = sign_in(&gw, "finance", "read only please").await;
        let (_, html) = page(&gw, &viewer, &format!("/ui/requests/{e_route}")).await;
        assert!(
            html.contains("admins only") && !html.contains("through the route"),
            "{backend}: a viewer does not read bodies"
        );
        let (s, v) = server_fn(&gw, &viewer, "request_bodies", &[("id", e_route.as_str())]).await;
        assert_eq!((s, v.as_str()), (200, Some("AdminsOnly")), "{v}");

        // Past the retention they are not shown, and the purge deletes them.
        clock.advance(2 * HOUR_MS);
        assert_eq!(bodies(&admin, &e_route).await.0, 404, "{backend}: expired");
        gw.stop().await.unwrap();
        let store = Store::connect(&url, 2).await.unwrap();
        assert!(
            store.request_bodies(&e_team, 0).await.unwrap().is_some(),
            "kept until purged"
        );
        let purged = store.purge_bodies(i64::MAX).await.unwrap();
        assert_eq!(purged, 5, "{backend}: json, stream, long, the team's and the route's");
        assert!(store.request_bodies(&e_team, 0).await.unwrap().is_none());
        store.close().await;
    }
}
