//! What the admin API answers, as Rust types: each is serialized for the response and describes
//! itself in the OpenAPI document (`utoipa`), so the document cannot drift from the bodies.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::iso8601;
use crate::money::pricing::Nanos;
use crate::records::keys::{KeyRecord, KeyStatus, Prefer, TeamRecord};
use crate::records::limits::{BudgetAlert, Limits, Period};
use crate::records::usage::UsageEvent;
use crate::store::Totals;

/// Declares a one-value string enum for a response's `object` field. Its schema is written
/// here (a string with that one value), as the derive cannot see a literal passed to a macro.
macro_rules! object_tag {
    ($($name:ident = $value:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, Default, Serialize)]
        pub(crate) enum $name {
            #[default]
            #[serde(rename = $value)]
            Tag,
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$value]))
                    .into()
            }
        }

        impl ToSchema for $name {}
    )*};
}

object_tag! {
    ListTag = "list",
    TeamTag = "team",
    KeyTag = "api_key",
    UsageTag = "usage",
    SummaryTag = "usage.summary",
    RequestLogTag = "request_log",
    MixTag = "routes.mix",
    RepriceTag = "usage.reprice",
    PricesTag = "prices",
    OutboxTag = "billing.outbox",
    RequeueTag = "billing.requeue",
}

/// An ISO 8601 UTC time with milliseconds, e.g. `2026-11-23T18:45:40.123Z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(format = DateTime, example = "2026-11-23T18:45:40.123Z")]
pub(crate) struct Iso(String);

impl Iso {
    pub(crate) fn at(ms: i64) -> Iso {
        Iso(iso8601(ms))
    }
}

/// A USD amount as a decimal string with nine decimals, e.g. `"3.417265500"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(example = "3.417265500", pattern = r"^-?[0-9]+\.[0-9]{9}$")]
pub(crate) struct Dollars(String);

impl Dollars {
    pub(crate) fn of(nanos: i64) -> Dollars {
        Dollars(Nanos(nanos).to_string())
    }
}

/// Declares a `{"object": "list", "data": [...]}` response of one item type.
macro_rules! list_of {
    ($($(#[$m:meta])* $name:ident of $item:ty),* $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug, Serialize, ToSchema)]
        pub(crate) struct $name {
            #[schema(inline)]
            pub object: ListTag,
            pub data: Vec<$item>,
        }

        impl From<Vec<$item>> for $name {
            fn from(data: Vec<$item>) -> $name {
                $name { object: ListTag::Tag, data }
            }
        }
    )*};
}

list_of! {
    /// Teams, oldest first.
    TeamList of Team,
    /// Keys, oldest first. Secrets are never listed.
    KeyList of Key,
    /// Budget alerts, newest first.
    AlertList of Alert,
    /// The routes in force.
    RouteList of crate::router::policy::Route,
    /// Statistics per route, by route name.
    RouteStatsList of RouteStats,
    /// Dashboard users, by name.
    UserList of User,
    /// Deployments, by logical model and order.
    DeploymentList of DeploymentOut,
}

/// A deployment's state now and its record over a period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeploymentOut {
    pub id: String,
    /// The logical model it serves.
    pub model: String,
    pub provider: String,
    /// `open` (skipped until it cools down) or `closed`.
    #[schema(value_type = String, pattern = "^(open|closed)$")]
    pub breaker: &'static str,
    /// Requests it is serving now.
    pub inflight: u32,
    /// Requests it served or last tried in the period.
    pub requests: i64,
    /// Of those, how many failed.
    pub failed: i64,
    /// `failed / requests`, 0 without requests.
    pub error_rate: f64,
    /// Of its successful answers.
    pub latency: PercentilesOut,
}

