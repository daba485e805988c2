//! What the pages show: the signed-in viewer, and the admin API's answers as the dashboard reads
//! them (only the fields it shows; the API's own schema is the OpenAPI document).

use serde::{Deserialize, Serialize};

/// What a dashboard user may do: everything, or read only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// The signed-in user, as the session holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    /// The session's anti-forgery token, sent back by every form.
    pub csrf: String,
}

impl Viewer {
    pub fn can_edit(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The admin API's list shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: String,
    pub cost_nanos: i64,
    #[serde(default)]
    pub cache_hits: i64,
    #[serde(default)]
    pub cache_saved_nanos: i64,
    /// What the requests would have cost on their route's strong model, without the cache.
    #[serde(default)]
    pub baseline_nanos: i64,
    /// The part of the cost counted by the gateway, not reported by the upstream.
    #[serde(default)]
    pub estimated_cost_nanos: i64,
}

/// Latency percentiles in milliseconds (`GET /admin/v1/usage/summary`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub samples: i64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelCount {
    pub label: String,
    pub requests: i64,
}

/// `GET /admin/v1/usage/summary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub totals: Totals,
    pub latency: Percentiles,
    pub time_to_first_token: Percentiles,
    pub errors: Vec<LabelCount>,
    pub tiers: Vec<LabelCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub group: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// `GET /admin/v1/usage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub totals: Totals,
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub limit_usd: String,
    pub period: String,
    pub soft_limit_pct: u8,
    pub spent_usd_local: Option<String>,
    #[serde(default)]
    pub period_start: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

/// A virtual key (`GET /admin/v1/keys`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Vec<String>,
    pub allowed_models: Option<Vec<String>>,
    pub route_prefer: Option<String>,
    pub expires_at: Option<String>,
    pub status: String,
    pub limits: Limits,
    /// The request log stores this key's request and answer bodies.
    #[serde(default)]
    pub store_bodies: bool,
    pub created_at: String,
    #[serde(default)]
    pub rotated_at: Option<String>,
}

/// A team (`GET /admin/v1/teams`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub cost_center: Option<String>,
    pub limits: Limits,
    /// The request log stores the bodies of its keys' requests.
    #[serde(default)]
    pub store_bodies: bool,
    pub created_at: String,
}

/// The teams page: every team with its spend in its budget's current period (from the ledger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamRow {
    pub team: Team,
    pub keys: usize,
    /// Spend since the budget period began (or in the last 30 days without a budget), in USD.
    pub spent_usd: String,
}

/// A key's page: the key, its last 30 days, its spend in its budget's period, recent alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyPage {
    pub key: Key,
    pub summary: Summary,
    /// Spend and requests per day over the last 30 days, oldest first.
    pub series: Vec<Group>,
    /// Spend since the budget period began, from the ledger (USD), when the key has a budget.
    pub period_spent_usd: Option<String>,
    pub alerts: Vec<Alert>,
}

/// A budget alert (`GET /admin/v1/alerts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub scope: String,
    pub kind: String,
    pub spent_usd: String,
    pub limit_usd: String,
    /// When it was raised.
    pub at: String,
}

/// A key just made or rotated, with the secret shown once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub secret: String,
}

/// The overview page's numbers for one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub period: String,
    pub summary: Summary,
    /// Spend and requests per time bucket, oldest first.
    pub series: Vec<Group>,
    pub top_keys: Vec<Group>,
    pub top_teams: Vec<Group>,
    pub top_models: Vec<Group>,
    /// Key ids to names, for the top keys and the alerts.
    pub key_names: Vec<(String, String)>,
    /// The latest budget alerts, newest first.
    pub alerts: Vec<Alert>,
}

/// The usage page's filters, as the page's query holds them (blank: not filtered).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageQuery {
    /// `YYYY-MM-DD`, inclusive.
    pub from: String,
    /// `YYYY-MM-DD`, inclusive (the whole day).
    pub to: String,
    pub key_id: String,
    pub team_id: String,
    pub model: String,
    pub tag: String,
    pub cost_center: String,
    /// `day` (the default), `hour`, `key`, `team` or `model`.
    pub group_by: String,
}

/// The usage page: the filtered report, grouped, and the query its exports take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsagePage {
    pub report: UsageReport,
    pub group_by: String,
    /// The admin API's filter query for exactly this report (`from=…&to=…&key_id=…`).
    pub filter: String,
    /// Set when the grouping asked for was changed (hours over a long range become days).
    pub note: Option<String>,
}

