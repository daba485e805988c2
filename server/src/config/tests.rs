//! Loading and validating configurations.
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &no_env, std::iter::empty())
}

#[test]
fn demo_config_is_valid() {
    let c = Config::demo();
    assert!(c.models.contains_key("demo-cheap"));
    assert!(c.models.contains_key("demo-powerful"));
    assert_eq!(c.providers["demo"].kind, ProviderKind::Mock);
}

#[test]
fn example_config_is_valid_with_its_secrets_set() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let text = std::fs::read_to_string(dir.join("switchyard.example.toml")).expect("example config exists");
    let env = |k: &str| Some(format!("test-secret-for-{k}"));
    let c = Config::parse(&text, Some(dir), &env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
    // Every real deployment is priced by the table, with its history.
    let mini = &c.models["gpt-4o-mini"].deployments[0];
    assert!(mini.prices.points().len() >= 2, "gpt-4o-mini has a price history");
    let oct_2024 = crate::clock::parse_time("2024-11-01").unwrap();
    let p = mini.prices.at(oct_2024).unwrap();
    assert_eq!((&*p.version, p.price.cached_input.0), ("2024-10-02", 75_000));
    let gpt4o = &c.models["gpt-4o"].deployments[0];
    let june_2024 = crate::clock::parse_time("2024-06-01").unwrap();
    assert_eq!(gpt4o.prices.at(june_2024).unwrap().price.input.0, 5_000_000);
    assert_eq!(&*c.models["demo"].deployments[0].prices.points()[0].version, "config");
    let kinds: Vec<ProviderKind> = c.providers.values().map(|p| p.kind).collect();
    for k in [ProviderKind::Openai, ProviderKind::Anthropic, ProviderKind::Mock] {
        assert!(kinds.contains(&k), "example covers {k:?}");
    }
}

#[test]
fn reports_every_problem_at_once_with_paths() {
    let text = r#"
        colour = "blue"
        [server]
        listen = "not an address"
        [providers.a]
        kind = "openai"
        base_url = "ftp://x"
        api_key_env = "MISSING_KEY"
        [providers.b]
        kind = "nope"
        [models.m]
        fallbacks = ["ghost"]
        [[models.m.deployments]]
        provider = "zzz"
        model = "x"
        weight = 0
        input_per_mtok = "-1"
        output_per_mtok = "abc"
        context_window = 1000
        [[models.m.deployments]]
        provider = "a"
        model = "y"
        input_per_mtok = 1
        output_per_mtok = 2
        context_window = 1000
        surprise = true
    "#;
    let err = load(text).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "colour",
        "server.listen",
        "providers.a.base_url",
        "providers.a.api_key_env",
        "providers.b.kind",
        "models.m.fallbacks",
        "models.m.deployments[0].provider",
        "models.m.deployments[0].weight",
        "models.m.deployments[0].input_per_mtok",
        "models.m.deployments[0].output_per_mtok",
        "models.m.deployments[1].surprise",
    ] {
        assert!(paths.contains(&want), "missing problem at {want}; got {paths:?}");
    }
    let unknown = err
        .0
        .iter()
        .find(|p| p.path == "models.m.deployments[1].surprise")
        .unwrap();
    assert!(unknown.message.contains("unknown field"), "{}", unknown.message);
}

#[test]
fn env_overlay_overrides_and_types_values() {
    let vars = vec![
        ("SWITCHYARD_SERVER__LISTEN".to_string(), "0.0.0.0:9999".to_string()),
        ("SWITCHYARD_SERVER__MAX_BODY_BYTES".to_string(), "1024".to_string()),
        ("SWITCHYARD_PROVIDERS__DEMO__LATENCY_MS".to_string(), "0".to_string()),
        ("SWITCHYARD_MASTER_KEY".to_string(), "ignored, not a path".to_string()),
    ];
    let c = Config::from_toml(DEMO_CONFIG, &no_env, vars).unwrap();
    assert_eq!(c.server.listen.port(), 9999);
    assert_eq!(c.server.max_body_bytes, 1024);
    assert_eq!(c.providers["demo"].latency_ms, 0);
}