/// A spending limit, as returned.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BudgetOut {
    /// The limit in USD.
    pub limit_usd: Dollars,
    pub period: Period,
    /// Percentage of the limit at which responses carry a warning and an alert is raised.
    #[schema(maximum = 100)]
    pub soft_limit_pct: u8,
    /// Start of the current period (`1970-01-01T00:00:00.000Z` for a `total` budget).
    pub period_start: Iso,
    /// Start of the next period; `null` for a `total` budget.
    pub resets_at: Option<Iso>,
    /// Settled plus unflushed spend in the current period as this gateway process knows it;
    /// `null` when this process has not loaded the scope yet. Other replicas' spend may be missing.
    pub spent_usd_local: Option<Dollars>,
}

/// What a key or team may do, as returned. `null` means no limit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LimitsOut {
    pub budget: Option<BudgetOut>,
    /// Requests per minute.
    #[schema(minimum = 1)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[schema(minimum = 1)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[schema(minimum = 1)]
    pub max_concurrent: Option<u32>,
}

impl LimitsOut {
    /// `spent` is this process's view of the scope's spend in nanodollars, when it has one.
    pub(crate) fn of(l: &Limits, now_ms: i64, spent: Option<i64>) -> LimitsOut {
        let budget = l.budget.map(|b| {
            let ps = b.period.start_of(now_ms);
            BudgetOut {
                limit_usd: Dollars::of(b.limit.0),
                period: b.period,
                soft_limit_pct: b.soft_pct,
                period_start: Iso::at(ps),
                resets_at: b.period.next_start(ps).map(Iso::at),
                spent_usd_local: spent.map(Dollars::of),
            }
        });
        LimitsOut {
            budget,
            rpm: l.rpm,
            tpm: l.tpm,
            max_concurrent: l.max_concurrent,
        }
    }
}

/// A team: it groups keys and carries its own limits and budget.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Team {
    /// `team_` followed by 16 hex digits.
    #[schema(example = "team_3f9a1c2b7d4e5f60")]
    pub id: String,
    #[schema(inline)]
    pub object: TeamTag,
    /// Unique among teams.
    pub name: String,
    pub cost_center: Option<String>,
    pub limits: LimitsOut,
    /// The request log stores the bodies of its keys' requests.
    pub store_bodies: bool,
    pub created_at: Iso,
    pub updated_at: Iso,
}

impl Team {
    pub(crate) fn of(t: &TeamRecord, limits: LimitsOut) -> Team {
        Team {
            id: t.id.clone(),
            object: TeamTag::Tag,
            name: t.name.clone(),
            cost_center: t.cost_center.clone(),
            limits,
            store_bodies: t.store_bodies,
            created_at: Iso::at(t.created_ms),
            updated_at: Iso::at(t.updated_ms),
        }
    }
}

/// A deleted team.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TeamDeleted {
    pub id: String,
    #[schema(inline)]
    pub object: TeamTag,
    /// Always `true`.
    pub deleted: bool,
}

/// A virtual API key for the `/v1` API. Its secret is returned only on creation and rotation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Key {
    /// `key_` followed by 16 hex digits.
    #[schema(example = "key_a1b2c3d4e5f60718")]
    pub id: String,
    #[schema(inline)]
    pub object: KeyTag,
    pub name: String,
    /// The visible start of the secret (`sk-sy-` and 6 more characters), to recognise a key.
    #[schema(example = "sk-sy-Ab12Cd")]
    pub prefix: String,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Vec<String>,
    /// Logical models this key may call; `null` means all.
    pub allowed_models: Option<Vec<String>>,
    /// The routing preference for this key's requests that send no `x-switchyard-prefer`
    /// header; `null`: balanced.
    pub route_prefer: Option<Prefer>,
    /// When the key stops working; `null` if it does not expire.
    pub expires_at: Option<Iso>,
    pub status: KeyStatus,
    pub limits: LimitsOut,
    /// The request log stores the bodies of this key's requests (its team's setting is on the team).
    pub store_bodies: bool,
    pub created_at: Iso,
    pub updated_at: Iso,
    /// When the secret was last rotated; `null` if never.
    pub rotated_at: Option<Iso>,
}