/// One request of the log (`GET /admin/v1/requests`): the usage event's fields the pages show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggedRequest {
    pub event_id: String,
    pub request_id: String,
    pub timestamp: String,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub route: Option<String>,
    pub tier: Option<String>,
    pub intent: Option<String>,
    pub route_reason: Option<String>,
    pub route_variant: Option<String>,
    pub endpoint: String,
    pub model: String,
    pub deployment: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub usage_source: String,
    pub usage_flag: Option<String>,
    pub cost_usd: String,
    pub cost_nanos: i64,
    pub baseline_cost_nanos: i64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: u32,
    pub cache: Option<String>,
    pub cache_saved_nanos: i64,
    pub cascade: Option<String>,
    pub escalation_reason: Option<String>,
    pub shadow_model: Option<String>,
}

/// The bodies stored for one request (`GET /admin/v1/requests/{id}/bodies`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredBodies {
    pub request: String,
    pub response: String,
    pub request_truncated: bool,
    pub response_truncated: bool,
    pub redactions: u32,
}

/// What the request page shows of a request's bodies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BodiesView {
    Stored(StoredBodies),
    /// None are stored: not opted in, or expired.
    NotStored,
    /// They may be stored, but this user may not read them (viewers).
    AdminsOnly,
}

/// The request log's filters, as the page's query holds them (blank: not filtered).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestQuery {
    pub key_id: String,
    pub model: String,
    pub route: String,
    /// An outcome, or `failed`.
    pub outcome: String,
    pub request_id: String,
    /// The cursor of the page before.
    pub before: String,
}

/// A page of the request log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestPage {
    pub data: Vec<LoggedRequest>,
    pub next: Option<String>,
}

/// A route of the table in force (`GET /admin/v1/routes`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteRow {
    pub name: String,
    pub cheap: String,
    pub strong: String,
    pub strong_share: f64,
    pub intents: std::collections::BTreeMap<String, String>,
    pub description: Option<String>,
    pub experiment: Option<serde_json::Value>,
    pub shadow: Option<String>,
    pub cascade: Option<serde_json::Value>,
}

/// One route's statistics (`GET /admin/v1/routes/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteStatsRow {
    pub route: String,
    pub requests: i64,
    pub cost_nanos: i64,
    pub by_model: std::collections::BTreeMap<String, i64>,
    pub by_variant: std::collections::BTreeMap<String, VariantRow>,
    pub shadow: ShadowRow,
    pub cascade: CascadeRow,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VariantRow {
    pub requests: i64,
    pub cost_nanos: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowRow {
    pub requests: i64,
    pub agreed: i64,
    pub actual_cost_nanos: i64,
    pub projected_cost_nanos: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CascadeRow {
    pub accepted: i64,
    pub unchecked: i64,
    pub escalated: i64,
    pub by_reason: std::collections::BTreeMap<String, i64>,
    pub escalation_cost_nanos: i64,
}

/// Routed requests of one label in one hour or day (`GET /admin/v1/routes/mix`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MixRow {
    pub group: String,
    pub label: String,
    pub requests: i64,
}

/// The routing page for one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingPage {
    pub period: String,
    pub routes: Vec<RouteRow>,
    pub stats: Vec<RouteStatsRow>,
    /// The days (or hours) of the period, oldest first.
    pub buckets: Vec<String>,
    pub tiers: Vec<MixRow>,
    pub intents: Vec<MixRow>,
}

/// A decision explained (`POST /v1/route`), the fields the playground shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Explained {
    pub route: String,
    pub model: String,
    pub tier: String,
    pub intent: String,
    pub intent_confidence: f32,
    pub difficulty: f32,
    pub percentile: f32,
    pub threshold: f64,
    pub prefer: String,
    pub reason: String,
    pub variant: Option<String>,
}

/// A deployment now and over the last hour (`GET /admin/v1/deployments`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploymentRow {
    pub id: String,
    pub model: String,
    pub provider: String,
    pub breaker: String,
    pub inflight: u32,
    pub requests: i64,
    pub failed: i64,
    pub error_rate: f64,
    pub latency: Percentiles,
}

/// The cache's figures per scope and route (`GET /admin/v1/cache/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheScope {
    pub scope: String,
    pub target: String,
    pub hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub hit_rate: f64,
    pub saved_usd: String,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheStats {
    pub enabled: bool,
    pub entries: u64,
    pub bytes: u64,
    pub embedder: Option<String>,
    pub semantic_entries: u64,
    pub data: Vec<CacheScope>,
}

/// The providers page: deployments and the cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProvidersPage {
    pub deployments: Vec<DeploymentRow>,
    pub cache: CacheStats,
}

/// An admin change (`GET /admin/v1/audit`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRow {
    pub id: String,
    pub ts_ms: i64,
    pub actor: String,
    pub via: String,
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// A page of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub data: Vec<AuditRow>,
    pub next: Option<String>,
}