#[test]
fn env_overlay_unknown_key_is_rejected() {
    let vars = vec![("SWITCHYARD_SERVER__LISTN".to_string(), "1".to_string())];
    let err = Config::from_toml(DEMO_CONFIG, &no_env, vars).unwrap_err();
    assert!(err.0.iter().any(|p| p.message.contains("listn")), "{err}");
}

#[test]
fn secrets_are_read_from_env_and_never_printed() {
    let text = r#"
        [providers.o]
        kind = "openai"
        api_key_env = "MY_KEY"
    "#;
    let env = |k: &str| (k == "MY_KEY").then(|| "sk-very-secret".to_string());
    let c = Config::from_toml(text, &env, std::iter::empty()).unwrap();
    let p = &c.providers["o"];
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-very-secret");
    let printed = format!("{c:?}");
    assert!(!printed.contains("sk-very-secret"));
}

#[test]
fn urls_and_headers_that_hold_secrets_are_not_printed() {
    let text = r#"
        [database]
        url = "postgres://app:db-password-1@db.internal/switchyard"
        [billing]
        url = "https://billing-token-2@billing.internal"
        [providers.azure]
        kind = "openai"
        base_url = "https://user:url-password-3@example.openai.azure.com/openai/v1"
        headers = { "api-key" = "azure-secret-4" }
    "#;
    let c = Config::from_toml(text, &no_env, std::iter::empty()).unwrap();
    assert_eq!(
        c.providers["azure"].headers["api-key"], "azure-secret-4",
        "still sent upstream"
    );
    let printed = format!("{c:?}");
    for secret in ["db-password-1", "billing-token-2", "url-password-3", "azure-secret-4"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("api-key") && printed.contains("db.internal"),
        "{printed}"
    );
}

fn table_dir(prices: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-prices-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prices.toml"), prices).unwrap();
    dir
}

const TWO_VERSIONS: &str = r#"
    [[versions]]
    id = "v1"
    effective = "2025-01-01"
    prices."p/a" = { input = "1", output = "2" }
    prices."p/b" = { input = "3", output = "4", cached_input = "0.5" }
    [[versions]]
    id = "v2"
    effective = "2025-06-01T12:00:00Z"
    prices."p/a" = { input = "0.5", output = 1 }
"#;

#[test]
fn price_table_versions_apply_from_their_effective_time() {
    let dir = table_dir(TWO_VERSIONS);
    let text = r#"
        [pricing]
        file = "prices.toml"
        [providers.p]
        kind = "mock"
        [[models.a.deployments]]
        provider = "p"
        model = "a"
        context_window = 10
        [[models.b.deployments]]
        provider = "p"
        model = "b"
        context_window = 10
    "#;
    let c = Config::parse(text, Some(&dir), &no_env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
    let a = &c.models["a"].deployments[0].prices;
    let t = |s: &str| crate::clock::parse_time(s).unwrap();
    assert!(
        a.at(t("2024-12-31T23:59:59Z")).is_none(),
        "no price before the first version"
    );
    assert_eq!(&*a.at_or_first(t("2024-12-31")).version, "v1");
    assert_eq!(&*a.at(t("2025-06-01T11:59:59Z")).unwrap().version, "v1");
    let v2 = a.at(t("2025-06-01T12:00:00Z")).unwrap();
    assert_eq!(
        (&*v2.version, v2.price.input.0, v2.price.output.0),
        ("v2", 500_000, 1_000_000)
    );
    assert_eq!(v2.price.cached_input, v2.price.input, "cached input defaults to input");
    // b is not named by v2: it keeps v1's price.
    let b = c.models["b"].deployments[0].prices.at(t("2026-01-01")).unwrap();
    assert_eq!((&*b.version, b.price.cached_input.0), ("v1", 500_000));
    let book = c.price_book();
    assert_eq!(book.versions.len(), 2);
    assert_eq!(
        book.price_at("a", "p/a", t("2025-07-01")).unwrap().price.input.0,
        500_000
    );
    assert!(book.price_at("a", "p/zzz", t("2025-07-01")).is_none());
}

#[test]
fn a_deployment_is_priced_exactly_once() {
    let dir = table_dir(TWO_VERSIONS);
    let text = r#"
        [pricing]
        file = "prices.toml"
        [providers.p]
        kind = "mock"
        [[models.a.deployments]]
        provider = "p"
        model = "a"
        input_per_mtok = "1"
        output_per_mtok = "1"
        context_window = 10
        [[models.c.deployments]]
        provider = "p"
        model = "c"
        context_window = 10
    "#;
    let err = Config::parse(text, Some(&dir), &no_env, std::iter::empty()).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"models.a.deployments[0]"), "{err}");
    assert!(paths.contains(&"models.c.deployments[0].input_per_mtok"), "{err}");
    assert!(paths.contains(&"models.c.deployments[0].output_per_mtok"), "{err}");
    assert!(err.to_string().contains("both inline and in the price table"), "{err}");
}

