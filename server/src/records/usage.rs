//! The usage event: one ledger row per accepted request, its columns defined once.
//!
//! [`UsageEvent`] is written by the ledger writer, read back by reports, exports and billing, and
//! described by the admin API's schema. Its fields are declared once, in the `ledger_row!` below,
//! which also yields the column names in order ([`UsageEvent::COLUMNS`]), the stored value of
//! each column ([`UsageEvent::cells`]) and the way back from stored values
//! ([`UsageEvent::from_cells`]). The insert, the row reader, the CSV and JSON exports and the
//! OpenAPI schema all go through these, so a new field cannot be forgotten in one of them.

use std::borrow::Cow;

use serde::Serialize;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Every attempt failed upstream, or the stream broke after it started.
    UpstreamError,
    /// The client disconnected before the answer was complete.
    ClientDisconnect,
    /// Accepted, then refused before any upstream call (no capable deployment, context too long).
    Rejected,
}

impl Outcome {
    /// The name used in metrics labels and ledger rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientDisconnect => "client_disconnect",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Success,
            Outcome::UpstreamError,
            Outcome::ClientDisconnect,
            Outcome::Rejected,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Where an event's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The upstream reported the token counts.
    Reported,
    /// The gateway counted them with tiktoken (upstream gave none, or the call ended early).
    Estimated,
    /// No upstream call consumed tokens (for example no deployment was reachable).
    None,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<UsageSource> {
        [UsageSource::Reported, UsageSource::Estimated, UsageSource::None]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Token counts of one call, in OpenAI's terms, as the gateway believes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache (priced separately).
    pub cached_tokens: u64,
}

/// Token counts exactly as an upstream reported them, unchecked: missing fields are `None`,
/// and any value, however absurd (negative, beyond `u64`), is kept as sent. Whether to believe
/// it is decided in one place, `money::accounting`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub prompt_tokens: Option<i128>,
    pub completion_tokens: Option<i128>,
    pub cached_tokens: Option<i128>,
    /// A field was there but not an integer (text, a fraction, an object).
    pub malformed: bool,
}

impl From<Usage> for Reported {
    fn from(u: Usage) -> Reported {
        Reported {
            prompt_tokens: Some(i128::from(u.prompt_tokens)),
            completion_tokens: Some(i128::from(u.completion_tokens)),
            cached_tokens: Some(i128::from(u.cached_tokens)),
            malformed: false,
        }
    }
}

/// A key's tags on its events: stored as a JSON array of strings, `NULL` when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Tags(pub Vec<String>);

/// How a column is stored: every column is `BIGINT` or `TEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
}

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

impl Cell<'_> {
    /// The value as text in an export (`NULL` is empty).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Cell::Int(Some(v)) => Cow::Owned(v.to_string()),
            Cell::Text(Some(t)) => Cow::Borrowed(t),
            Cell::Int(None) | Cell::Text(None) => Cow::Borrowed(""),
        }
    }
}

/// A field type as a ledger column: how it is stored and read back.
pub trait Column: Sized {
    const KIND: Kind;
    fn cell(&self) -> Cell<'_>;
    fn from_cell(cell: Cell<'static>) -> Result<Self, String>;
}

fn not_null<T>(v: Option<T>) -> Result<T, String> {
    v.ok_or_else(|| "unexpected NULL".to_string())
}

fn as_int(cell: Cell<'static>) -> Result<Option<i64>, String> {
    match cell {
        Cell::Int(v) => Ok(v),
        Cell::Text(_) => Err("expected an integer".into()),
    }
}

fn as_text(cell: Cell<'static>) -> Result<Option<Cow<'static, str>>, String> {
    match cell {
        Cell::Text(v) => Ok(v),
        Cell::Int(_) => Err("expected text".into()),
    }
}

/// Stored counts are never negative and fit in `i64`; a count above it is stored saturated.
fn stored_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Column for i64 {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(Some(*self))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        not_null(as_int(c)?)
    }
}

impl Column for Option<i64> {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(*self)
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        as_int(c)
    }
}