impl Key {
    pub(crate) fn of(k: &KeyRecord, limits: LimitsOut) -> Key {
        Key {
            id: k.id.clone(),
            object: KeyTag::Tag,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            team_id: k.team_id.clone(),
            cost_center: k.cost_center.clone(),
            tags: k.tags.clone(),
            allowed_models: k.allowed_models.clone(),
            route_prefer: k.route_prefer,
            expires_at: k.expires_ms.map(Iso::at),
            status: k.status,
            limits,
            store_bodies: k.store_bodies,
            created_at: Iso::at(k.created_ms),
            updated_at: Iso::at(k.updated_ms),
            rotated_at: k.rotated_ms.map(Iso::at),
        }
    }
}

/// A key together with its secret. The secret is shown only in this response; store it now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyWithSecret {
    #[serde(flatten)]
    pub key: Key,
    /// The secret, to send as `Authorization: Bearer …` on `/v1`.
    #[serde(rename = "key")]
    #[schema(example = "sk-sy-Ab12Cd…")]
    pub secret: String,
}

/// Sums over usage events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TotalsOut {
    /// Requests counted.
    pub requests: i64,
    /// Requests whose outcome was not `success`.
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: Dollars,
    /// The same cost in billionths of a USD.
    pub cost_nanos: i64,
    /// Requests the response cache answered.
    pub cache_hits: i64,
    /// What the cache's answers cost when they were made: what it saved.
    pub cache_saved_usd: Dollars,
    pub cache_saved_nanos: i64,
    /// What the requests would have cost sent to their route's strong model, with no cache
    /// (for a request no route chose: its cost plus the cache's saving). `baseline − cost` is
    /// what the gateway saved; `baseline − cost − cache_saved` is routing's part.
    pub baseline_usd: Dollars,
    pub baseline_nanos: i64,
    /// The part of the cost whose usage the gateway estimated (the upstream reported none it
    /// could believe); the rest was tracked from the upstream's report.
    pub estimated_cost_usd: Dollars,
    pub estimated_cost_nanos: i64,
}

impl From<&Totals> for TotalsOut {
    fn from(t: &Totals) -> TotalsOut {
        TotalsOut {
            requests: t.requests,
            errors: t.errors,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cached_tokens: t.cached_tokens,
            cost_usd: Dollars::of(t.cost_nanos),
            cost_nanos: t.cost_nanos,
            cache_hits: t.cache_hits,
            cache_saved_usd: Dollars::of(t.saved_nanos),
            cache_saved_nanos: t.saved_nanos,
            baseline_usd: Dollars::of(t.baseline_nanos),
            baseline_nanos: t.baseline_nanos,
            estimated_cost_usd: Dollars::of(t.estimated_cost_nanos),
            estimated_cost_nanos: t.estimated_cost_nanos,
        }
    }
}

/// Percentiles of a latency in milliseconds, from histogram buckets (within 1/16 of the true
/// value); `null` without samples.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PercentilesOut {
    pub samples: i64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl From<&crate::store::Percentiles> for PercentilesOut {
    fn from(p: &crate::store::Percentiles) -> PercentilesOut {
        PercentilesOut {
            samples: p.samples,
            p50_ms: p.p50_ms,
            p95_ms: p.p95_ms,
            p99_ms: p.p99_ms,
        }
    }
}

/// A count of requests with one label.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LabelCount {
    pub label: String,
    pub requests: i64,
}

/// A period's summary: totals, latency, errors and the routing mix.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageSummary {
    #[schema(inline)]
    pub object: SummaryTag,
    pub from: Option<Iso>,
    pub to: Option<Iso>,
    pub totals: TotalsOut,
    /// Of successful requests, from arrival to the last byte.
    pub latency: PercentilesOut,
    /// Of successful streams, from arrival to the first token.
    pub time_to_first_token: PercentilesOut,
    /// Failed requests by error kind, most first.
    pub errors: Vec<LabelCount>,
    /// Routed requests by tier (`cheap`, `strong`, `specialist`), most first.
    pub tiers: Vec<LabelCount>,
    /// Routed requests by the intent the router saw, most first.
    pub intents: Vec<LabelCount>,
}