#[test]
fn inline_prices_of_one_deployment_id_under_two_models_stay_apart() {
    let text = r#"
        [providers.p]
        kind = "mock"
        [[models.a.deployments]]
        provider = "p"
        model = "x"
        input_per_mtok = "1"
        output_per_mtok = "1"
        context_window = 10
        [[models.markup.deployments]]
        provider = "p"
        model = "x"
        input_per_mtok = "2"
        output_per_mtok = "1"
        context_window = 10
        [[models.y.deployments]]
        provider = "p"
        model = "y"
        input_per_mtok = "3"
        output_per_mtok = "1"
        context_window = 10
    "#;
    let book = load(text).unwrap().price_book();
    let input = |m: &str, d: &str| book.price_at(m, d, 0).map(|p| p.price.input.0);
    assert_eq!(input("a", "p/x"), Some(1_000_000));
    assert_eq!(input("markup", "p/x"), Some(2_000_000));
    assert_eq!(input("other", "p/x"), None, "ambiguous without its model");
    assert_eq!(
        input("other", "p/y"),
        Some(3_000_000),
        "unambiguous: a fallback's event"
    );
}

#[test]
fn bad_price_tables_are_refused_with_paths() {
    let dir = table_dir(
        r#"
        [[versions]]
        id = "v2"
        effective = "2025-06-01"
        prices."p/a" = { input = "-1", output = "x" }
        [[versions]]
        id = "v2"
        effective = "2025-01-01"
        [[versions]]
        id = "v3"
        effective = "June"
        "#,
    );
    let text = "[pricing]\nfile = \"prices.toml\"\n";
    let err = Config::parse(text, Some(&dir), &no_env, std::iter::empty())
        .unwrap_err()
        .to_string();
    for want in [
        "versions[0].prices.\"p/a\".input",
        "versions[0].prices.\"p/a\".output",
        "versions[1].id: duplicate version",
        "versions[1].effective: must be later",
        "versions[2].effective",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    let missing = Config::parse(
        "[pricing]\nfile = \"nope.toml\"\n",
        Some(&dir),
        &no_env,
        std::iter::empty(),
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("pricing.file: cannot read"), "{missing}");
}

#[test]
fn billing_settings_are_checked() {
    let text = r#"
        [billing]
        url = "ftp://billing"
        api_key_env = "SURELY_UNSET_BILLING_KEY"
        batch_size = 0
        concurrency = 100
    "#;
    let err = load(text).unwrap_err().to_string();
    for want in [
        "billing.url",
        "billing.api_key_env",
        "billing.batch_size",
        "billing.concurrency",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    let ok = load("[billing]\nurl = \"http://127.0.0.1:3000/\"\n").unwrap();
    assert!(ok.billing.enabled());
    assert_eq!(ok.billing.url, "http://127.0.0.1:3000");
    assert!(!load("").unwrap().billing.enabled());
}

#[test]
fn float_prices_are_read_exactly() {
    let text = r#"
        [providers.o]
        kind = "mock"
        [[models.m.deployments]]
        provider = "o"
        model = "m"
        input_per_mtok = 0.15
        output_per_mtok = 0.6
        context_window = 10
    "#;
    let c = load(text).unwrap();
    let p = c.models["m"].deployments[0].prices.points()[0].price;
    assert_eq!(p.input.0, 150_000);
    assert_eq!(p.output.0, 600_000);
    assert_eq!(p.cached_input, p.input);
}

#[test]
fn cache_settings_are_checked() {
    let text = r#"
        [cache]
        ttl_secs = 0
        scope = "planet"
    "#;
    assert!(load(text).unwrap_err().to_string().contains("cache"));
    let text = r#"
        [cache]
        ttl_secs = 0
        [cache.semantic]
        threshold = 1.5
        max_temperature = 3
        embedder = "remote"
        [cache.models.nowhere]
        ttl_secs = 0
    "#;
    let err = load(text).unwrap_err().to_string();
    for want in [
        "cache: max_bytes, max_entry_bytes and ttl_secs",
        "cache.semantic.threshold",
        "cache.semantic.max_temperature",
        "cache.models.nowhere: not a model or route",
        "cache.models.nowhere.ttl_secs",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    let demo = Config::demo();
    assert!(demo.cache.enabled, "the demo caches");
    assert!(!load("").unwrap().cache.enabled, "off unless configured");
}

#[test]
fn request_log_settings_are_checked_and_the_example_shows_the_defaults() {
    let text = r#"
        [request_log]
        max_body_bytes = 0
        body_retention_hours = 0
        redact = ["fine", "(unclosed"]
    "#;
    let err = load(text).unwrap_err().to_string();
    for want in [
        "request_log.max_body_bytes",
        "request_log.body_retention_hours",
        "request_log.redact: pattern 1 (`(unclosed`)",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    assert!(load("[request_log]\ncolour = 1").is_err(), "unknown fields are refused");
    let d = RequestLogConfig::default();
    let c = load("").unwrap();
    assert_eq!(
        (c.request_log.max_body_bytes, c.request_log.redact.len()),
        (d.max_body_bytes, d.redact.len())
    );
    // The example documents the defaults; it must not drift from them.
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let example = std::fs::read_to_string(dir.join("switchyard.example.toml")).unwrap();
    let env = |k: &str| Some(format!("test-secret-for-{k}"));
    let e = Config::parse(&example, Some(dir), &env, std::iter::empty()).unwrap();
    assert_eq!(e.request_log.redact, d.redact);
    assert_eq!(
        (e.request_log.max_body_bytes, e.request_log.body_retention_hours),
        (d.max_body_bytes, d.body_retention_hours)
    );
    assert!(
        e.routes.iter().any(|r| r.store_bodies),
        "the example shows a route that opts in"
    );
    assert!(!c.routes.iter().any(|r| r.store_bodies));
}

#[test]
fn server_bounds_and_origins_are_checked() {
    let text = r#"
        [server]
        body_read_timeout_secs = 0
        write_stall_timeout_secs = 0
        max_in_flight = 0
        cors_allow_origins = ["https://app.example.com", "*", "app.example.com", "https://x/path"]
    "#;
    let err = load(text).unwrap_err().to_string();
    for want in [
        "server.body_read_timeout_secs",
        "server.write_stall_timeout_secs",
        "server.max_in_flight",
        "server.cors_allow_origins[2]",
        "server.cors_allow_origins[3]",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
    assert!(
        !err.contains("cors_allow_origins[0]") && !err.contains("cors_allow_origins[1]"),
        "{err}"
    );
    assert!(
        load("").unwrap().server.cors_allow_origins.is_empty(),
        "closed by default"
    );
}