impl Column for u64 {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(Some(stored_count(*self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(not_null(as_int(c)?)?.max(0) as u64)
    }
}

impl Column for Option<u64> {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(self.map(stored_count))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(as_int(c)?.map(|v| v.max(0) as u64))
    }
}

impl Column for u32 {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(Some(i64::from(*self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(not_null(as_int(c)?)?.clamp(0, i64::from(u32::MAX)) as u32)
    }
}

impl Column for u16 {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(Some(i64::from(*self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(not_null(as_int(c)?)?.clamp(0, i64::from(u16::MAX)) as u16)
    }
}

impl Column for bool {
    const KIND: Kind = Kind::Int;
    fn cell(&self) -> Cell<'_> {
        Cell::Int(Some(i64::from(*self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(not_null(as_int(c)?)? != 0)
    }
}

impl Column for String {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(Some(Cow::Borrowed(self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(not_null(as_text(c)?)?.into_owned())
    }
}

impl Column for Option<String> {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(self.as_deref().map(Cow::Borrowed))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        Ok(as_text(c)?.map(Cow::into_owned))
    }
}

impl Column for Cow<'static, str> {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(Some(Cow::Borrowed(self)))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        not_null(as_text(c)?)
    }
}

impl Column for Option<Cow<'static, str>> {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(self.as_deref().map(Cow::Borrowed))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        as_text(c)
    }
}

impl Column for Outcome {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(Some(Cow::Borrowed(self.as_str())))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        let t = not_null(as_text(c)?)?;
        Outcome::parse(&t).ok_or_else(|| format!("unknown outcome `{t}`"))
    }
}

impl Column for UsageSource {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(Some(Cow::Borrowed(self.as_str())))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        let t = not_null(as_text(c)?)?;
        UsageSource::parse(&t).ok_or_else(|| format!("unknown usage source `{t}`"))
    }
}

impl Column for Tags {
    const KIND: Kind = Kind::Text;
    fn cell(&self) -> Cell<'_> {
        if self.0.is_empty() {
            return Cell::Text(None);
        }
        Cell::Text(Some(Cow::Owned(
            serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".into()),
        )))
    }
    fn from_cell(c: Cell<'static>) -> Result<Self, String> {
        match as_text(c)? {
            None => Ok(Tags::default()),
            Some(t) => serde_json::from_str(&t)
                .map(Tags)
                .map_err(|e| format!("stored tags `{t}` are not a JSON list: {e}")),
        }
    }
}

/// Declares the ledger row once: the struct, its column names in order, and its stored values.
macro_rules! ledger_row {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )* }) => {
        $(#[$meta])*
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }

        /// How many columns a ledger row has.
        pub const USAGE_COLUMN_COUNT: usize = [$(stringify!($field)),*].len();

        impl $name {
            /// The stored columns, in the order of [`Self::cells`].
            pub const COLUMNS: [&'static str; USAGE_COLUMN_COUNT] = [$(stringify!($field)),*];
            /// How each column is stored.
            pub const KINDS: [Kind; USAGE_COLUMN_COUNT] = [$(<$ty as Column>::KIND),*];

            /// Every column's stored value, in column order.
            pub fn cells(&self) -> [Cell<'_>; USAGE_COLUMN_COUNT] {
                [$(Column::cell(&self.$field)),*]
            }

            /// Reads a row back; `get(name, kind)` returns the stored value of one column.
            pub fn from_cells(
                mut get: impl FnMut(&'static str, Kind) -> Result<Cell<'static>, String>,
            ) -> Result<Self, String> {
                Ok($name {
                    $( $field: <$ty as Column>::from_cell(get(stringify!($field), <$ty as Column>::KIND)?)
                        .map_err(|e| format!("column {}: {e}", stringify!($field)))?, )*
                })
            }
        }
    };
}

ledger_row! {
    /// One accepted request as the ledger records it.
    #[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
    pub struct UsageEvent {
        /// Unique per event: the ledger's primary key and the billing transaction id.
        pub event_id: String,
        /// The client's `x-request-id`, or the one the gateway made.
        pub request_id: String,
        /// When the request arrived, in milliseconds since 1970 (UTC).
        pub ts_ms: i64,
        pub key_id: Option<String>,
        pub team_id: Option<String>,
        /// The key's cost center, else its team's.
        pub cost_center: Option<String>,
        pub tags: Tags,
        /// The routing policy that chose the model, when one did.
        pub route: Option<String>,
        /// `chat`, `embeddings` or `route` (a routing decision without a model call).
        pub endpoint: Cow<'static, str>,
        /// The model the client asked for, or the one its route chose (the one that answered).
        pub model: String,
        pub deployment: Option<String>,
        pub provider: Option<String>,
        pub stream: bool,
        /// The HTTP status the client got (200 for a stream that broke after it started).
        pub status: u16,
        pub outcome: Outcome,
        pub error_kind: Option<Cow<'static, str>>,
        /// All input tokens, cached ones included.
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
        pub cached_tokens: u64,
        pub usage_source: UsageSource,
        /// What the request cost in nanodollars, a discarded cascade attempt included.
        pub cost_nanos: i64,
        /// Which price the cost was computed with.
        pub price_version: Option<String>,
        pub latency_ms: u64,
        pub ttft_ms: Option<u64>,
        pub attempts: u32,
        pub request_bytes: u64,
        pub response_bytes: u64,
        /// The route policy that decided, when the route runs an experiment.
        pub route_variant: Option<String>,
        /// The model a shadow policy would have chosen.
        pub shadow_model: Option<String>,
        /// When a cascade ran: `accepted`, `unchecked` (a stream too long to hold back) or `escalated`.
        pub cascade: Option<Cow<'static, str>>,
        /// Why the cheap answer was escalated.
        pub escalation_reason: Option<Cow<'static, str>>,
        /// The cheap logical model an escalation discarded.
        pub escalated_from: Option<String>,
        /// Its deployment that answered, when one did.
        pub escalated_deployment: Option<String>,
        /// The discarded attempt's tokens: not part of the token fields, which describe the answer.
        pub escalation_prompt_tokens: u64,
        pub escalation_completion_tokens: u64,
        /// The discarded attempt's cost, part of `cost_nanos`.
        pub escalation_cost_nanos: i64,
        /// Set when the upstream's usage report was not believable and an estimate replaced it
        /// (`prompt_over_window`, `completion_over_cap`, `cached_over_prompt`, `malformed`), or
        /// when the estimate had to be approximated from sizes (`approximate`).
        pub usage_flag: Option<Cow<'static, str>>,
        /// The response cache's part: `hit`, `semantic_hit`, `miss` or `bypass`; empty where
        /// the cache is off.
        pub cache: Option<Cow<'static, str>>,
        /// The entry a hit was answered from.
        pub cache_entry: Option<String>,
        /// What a hit saved: what its answer cost when it was made.
        pub cache_saved_nanos: i64,
        /// The routing tier that answered: `cheap`, `strong` or `specialist`; empty where no
        /// route chose the model.
        pub tier: Option<Cow<'static, str>>,
        /// The intent the router saw in the prompt.
        pub intent: Option<String>,
        /// Why the route chose the model, in words.
        pub route_reason: Option<String>,
        /// What the request would have cost sent to its route's strong model, with no cache (the
        /// same tokens at that model's price); for a request no route chose, what it cost plus
        /// what the cache saved. The overview's savings are measured against it.
        pub baseline_cost_nanos: i64,
    }
}

impl UsageEvent {
    /// An event with every optional field empty, for `event_id` at `ts_ms`.
    pub fn new(event_id: String, request_id: String, ts_ms: i64, endpoint: &'static str, model: String) -> UsageEvent {
        UsageEvent {
            event_id,
            request_id,
            ts_ms,
            key_id: None,
            team_id: None,
            cost_center: None,
            tags: Tags::default(),
            route: None,
            endpoint: Cow::Borrowed(endpoint),
            model,
            deployment: None,
            provider: None,
            stream: false,
            status: 0,
            outcome: Outcome::Success,
            error_kind: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            usage_source: UsageSource::None,
            cost_nanos: 0,
            price_version: None,
            latency_ms: 0,
            ttft_ms: None,
            attempts: 0,
            request_bytes: 0,
            response_bytes: 0,
            route_variant: None,
            shadow_model: None,
            cascade: None,
            escalation_reason: None,
            escalated_from: None,
            escalated_deployment: None,
            escalation_prompt_tokens: 0,
            escalation_completion_tokens: 0,
            escalation_cost_nanos: 0,
            usage_flag: None,
            cache: None,
            cache_entry: None,
            cache_saved_nanos: 0,
            tier: None,
            intent: None,
            route_reason: None,
            baseline_cost_nanos: 0,
        }
    }

    /// Whether the cache answered (the statuses `hit` and `semantic_hit`; the ledger's reports
    /// say the same in SQL).
    pub fn is_cache_hit(&self) -> bool {
        matches!(self.cache.as_deref(), Some("hit" | "semantic_hit"))
    }

    /// Total tokens of the answer.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UsageEvent {
        let mut e = UsageEvent::new("evt_1".into(), "req_1".into(), 1_700_000_000_000, "chat", "m".into());
        e.tags = Tags(vec!["prod".into(), "a,b".into()]);
        e.key_id = Some("key_1".into());
        e.stream = true;
        e.status = 200;
        e.outcome = Outcome::ClientDisconnect;
        e.error_kind = Some(Cow::Borrowed("client_disconnect"));
        e.prompt_tokens = 12;
        e.usage_source = UsageSource::Estimated;
        e.cost_nanos = 345;
        e.ttft_ms = Some(7);
        e.cascade = Some(Cow::Borrowed("escalated"));
        e.escalation_prompt_tokens = 3;
        e.usage_flag = Some(Cow::Borrowed("prompt_over_window"));
        e.cache = Some(Cow::Borrowed("semantic_hit"));
        e.cache_entry = Some("ce_1".into());
        e.cache_saved_nanos = 99;
        e
    }

    #[test]
    fn a_row_reads_back_as_written() {
        let e = sample();
        let cells = e.cells();
        let back = UsageEvent::from_cells(|name, kind| {
            let i = UsageEvent::COLUMNS.iter().position(|c| *c == name).unwrap();
            assert_eq!(UsageEvent::KINDS[i], kind, "{name}");
            Ok(match &cells[i] {
                Cell::Int(v) => Cell::Int(*v),
                Cell::Text(t) => Cell::Text(t.as_ref().map(|t| Cow::Owned(t.to_string()))),
            })
        })
        .unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_field_is_a_column_and_in_the_json() {
        let e = sample();
        let v = serde_json::to_value(&e).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), USAGE_COLUMN_COUNT);
        for c in UsageEvent::COLUMNS {
            assert!(v.get(c).is_some(), "{c} missing from the JSON form");
        }
    }

    #[test]
    fn bad_stored_values_are_refused_with_their_column() {
        let err = UsageEvent::from_cells(|name, kind| {
            Ok(match (name, kind) {
                ("outcome", _) => Cell::Text(Some(Cow::Borrowed("exploded"))),
                (_, Kind::Int) => Cell::Int(Some(1)),
                (_, Kind::Text) => Cell::Text(Some(Cow::Borrowed("[]"))),
            })
        })
        .unwrap_err();
        assert!(err.contains("outcome") && err.contains("exploded"), "{err}");
    }
}
