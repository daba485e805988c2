//! The dashboard's server side over real HTTP: sign-in and its throttle, the session cookie,
//! pages and server functions with and without a session, anti-forgery checks, roles, expiry
//! and sign-out.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;
use switchyard_tests::{parse_config, standard_config, Admin, MockUpstream, TestGateway, TEST_MASTER_KEY};

mod ui_common;

use ui_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_reachable_without_a_session() {
    let (_m, gw) = gateway("").await;
    for path in ["/ui", "/ui/keys", "/ui/anything"] {
        let r = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        let to = location(r.headers());
        assert!(to.starts_with("/ui/login?next="), "{path} → {to}");
    }
    for name in ["whoami", "keys", "create_key", "load_overview"] {
        let (status, v) = server_fn(&gw, "", name, &[("search", ""), ("status", "")][..]).await;
        assert_eq!(status, 401, "{name}: {v}");
        assert!(v["message"].as_str().unwrap().contains("Sign in"), "{v}");
    }
    // A made-up or garbage cookie is no session either.
    let (status, _) = server_fn(&gw, "switchyard_session=forged", "whoami", NONE).await;
    assert_eq!(status, 401);
    let r = client().get(gw.url("/ui/login")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(r.text().await.unwrap().contains("Sign in to Switchyard"));
    let css = client().get(gw.url("/ui/style.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_signs_in_with_a_strict_cookie() {
    let (_m, gw) = gateway("").await;
    let (status, h) = sign_in_raw(&gw, "", TEST_MASTER_KEY, &[]).await;
    assert_eq!(status, 303);
    let set = h[SET_COOKIE].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP gets no Secure flag: {set}");
    // Behind a TLS-terminating proxy the cookie is Secure.
    let (_, h) = sign_in_raw(&gw, "", TEST_MASTER_KEY, &[("x-forwarded-proto", "https")]).await;
    assert!(h[SET_COOKIE].to_str().unwrap().contains("; Secure"));
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let (status, v) = server_fn(&gw, &cookie, "whoami", NONE).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "master key");
    assert_eq!(v["role"], "admin");
    // Pages render on the server, with their data.
    let (status, html) = page(&gw, &cookie, "/ui").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"stat-requests\""), "{html}");
    assert!(html.contains("Spend over time"));
    // The wrong key is refused, and so is an open redirect after sign-in.
    let (_, h) = sign_in_raw(&gw, "", "not-the-master-key", &[]).await;
    assert!(location(&h).starts_with("/ui/login?error=Wrong"), "{}", location(&h));
    assert!(h.get(SET_COOKIE).is_none());
    let r = client()
        .post(gw.url("/ui/login"))
        .form(&[("user", ""), ("password", TEST_MASTER_KEY), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(r.headers()), "/ui");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_slowed_down() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    let (s, v) = admin
        .post(
            "/users",
            json!({"name": "ops", "password": "correct horse battery", "role": "admin"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for _ in 0..3 {
        let (_, h) = sign_in_raw(&gw, "ops", "wrong password!", &[]).await;
        assert!(location(&h).contains("error=Wrong"), "{}", location(&h));
    }
    // Now even the right password must wait.
    let (_, h) = sign_in_raw(&gw, "ops", "correct horse battery", &[]).await;
    assert!(location(&h).contains("error=Too%20many"), "{}", location(&h));
    assert!(h.get(SET_COOKIE).is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sign_in(&gw, "ops", "correct horse battery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_token_the_origin_and_the_admin_role() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw, &cookie).await;
    let form = |token: &str| {
        [
            ("csrf", token),
            ("name", "from-ui"),
            ("team_id", ""),
            ("tags", "web, ui"),
            ("budget_usd", "5.00"),
            ("period", "monthly"),
            ("rpm", ""),
        ]
        .map(|(k, v)| (k, v.to_string()))
    };
    // Without the token, or with a wrong one: refused, nothing made.
    let (status, v) = server_fn(&gw, &cookie, "create_key", &form("forged-token")).await;
    assert_eq!(status, 403, "{v}");
    let (_, keys) = admin.call(reqwest::Method::GET, "/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 0);
    // A post from another site is refused before it is read, even with the token.
    let r = client()
        .post(gw.url("/ui/api/create_key"))
        .header(COOKIE, &cookie)
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // With the token: the key is made through the admin API, with its budget and tags.
    let (status, v) = server_fn(&gw, &cookie, "create_key", &form(&csrf)).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["secret"].as_str().unwrap().starts_with("sk-sy-"));
    let (_, k) = admin
        .call(
            reqwest::Method::GET,
            &format!("/keys/{}", v["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(k["limits"]["budget"]["limit_usd"], "5.000000000");
    assert_eq!(k["tags"], json!(["web", "ui"]));
    // A field the admin API refuses comes back naming the field.
    let mut bad = form(&csrf);
    bad[4] = ("budget_usd", "-3".to_string());
    let (status, v) = server_fn(&gw, &cookie, "create_key", &bad).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["param"], "limits.budget.limit_usd", "{v}");
    // A viewer reads but cannot change.
    let (s, _) = admin
        .post(
            "/users",
            json!({"name": "finance", "password": "read only please", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 201);
    let viewer = sign_in(&gw, "finance", "read only please").await;
    let vcsrf = csrf_of(&gw, &viewer).await;
    let (status, v) = server_fn(&gw, &viewer, "create_key", &form(&vcsrf)).await;
    assert_eq!(status, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("viewer"), "{v}");
    let (status, v) = server_fn(&gw, &viewer, "keys", &[("search", ""), ("status", "")]).await;
    assert_eq!(status, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, html) = page(&gw, &viewer, "/ui/keys").await;
    assert!(!html.contains("Create a key"), "no create form for a viewer");
    assert!(!html.contains("Revoke"), "no revoke button for a viewer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_without_javascript_comes_back_with_its_result() {
    let (_m, gw) = gateway("").await;
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw, &cookie).await;
    let post = |form: Vec<(&'static str, String)>| {
        client()
            .post(gw.url("/ui/api/create_key"))
            .header(COOKIE, &cookie)
            .header("accept", "text/html")
            .header("referer", gw.url("/ui/keys"))
            .form(&form)
            .send()
    };
    let form = |name: &str, budget: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", name.to_string()),
            ("team_id", String::new()),
            ("tags", String::new()),
            ("budget_usd", budget.to_string()),
            ("period", "monthly".to_string()),
            ("rpm", String::new()),
        ]
    };
    let r = post(form("plain", "")).await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(location(r.headers()).trim_end_matches('?'), gw.url("/ui/keys"));
    // The page it comes back to shows the secret, once.
    let (_, html) = page(&gw, &cookie, "/ui/keys").await;
    assert!(html.contains("id=\"new-secret\""), "the secret is shown: {html}");
    assert!(html.contains("value=\"sk-sy-"));
    let (_, again) = page(&gw, &cookie, "/ui/keys").await;
    assert!(!again.contains("id=\"new-secret\""), "and only once");
    // An error comes back in the query and is shown next to its field.
    let r = post(form("bad", "lots")).await.unwrap();
    let to = location(r.headers());
    assert!(to.contains("__err="), "{to}");
    let path = to.strip_prefix(&gw.url("")).unwrap().to_string();
    let (_, html) = page(&gw, &cookie, &path).await;
    assert!(html.contains("class=\"field-error\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_sign_out_ends_them() {
    let (_m, gw) = gateway("[dashboard]\nsession_ttl_secs = 1\n").await;
    let cookie = sign_in(&gw, "", TEST_MASTER_KEY).await;
    assert_eq!(server_fn(&gw, &cookie, "whoami", NONE).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server_fn(&gw, &cookie, "whoami", NONE).await.0, 401, "expired");
    let r = client()
        .get(gw.url("/ui"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);

    let (_m2, gw2) = gateway("").await;
    let cookie = sign_in(&gw2, "", TEST_MASTER_KEY).await;
    let csrf = csrf_of(&gw2, &cookie).await;
    // Sign-out needs the token too.
    let r = client()
        .post(gw2.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(server_fn(&gw2, &cookie, "whoami", NONE).await.0, 200);
    let r = client()
        .post(gw2.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(server_fn(&gw2, &cookie, "whoami", NONE).await.0, 401, "signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_validated_and_deleting_one_ends_its_sessions() {
    let (_m, gw) = gateway("").await;
    let admin = Admin::new(&gw);
    for (body, param) in [
        (json!({"name": "x", "password": "short", "role": "admin"}), "password"),
        (
            json!({"name": "bad name!", "password": "long enough pass", "role": "admin"}),
            "name",
        ),
        (
            json!({"name": "y", "password": "long enough pass", "role": "root"}),
            "role",
        ),
    ] {
        let (s, v) = admin.post("/users", body).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (s, _) = admin
        .post(
            "/users",
            json!({"name": "eve", "password": "long enough pass", "role": "admin"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = admin
        .post(
            "/users",
            json!({"name": "eve", "password": "long enough pass", "role": "admin"}),
        )
        .await;
    assert_eq!(s, 409);
    let (_, list) = admin.call(reqwest::Method::GET, "/users", None).await;
    assert_eq!(list["data"][0]["name"], "eve");
    assert!(
        list.to_string().find("password").is_none(),
        "no password or hash is listed"
    );
    let cookie = sign_in(&gw, "eve", "long enough pass").await;
    let (s, v) = admin.call(reqwest::Method::DELETE, "/users/eve", None).await;
    assert_eq!((s, &v["deleted"]), (200, &json!(true)));
    assert_eq!(server_fn(&gw, &cookie, "whoami", NONE).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_master_key_makes_its_first_admin_once() {
    let mock = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-first-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    let db = dir.join("gw.db");
    let toml = format!(
        "[database]\nurl = \"sqlite://{}\"\n[dashboard]\nfirst_password_file = \"{}\"\n{}",
        db.display(),
        file.display(),
        standard_config(&mock.base_url())
    );
    let gw = TestGateway::start_config(parse_config(&toml)).await;
    let password = std::fs::read_to_string(&file).expect("the first password was written");
    let password = password.trim();
    assert!(password.len() >= 40, "a long random password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let cookie = sign_in(&gw, "admin", password).await;
    let (_, v) = server_fn(&gw, &cookie, "whoami", NONE).await;
    assert_eq!(v["role"], "admin");
    gw.stop().await.unwrap();
    // A restart finds the user and makes no other.
    std::fs::remove_file(&file).unwrap();
    let gw = TestGateway::start_config(parse_config(&toml)).await;
    assert!(!file.exists(), "no second first user");
    sign_in(&gw, "admin", password).await;
    let _ = std::fs::remove_dir_all(&dir);
}