/// Totals of one group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageGroup {
    /// The group's label: an ISO time for `hour` and `day`, else the key, team or model.
    pub group: String,
    #[serde(flatten)]
    pub totals: TotalsOut,
}

/// A usage report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageReport {
    #[schema(inline)]
    pub object: UsageTag,
    /// The `from` bound as parsed, or `null` if not given.
    pub from: Option<Iso>,
    /// The `to` bound as parsed (exclusive), or `null` if not given.
    pub to: Option<Iso>,
    /// The grouping asked for, or `null`.
    pub group_by: Option<String>,
    /// Totals over everything matching the filters.
    pub totals: TotalsOut,
    /// One entry per group, ordered by group label; empty when `group_by` is not given.
    pub groups: Vec<UsageGroup>,
}

/// One usage event in the JSON export: every stored column, plus `timestamp` and `cost_usd`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExportRow<'a> {
    /// `ts_ms` as an ISO 8601 time.
    pub timestamp: Iso,
    /// `cost_nanos` in USD.
    pub cost_usd: Dollars,
    #[serde(flatten)]
    pub event: &'a UsageEvent,
}

impl<'a> From<&'a UsageEvent> for ExportRow<'a> {
    fn from(event: &'a UsageEvent) -> ExportRow<'a> {
        ExportRow {
            timestamp: Iso::at(event.ts_ms),
            cost_usd: Dollars::of(event.cost_nanos),
            event,
        }
    }
}

/// Routed requests of one label in one hour or day.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MixRow {
    /// The hour or day, as an ISO time.
    pub group: String,
    pub label: String,
    pub requests: i64,
}

/// The routing mix over time, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MixOut {
    #[schema(inline)]
    pub object: MixTag,
    /// `hour` or `day`.
    pub group_by: &'static str,
    /// By tier: `cheap`, `strong`, `specialist`.
    pub tiers: Vec<MixRow>,
    /// By the intent the router saw.
    pub intents: Vec<MixRow>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditList {
    #[schema(inline)]
    pub object: ListTag,
    pub data: Vec<crate::records::audit::AuditEntry>,
    /// The `before` of the next page; `null` on the last.
    pub next: Option<String>,
}

/// A page of the request log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestLog<'a> {
    #[schema(inline)]
    pub object: RequestLogTag,
    pub data: Vec<ExportRow<'a>>,
    /// The `before` of the next page; `null` on the last.
    pub next: Option<String>,
}

/// The JSON export: every matching event, oldest first, then totals over them. (It is
/// streamed page by page; this type describes it and is never built whole.)
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct UsageExport<'a> {
    #[schema(inline)]
    pub object: ListTag,
    pub data: Vec<ExportRow<'a>>,
    pub totals: TotalsOut,
}

/// What a re-pricing run found and changed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RepriceOut {
    #[schema(inline)]
    pub object: RepriceTag,
    pub dry_run: bool,
    /// Events in the range.
    pub events: u64,
    /// Events whose cost or price version differs under the price table (updated unless a dry run).
    pub changed: u64,
    /// Events whose deployment has no price for their time; left unchanged.
    pub unpriced: u64,
    pub cost_before_usd: Dollars,
    pub cost_after_usd: Dollars,
    pub cost_before_nanos: i64,
    pub cost_after_nanos: i64,
}

/// One price of a deployment, from a time on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PricePointOut {
    /// Price table version id, or `config` for a price written inline in the config.
    pub version: String,
    /// When this price takes effect (`null`: an inline price, in force for all time).
    pub effective: Option<Iso>,
    /// USD per million input tokens.
    #[schema(example = "2.5")]
    pub input_per_mtok: String,
    /// USD per million output tokens.
    pub output_per_mtok: String,
    /// USD per million input tokens read from the provider's prompt cache.
    pub cached_input_per_mtok: String,
}

/// A deployment's prices over time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeploymentPrices {
    pub deployment: String,
    pub prices: Vec<PricePointOut>,
}

/// A version of the price table.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PriceVersionOut {
    pub id: String,
    pub effective: Iso,
    pub note: Option<String>,
}

