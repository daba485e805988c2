//! Prices and costs in integer money: picodollars per token for prices, nanodollars for costs.
//!
//! Floating point never touches money. A price written as `"0.15"` USD per million tokens is
//! exactly 150,000 picodollars per token (1 USD/Mtok = 10^6 pico/token), so every published
//! price with up to six decimals is represented exactly. A request's cost is summed in
//! picodollars and rounded once, half up, to nanodollars, which keeps the rounding error of one
//! request below half a nanodollar.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A price in picodollars (10^-12 USD) per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct PicoPerToken(pub i64);

impl PicoPerToken {
    /// The price as USD per million tokens, trailing zeros trimmed (`"2.5"`, `"0.075"`).
    pub fn usd_per_mtok(self) -> String {
        let whole = self.0 / 1_000_000;
        let frac = self.0 % 1_000_000;
        if frac == 0 {
            return whole.to_string();
        }
        let f = format!("{frac:06}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }

    /// Parses a decimal USD-per-million-tokens amount such as `"2.50"` exactly.
    pub fn parse_usd_per_mtok(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.starts_with('-') {
            return Err(format!("price `{t}` must not be negative"));
        }
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits_ok(whole) || !digits_ok(frac) {
            return Err(format!("price `{t}` is not a decimal number of USD per million tokens"));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 6 {
            return Err(format!(
                "price `{t}` has more than 6 decimals (below 1 picodollar per token)"
            ));
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| format!("price `{t}` is too large"))?
        };
        let mut frac_val: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().expect("digits only")
        };
        for _ in frac.len()..6 {
            frac_val *= 10;
        }
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac_val))
            .filter(|v| *v <= 100_000_000_000)
            .map(PicoPerToken)
            .ok_or_else(|| format!("price `{t}` is implausibly large (over $100,000 per million tokens)"))
    }
}

/// What a deployment charges, per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Price {
    pub input: PicoPerToken,
    pub output: PicoPerToken,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input: PicoPerToken,
}

impl Price {
    /// A price of zero on every kind of token: such a model costs nothing.
    pub fn is_free(&self) -> bool {
        self.input.0 == 0 && self.output.0 == 0 && self.cached_input.0 == 0
    }

    /// The cost of one call. `prompt_tokens` includes `cached_tokens`, as in OpenAI's usage.
    pub fn cost(&self, prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> Nanos {
        let cached = cached_tokens.min(prompt_tokens);
        let uncached = prompt_tokens - cached;
        let pico = i128::from(uncached) * i128::from(self.input.0)
            + i128::from(cached) * i128::from(self.cached_input.0)
            + i128::from(completion_tokens) * i128::from(self.output.0);
        Nanos::from_pico_round(pico)
    }
}

/// The version name of a price written inline in a deployment's config instead of the price table.
pub const INLINE_VERSION: &str = "config";

/// One price of one deployment, in force from `from_ms` until the next point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePoint {
    pub from_ms: i64,
    /// The price table version (or [`INLINE_VERSION`]) this price comes from; stored with every event.
    pub version: Arc<str>,
    pub price: Price,
}

/// A deployment's prices over time, oldest first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSchedule(Arc<[PricePoint]>);

impl PriceSchedule {
    /// One price for all time, written inline in the config.
    pub fn fixed(price: Price) -> PriceSchedule {
        PriceSchedule(Arc::new([PricePoint {
            from_ms: i64::MIN,
            version: Arc::from(INLINE_VERSION),
            price,
        }]))
    }

    /// The price in force at `ms`, or `None` before the first point.
    pub fn at(&self, ms: i64) -> Option<&PricePoint> {
        self.0.iter().rev().find(|p| p.from_ms <= ms)
    }

    /// The price in force at `ms`; before the first point, the first one (a request is never unpriced).
    pub fn at_or_first(&self, ms: i64) -> &PricePoint {
        self.at(ms).unwrap_or(&self.0[0])
    }

    pub fn points(&self) -> &[PricePoint] {
        &self.0
    }
}

/// One version of the price table: when it takes effect and what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceVersion {
    pub id: String,
    pub effective_ms: i64,
    pub note: Option<String>,
}

/// The versioned price table (`config/prices.toml`).
///
/// Versions are listed oldest first. Each names the deployments whose prices it sets; a
/// deployment keeps its price from the last version that named it, so a version only needs
/// to list what changed. History is priced with the version in force at each event's time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    pub versions: Vec<PriceVersion>,
    schedules: std::collections::BTreeMap<String, PriceSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceFile {
    #[serde(default)]
    versions: Vec<RawVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    id: String,
    effective: String,
    note: Option<String>,
    #[serde(default)]
    prices: std::collections::BTreeMap<String, RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: PriceText,
    output: PriceText,
    cached_input: Option<PriceText>,
}