/// The price table.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Prices {
    #[schema(inline)]
    pub object: PricesTag,
    pub versions: Vec<PriceVersionOut>,
    pub deployments: Vec<DeploymentPrices>,
}

/// A budget crossing its soft threshold or refusing its first request in a period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Alert {
    /// `key:ID` or `team:ID`.
    pub scope: String,
    /// `soft`: settled spend reached the soft threshold; `hard`: the first request refused for
    /// the budget in this period.
    #[schema(value_type = String, pattern = "^(soft|hard)$")]
    pub kind: &'static str,
    pub period_start: Iso,
    pub at: Iso,
    pub spent_usd: Dollars,
    pub limit_usd: Dollars,
}

impl From<&BudgetAlert> for Alert {
    fn from(a: &BudgetAlert) -> Alert {
        Alert {
            scope: a.scope.clone(),
            kind: a.kind,
            period_start: Iso::at(a.period_start),
            at: Iso::at(a.ts_ms),
            spent_usd: Dollars::of(a.spent_nanos),
            limit_usd: Dollars::of(a.limit_nanos),
        }
    }
}

/// The billing outbox.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BillingOutbox {
    #[schema(inline)]
    pub object: OutboxTag,
    /// Billing events not yet acknowledged by the webhook.
    pub pending: i64,
    /// Billing events the receiver refused for good (a validation error other than a
    /// duplicate); they wait for `POST /admin/v1/billing/requeue`.
    pub rejected: i64,
    /// Delivered events still kept (pruned after `billing.retain_delivered_hours`).
    pub delivered_retained: i64,
    /// The time of the oldest event waiting for delivery.
    pub oldest_pending: Option<Iso>,
    /// Most attempts made on one pending event.
    pub max_attempts: i64,
    /// The most recent delivery error of a pending event.
    pub last_error: Option<String>,
}

/// Rejected billing events put back in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BillingRequeue {
    #[schema(inline)]
    pub object: RequeueTag,
    pub requeued: u64,
}

/// Requests and cost of one experiment arm.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct VariantStats {
    pub requests: i64,
    pub cost_nanos: i64,
}

/// A shadow policy's record: how often it agreed and what its choices would have cost.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct ShadowStats {
    /// Requests a shadow policy decided alongside.
    pub requests: i64,
    /// Of those, how many it chose the model that served.
    pub agreed: i64,
    /// What those requests cost.
    pub actual_cost_nanos: i64,
    /// What they would have cost on the shadow's choices (the same tokens at its models'
    /// current prices).
    pub projected_cost_nanos: i64,
    /// Requests per model the shadow chose.
    pub by_model: BTreeMap<String, i64>,
}

/// A cascade's record.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct CascadeStats {
    /// Cheap answers that passed every check.
    pub accepted: i64,
    /// Streamed cheap answers too long to hold back, passed on unchecked.
    pub unchecked: i64,
    /// Cheap answers discarded for the strong model's.
    pub escalated: i64,
    /// Escalations per reason.
    pub by_reason: BTreeMap<String, i64>,
    /// What the discarded attempts cost (part of `cost_nanos`).
    pub escalation_cost_nanos: i64,
}

/// One route's statistics over the events in range.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct RouteStats {
    pub route: String,
    pub requests: i64,
    pub cost_nanos: i64,
    /// Requests per model served.
    pub by_model: BTreeMap<String, i64>,
    /// Per experiment arm (the route whose policy decided).
    pub by_variant: BTreeMap<String, VariantStats>,
    pub shadow: ShadowStats,
    pub cascade: CascadeStats,
}

/// A dashboard user (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct User {
    pub name: String,
    #[schema(example = "viewer")]
    pub role: String,
    pub created_at: Iso,
}

impl User {
    pub(crate) fn of(u: &crate::records::dashboard::UserRecord) -> User {
        User {
            name: u.name.clone(),
            role: u.role.as_str().to_string(),
            created_at: Iso::at(u.created_ms),
        }
    }
}

/// A deleted user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserDeleted {
    pub name: String,
    pub deleted: bool,
}