/// A price written as a string (`"0.15"`), an integer or a float; read exactly.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum PriceText {
    Text(String),
    Int(i64),
    Float(f64),
}

impl PriceText {
    pub fn parse(&self) -> Result<PicoPerToken, String> {
        match self {
            PriceText::Text(s) => PicoPerToken::parse_usd_per_mtok(s),
            PriceText::Int(i) => PicoPerToken::parse_usd_per_mtok(&i.to_string()),
            // Display of an f64 is its shortest round-trip form, so 0.15 reads back as "0.15".
            PriceText::Float(f) => PicoPerToken::parse_usd_per_mtok(&f.to_string()),
        }
    }
}

impl PriceTable {
    /// Parses and checks a price file; every problem comes back with the path of its value.
    pub fn parse(text: &str) -> Result<PriceTable, Vec<(String, String)>> {
        let raw: RawPriceFile = toml::from_str(text).map_err(|e| vec![(String::new(), e.message().to_string())])?;
        let mut problems = Vec::new();
        let mut versions: Vec<PriceVersion> = Vec::new();
        let mut points: std::collections::BTreeMap<String, Vec<PricePoint>> = Default::default();
        for (i, v) in raw.versions.into_iter().enumerate() {
            let path = format!("versions[{i}]");
            if v.id.trim().is_empty() || v.id.len() > 64 {
                problems.push((format!("{path}.id"), "must be 1 to 64 characters".to_string()));
            }
            if versions.iter().any(|x| x.id == v.id) {
                problems.push((format!("{path}.id"), format!("duplicate version `{}`", v.id)));
            }
            let effective_ms = match crate::clock::parse_time(&v.effective) {
                Ok(ms) => ms,
                Err(e) => {
                    problems.push((format!("{path}.effective"), e));
                    continue;
                }
            };
            if let Some(prev) = versions.last() {
                if effective_ms <= prev.effective_ms {
                    problems.push((
                        format!("{path}.effective"),
                        format!(
                            "must be later than version `{}` (versions are listed oldest first)",
                            prev.id
                        ),
                    ));
                }
            }
            let version: Arc<str> = Arc::from(v.id.as_str());
            for (deployment, p) in v.prices {
                let ppath = format!("{path}.prices.\"{deployment}\"");
                let mut field = |name: &str, t: &PriceText| match t.parse() {
                    Ok(v) => Some(v),
                    Err(e) => {
                        problems.push((format!("{ppath}.{name}"), e));
                        None
                    }
                };
                let input = field("input", &p.input);
                let output = field("output", &p.output);
                let cached = match &p.cached_input {
                    Some(c) => field("cached_input", c),
                    None => input,
                };
                if let (Some(input), Some(output), Some(cached_input)) = (input, output, cached) {
                    points.entry(deployment).or_default().push(PricePoint {
                        from_ms: effective_ms,
                        version: version.clone(),
                        price: Price {
                            input,
                            output,
                            cached_input,
                        },
                    });
                }
            }
            versions.push(PriceVersion {
                id: v.id,
                effective_ms,
                note: v.note,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PriceTable {
            versions,
            schedules: points
                .into_iter()
                .map(|(d, p)| (d, PriceSchedule(Arc::from(p))))
                .collect(),
        })
    }

    /// The prices of one deployment id, when the table names it.
    pub fn schedule(&self, deployment: &str) -> Option<&PriceSchedule> {
        self.schedules.get(deployment)
    }

    pub fn deployments(&self) -> impl Iterator<Item = (&str, &PriceSchedule)> {
        self.schedules.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// Every known price, for pricing stored history: the table's by deployment id, and inline
/// prices by model and deployment id.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    pub table: std::collections::HashMap<String, PriceSchedule>,
    pub inline: std::collections::HashMap<(String, String), PriceSchedule>,
    /// Inline prices by deployment id alone; `None` where models disagree.
    pub inline_any: std::collections::HashMap<String, Option<PriceSchedule>>,
    /// The price table's versions, oldest first.
    pub versions: Vec<PriceVersion>,
}

impl PriceBook {
    /// The price in force at `ms` for an event of `model` served by `deployment`, if known.
    pub fn price_at(&self, model: &str, deployment: &str, ms: i64) -> Option<PricePoint> {
        let schedule = self
            .table
            .get(deployment)
            .or_else(|| self.inline.get(&(model.to_string(), deployment.to_string())))
            .or_else(|| self.inline_any.get(deployment).and_then(Option::as_ref))?;
        schedule.at(ms).cloned()
    }

    /// Every deployment id with a price, and its schedule (inline ones once per model).
    pub fn all(&self) -> Vec<(String, &PriceSchedule)> {
        let mut out: Vec<(String, &PriceSchedule)> = self.table.iter().map(|(d, s)| (d.clone(), s)).collect();
        for ((m, d), s) in &self.inline {
            let ambiguous = self.inline_any.get(d).is_some_and(Option::is_none);
            out.push((if ambiguous { format!("{d} ({m})") } else { d.clone() }, s));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

/// An amount of money in nanodollars (10^-9 USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash, Serialize)]
pub struct Nanos(pub i64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Rounds picodollars half away from zero to nanodollars, saturating at the i64 range.
    pub fn from_pico_round(pico: i128) -> Nanos {
        let q = if pico >= 0 {
            (pico + 500) / 1000
        } else {
            (pico - 500) / 1000
        };
        Nanos(q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }
}

impl Nanos {
    /// Parses a decimal USD amount such as `"12.50"` exactly (at most nine decimals, not negative).
    pub fn parse_usd(text: &str) -> Result<Nanos, String> {
        let t = text.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if t.starts_with('-') {
            return Err(format!("amount `{t}` must not be negative"));
        }
        if (whole.is_empty() && frac.is_empty()) || !digits_ok(whole) || !digits_ok(frac) {
            return Err(format!("amount `{t}` is not a decimal number of USD"));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 9 {
            return Err(format!("amount `{t}` has more than 9 decimals"));
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| format!("amount `{t}` is too large"))?
        };
        let mut f: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().expect("digits only")
        };
        for _ in frac.len()..9 {
            f *= 10;
        }
        whole
            .checked_mul(1_000_000_000)
            .and_then(|w| w.checked_add(f))
            .filter(|v| *v <= 1_000_000_000 * 1_000_000_000)
            .map(Nanos)
            .ok_or_else(|| format!("amount `{t}` is too large (over one billion USD)"))
    }
}

/// Formats as a plain decimal USD amount with nine decimals, e.g. `0.000012345`.
impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prices_exactly() {
        let cases = [
            ("0.15", 150_000),
            ("2.50", 2_500_000),
            ("10", 10_000_000),
            ("0.0375", 37_500),
            ("0.000001", 1),
            (".5", 500_000),
            ("3.", 3_000_000),
            ("0", 0),
            ("15.000000000", 15_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(PicoPerToken::parse_usd_per_mtok(text), Ok(PicoPerToken(want)), "{text}");
        }
    }

    #[test]
    fn prints_prices_as_they_are_written() {
        for text in ["0.15", "2.5", "10", "0.0375", "0.000001", "0"] {
            assert_eq!(PicoPerToken::parse_usd_per_mtok(text).unwrap().usd_per_mtok(), text);
        }
    }

    #[test]
    fn rejects_bad_prices() {
        for text in ["-1", "abc", "", ".", "1.2.3", "0.0000001", "1e3", "999999999999"] {
            assert!(PicoPerToken::parse_usd_per_mtok(text).is_err(), "{text} accepted");
        }
    }

    #[test]
    fn cost_splits_cached_input_and_rounds_once() {
        let price = Price {
            input: PicoPerToken(2_500_000),
            output: PicoPerToken(10_000_000),
            cached_input: PicoPerToken(1_250_000),
        };
        // 1000 prompt tokens of which 200 cached, 500 completion tokens:
        // 800*2.5e6 + 200*1.25e6 + 500*10e6 pico = 2e9 + 2.5e8 + 5e9 = 7.25e9 pico = 7_250_000 nanos.
        assert_eq!(price.cost(1000, 200, 500), Nanos(7_250_000));
        // Cached tokens can never exceed prompt tokens.
        assert_eq!(price.cost(10, 50, 0), Nanos(12_500));
        let tiny = Price {
            input: PicoPerToken(37_500),
            output: PicoPerToken(0),
            cached_input: PicoPerToken(37_500),
        };
        assert_eq!(tiny.cost(1, 0, 0), Nanos(38), "37.5 nanos rounds half up");
        assert_eq!(tiny.cost(3, 0, 0), Nanos(113), "112.5 nanos rounds half up");
    }

    #[test]
    fn formats_usd() {
        assert_eq!(Nanos(7_250_000).to_string(), "0.007250000");
        assert_eq!(Nanos(12_345_678_901).to_string(), "12.345678901");
        assert_eq!(Nanos(-5).to_string(), "-0.000000005");
        assert_eq!(Nanos::ZERO.to_string(), "0.000000000");
    }

    #[test]
    fn parses_usd_amounts_exactly() {
        assert_eq!(Nanos::parse_usd("12.50"), Ok(Nanos(12_500_000_000)));
        assert_eq!(Nanos::parse_usd("0.000000001"), Ok(Nanos(1)));
        assert_eq!(Nanos::parse_usd("7"), Ok(Nanos(7_000_000_000)));
        for bad in ["-1", "1e3", "", "0.0000000001", "abc", "1000000001"] {
            assert!(Nanos::parse_usd(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn free_models() {
        assert!(Price::default().is_free());
        assert!(!Price {
            output: PicoPerToken(1),
            ..Price::default()
        }
        .is_free());
    }
}
