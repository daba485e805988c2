//! The guard: deterministic checks a semantic hit must pass between the new question and the
//! cached one, for what embeddings cannot tell apart.
//!
//! "Track order 48213" and "Track order 48231" embed almost identically, as do "is ibuprofen
//! safe" and "is ibuprofen unsafe". So beside the similarity, the two questions must agree on:
//!
//! - **numbers** (digits and number words, `48,213` = `48213`, `3.0` = `3`), in order;
//! - **codes and ids** (tokens mixing letters and digits, versions, emails, file names);
//! - **dates** (months, weekdays, `today`/`tomorrow`/`yesterday`, …);
//! - **units and currencies** (`km` against `miles`, `mg` against `g`, `$` against `€`);
//! - **negation** (as many `not`/`no`/`never`/`n't`/`without`… on each side);
//! - **antonyms** (a listed pair such as `safe`/`dangerous`, or a word against its `un-`, `in-`,
//!   `dis-`, `non-` form, on opposite sides);
//! - **named entities** (capitalised or all-capital words that do not start a sentence, in order,
//!   so "Alice owes Bob" is not "Bob owes Alice");
//! - **quantifiers and scope** (`all`/`some`/`none`, `at least`/`at most`, `first`/`last`,
//!   `only`, comparatives such as `more`/`less`).
//!
//! Every check errs toward refusing: a refused paraphrase costs one upstream call, a wrong
//! answer costs the user.

use std::collections::BTreeSet;

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor", "cannot", "nowhere", "n't",
];

const QUANTIFIERS: &[&str] = &[
    "all",
    "every",
    "each",
    "any",
    "some",
    "few",
    "fewer",
    "many",
    "much",
    "most",
    "least",
    "more",
    "less",
    "several",
    "only",
    "just",
    "both",
    "either",
    "first",
    "last",
    "always",
    "sometimes",
    "often",
    "rarely",
    "usually",
    "single",
    "multiple",
    "once",
    "twice",
    "max",
    "maximum",
    "min",
    "minimum",
    "exactly",
    "over",
    "under",
    "above",
    "below",
    "per",
    "entire",
    "whole",
    "partial",
    "half",
    "double",
    "triple",
    "majority",
    "minority",
    "except",
    "also",
    "too",
    "earliest",
    "latest",
    "next",
    "previous",
];

const DATE_WORDS: &[&str] = &[
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "now",
    "ago",
    "weekend",
    "weekday",
    "morning",
    "afternoon",
    "evening",
    "night",
    "noon",
    "midnight",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annual",
    "annually",
    "quarterly",
    "hourly",
    "q1",
    "q2",
    "q3",
    "q4",
];

/// Units and currencies, each with the canonical name its spellings share.
const UNITS: &[(&str, &str)] = &[
    ("km", "km"),
    ("kilometer", "km"),
    ("kilometre", "km"),
    ("kilometers", "km"),
    ("kilometres", "km"),
    ("mile", "mile"),
    ("miles", "mile"),
    ("mi", "mile"),
    ("m", "m"),
    ("meter", "m"),
    ("metre", "m"),
    ("meters", "m"),
    ("metres", "m"),
    ("cm", "cm"),
    ("mm", "mm"),
    ("inch", "inch"),
    ("inches", "inch"),
    ("in.", "inch"),
    ("ft", "ft"),
    ("foot", "ft"),
    ("feet", "ft"),
    ("yard", "yard"),
    ("yards", "yard"),
    ("kg", "kg"),
    ("kilo", "kg"),
    ("kilos", "kg"),
    ("kilogram", "kg"),
    ("kilograms", "kg"),
    ("g", "g"),
    ("gram", "g"),
    ("grams", "g"),
    ("mg", "mg"),
    ("milligram", "mg"),
    ("milligrams", "mg"),
    ("mcg", "mcg"),
    ("µg", "mcg"),
    ("lb", "lb"),
    ("lbs", "lb"),
    ("pound", "lb"),
    ("pounds", "lb"),
    ("oz", "oz"),
    ("ounce", "oz"),
    ("ounces", "oz"),
    ("ton", "ton"),
    ("tons", "ton"),
    ("tonne", "tonne"),
    ("tonnes", "tonne"),
    ("l", "l"),
    ("liter", "l"),
    ("litre", "l"),
    ("liters", "l"),
    ("litres", "l"),
    ("ml", "ml"),
    ("milliliter", "ml"),
    ("millilitre", "ml"),
    ("milliliters", "ml"),
    ("gallon", "gallon"),
    ("gallons", "gallon"),
    ("cup", "cup"),
    ("cups", "cup"),
    ("tbsp", "tbsp"),
    ("tablespoon", "tbsp"),
    ("tablespoons", "tbsp"),
    ("tsp", "tsp"),
    ("teaspoon", "tsp"),
    ("teaspoons", "tsp"),
    ("celsius", "c"),
    ("°c", "c"),
    ("fahrenheit", "f"),
    ("°f", "f"),
    ("kelvin", "k"),
    ("second", "s"),
    ("seconds", "s"),
    ("sec", "s"),
    ("secs", "s"),
    ("ms", "ms"),
    ("millisecond", "ms"),
    ("milliseconds", "ms"),
    ("minute", "min"),
    ("minutes", "min"),
    ("mins", "min"),
    ("hour", "h"),
    ("hours", "h"),
    ("hr", "h"),
    ("hrs", "h"),
    ("day", "day"),
    ("days", "day"),
    ("week", "week"),
    ("weeks", "week"),
    ("month", "month"),
    ("months", "month"),
    ("year", "year"),
    ("years", "year"),
    ("decade", "decade"),
    ("decades", "decade"),
    ("percent", "%"),
    ("%", "%"),
    ("$", "usd"),
    ("usd", "usd"),
    ("dollar", "usd"),
    ("dollars", "usd"),
    ("€", "eur"),
    ("eur", "eur"),
    ("euro", "eur"),
    ("euros", "eur"),
    ("£", "gbp"),
    ("gbp", "gbp"),
    ("¥", "jpy"),
    ("yen", "jpy"),
    ("jpy", "jpy"),
    ("kb", "kb"),
    ("mb", "mb"),
    ("gb", "gb"),
    ("tb", "tb"),
    ("kib", "kib"),
    ("mib", "mib"),
    ("gib", "gib"),
    ("mbps", "mbps"),
    ("gbps", "gbps"),
    ("kw", "kw"),
    ("kwh", "kwh"),
    ("w", "w"),
    ("watt", "w"),
    ("watts", "w"),
    ("v", "v"),
    ("volt", "v"),
    ("volts", "v"),
    ("mph", "mph"),
    ("kph", "kph"),
    ("calorie", "cal"),
    ("calories", "cal"),
    ("kcal", "kcal"),
    ("tablet", "tablet"),
    ("tablets", "tablet"),
    ("pill", "pill"),
    ("pills", "pill"),
    ("dose", "dose"),
    ("doses", "dose"),
    ("px", "px"),
    ("pt", "pt"),
    ("em", "em"),
    ("rem", "rem"),
    ("dpi", "dpi"),
    ("ghz", "ghz"),
    ("mhz", "mhz"),
    ("hz", "hz"),
    ("acre", "acre"),
    ("acres", "acre"),
    ("hectare", "ha"),
    ("hectares", "ha"),
    ("sqft", "sqft"),
    ("bar", "bar"),
    ("psi", "psi"),
];

/// Pairs of words with opposite meanings (either order).
const ANTONYMS: &[(&str, &str)] = &[
    ("safe", "dangerous"),
    ("safe", "unsafe"),
    ("safe", "harmful"),
    ("safe", "risky"),
    ("good", "bad"),
    ("better", "worse"),
    ("best", "worst"),
    ("increase", "decrease"),
    ("increase", "reduce"),
    ("raise", "lower"),
    ("up", "down"),
    ("upgrade", "downgrade"),
    ("upload", "download"),
    ("before", "after"),
    ("early", "late"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("first", "last"),
    ("start", "end"),
    ("start", "stop"),
    ("begin", "end"),
    ("open", "close"),
    ("open", "closed"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("on", "off"),
    ("allow", "deny"),
    ("allow", "block"),
    ("allowed", "forbidden"),
    ("accept", "reject"),
    ("approve", "reject"),
    ("add", "remove"),
    ("add", "delete"),
    ("insert", "delete"),
    ("create", "delete"),
    ("create", "destroy"),
    ("install", "uninstall"),
    ("include", "exclude"),
    ("import", "export"),
    ("buy", "sell"),
    ("buying", "selling"),
    ("lend", "borrow"),
    ("give", "take"),
    ("send", "receive"),
    ("push", "pull"),
    ("win", "lose"),
    ("gain", "loss"),
    ("profit", "loss"),
    ("credit", "debit"),
    ("income", "expense"),
    ("asset", "liability"),
    ("deposit", "withdraw"),
    ("deposit", "withdrawal"),
    ("hot", "cold"),
    ("warm", "cool"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("big", "small"),
    ("bigger", "smaller"),
    ("biggest", "smallest"),
    ("large", "small"),
    ("larger", "smaller"),
    ("largest", "smallest"),
    ("long", "short"),
    ("longer", "shorter"),
    ("fast", "slow"),
    ("faster", "slower"),
    ("fastest", "slowest"),
    ("cheap", "expensive"),
    ("cheaper", "expensive"),
    ("cheapest", "expensive"),
    ("cheaper", "pricier"),
    ("heavy", "light"),
    ("light", "dark"),
    ("strong", "weak"),
    ("easy", "hard"),
    ("easy", "difficult"),
    ("simple", "complex"),
    ("true", "false"),
    ("yes", "no"),
    ("right", "wrong"),
    ("right", "left"),
    ("correct", "incorrect"),
    ("legal", "illegal"),
    ("valid", "invalid"),
    ("possible", "impossible"),
    ("public", "private"),
    ("internal", "external"),
    ("inside", "outside"),
    ("input", "output"),
    ("inbound", "outbound"),
    ("ingress", "egress"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("serialize", "deserialize"),
    ("lock", "unlock"),
    ("mount", "unmount"),
    ("subscribe", "unsubscribe"),
    ("follow", "unfollow"),
    ("connect", "disconnect"),
    ("login", "logout"),
    ("sign", "unsign"),
    ("attach", "detach"),
    ("ascending", "descending"),
    ("asc", "desc"),
    ("horizontal", "vertical"),
    ("north", "south"),
    ("east", "west"),
    ("above", "below"),
    ("over", "under"),
    ("top", "bottom"),
    ("front", "back"),
    ("forward", "backward"),
    ("positive", "negative"),
    ("plus", "minus"),
    ("add", "subtract"),
    ("multiply", "divide"),
    ("sum", "difference"),
    ("male", "female"),
    ("men", "women"),
    ("man", "woman"),
    ("boy", "girl"),
    ("adult", "child"),
    ("adults", "children"),
    ("old", "new"),
    ("old", "young"),
    ("older", "newer"),
    ("older", "younger"),
    ("oldest", "newest"),
    ("past", "future"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("arrivals", "departures"),
    ("inbound", "outbound"),
    ("import", "export"),
    ("client", "server"),
    ("frontend", "backend"),
    ("read", "write"),
    ("get", "set"),
    ("get", "post"),
    ("success", "failure"),
    ("pass", "fail"),
    ("passed", "failed"),
    ("love", "hate"),
    ("like", "dislike"),
    ("agree", "disagree"),
    ("always", "never"),
    ("all", "none"),
    ("everyone", "nobody"),
    ("everything", "nothing"),
    ("with", "without"),
    ("include", "without"),
    ("wet", "dry"),
    ("full", "empty"),
    ("rich", "poor"),
    ("alive", "dead"),
    ("healthy", "sick"),
    ("raw", "cooked"),
    ("rise", "fall"),
    ("rising", "falling"),
    ("gross", "net"),
    ("pre", "post"),
    ("prefix", "suffix"),
    ("min", "max"),
    ("sunrise", "sunset"),
    ("mean", "median"),
    ("stack", "queue"),
    ("sync", "async"),
    ("synchronous", "asynchronous"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("inner", "outer"),
    ("join", "leave"),
    ("hire", "fire"),
    ("employer", "employee"),
    ("landlord", "tenant"),
    ("buyer", "seller"),
    ("debtor", "creditor"),
    ("sender", "recipient"),
    ("parent", "child"),
    ("source", "destination"),
];

/// Opposite directions: one side's word against the other's, never compared for order (a
/// reordered "to the airport from downtown" means the same; the anchors check their targets).
const DIRECTIONS: &[(&str, &str)] = &[("from", "to"), ("into", "out"), ("toward", "away"), ("towards", "away")];

/// Prefixes that turn a word into its opposite.
const OPPOSING_PREFIXES: &[&str] = &["un", "in", "im", "il", "ir", "dis", "non", "non-", "de", "anti"];

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("dozen", "12"),
    ("half", "0.5"),
    ("quarter", "0.25"),
    ("second", "2nd"),
    ("third", "3rd"),
    ("fourth", "4th"),
    ("fifth", "5th"),
];

/// Words that point at a role in the sentence (a source, a target, a comparison): the word
/// each is followed by must be the same on both sides ("from checking to savings" is not "from
/// savings to checking").
const ANCHORS: &[&str] = &[
    "from", "to", "into", "than", "versus", "vs", "per", "onto", "toward", "towards",
];

/// Words skipped when looking for the word an anchor points at.
const FILLER: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that", "these", "those", "some",
];

/// Words that start with a capital for reasons other than being a name.
const CAPITALISED_COMMON: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hello", "hey", "please", "thanks",
];

/// A question as the guard reads it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Facts {
    numbers: Vec<String>,
    codes: BTreeSet<String>,
    dates: BTreeSet<String>,
    units: BTreeSet<String>,
    negations: usize,
    entities: Vec<String>,
    quantifiers: BTreeSet<String>,
    words: BTreeSet<String>,
    /// Every word, in order.
    sequence: Vec<String>,
}

/// A token of the text with its position facts.
struct Token<'a> {
    raw: &'a str,
    lower: String,
    sentence_start: bool,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    let is_part =
        |c: char| c.is_alphanumeric() || matches!(c, '\'' | '’' | '.' | ',' | '-' | '_' | '@' | '/' | '°' | '#' | '+');
    let mut rest = text;
    while !rest.is_empty() {
        let Some(start) = rest.find(|c: char| is_part(c) || matches!(c, '$' | '€' | '£' | '¥' | '%')) else {
            break;
        };
        let skipped = &rest[..start];
        if skipped.contains(['.', '!', '?', ':', ';', '\n']) {
            sentence_start = true;
        }
        rest = &rest[start..];
        let first = rest.chars().next().unwrap_or(' ');
        let len = if matches!(first, '$' | '€' | '£' | '¥' | '%') {
            first.len_utf8()
        } else {
            rest.find(|c: char| !is_part(c)).unwrap_or(rest.len())
        };
        let mut raw = &rest[..len];
        rest = &rest[len..];
        // Punctuation that ends a token belongs to the sentence, not the token.
        let mut ends_sentence = false;
        while let Some(last) = raw.chars().last() {
            if matches!(last, '.' | ',' | '\'' | '’' | '-' | '/') && raw.len() > 1 {
                ends_sentence |= last == '.';
                raw = &raw[..raw.len() - last.len_utf8()];
            } else {
                break;
            }
        }
        let lower = raw.to_lowercase().replace('’', "'");
        out.push(Token {
            raw,
            lower,
            sentence_start,
        });
        sentence_start = ends_sentence;
    }
    out
}

/// `48,213` → `48213`, `3.0` → `3`, `07` → `7`; `None` if it is not a plain number.
fn number(s: &str) -> Option<String> {
    let t = s.trim_start_matches(['+', '#']);
    if t.is_empty()
        || !t.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        || !t.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let plain: String = t.chars().filter(|c| *c != ',').collect();
    if plain.matches('.').count() > 1 {
        return Some(plain);
    }
    match plain.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => Some(format!("{}", v as i64)),
        Ok(v) => Some(format!("{v}")),
        Err(_) => Some(plain),
    }
}

fn read(text: &str) -> Facts {
    let mut f = Facts::default();
    let toks = tokens(text);
    let mut prev: Option<&str> = None;
    for t in &toks {
        let w = t.lower.as_str();
        f.words.insert(w.to_string());
        if let Some(n) = number(w) {
            f.numbers.push(n);
        } else if let Some((_, n)) = NUMBER_WORDS.iter().find(|(k, _)| *k == w) {
            // "second" is a unit after a number and an ordinal otherwise.
            if !(w == "second" && prev.is_some_and(|p| number(p).is_some())) {
                f.numbers.push((*n).to_string());
            }
        } else if w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(char::is_alphabetic) {
            // 1st, 3rd, v2, E404, SKU-12, ipv6, 10am, 5kg: numbers with letters attached.
            f.codes.insert(w.to_string());
        } else if w.contains('@') || (w.contains('.') && w.len() > 3 && !w.ends_with('.')) {
            f.codes.insert(w.to_string());
        }
        if DATE_WORDS.contains(&w) {
            f.dates.insert(w.to_string());
        }
        if let Some((_, u)) = UNITS.iter().find(|(k, _)| *k == w) {
            // One-letter units only count after a number ("5 m", not "I am at m").
            if w.chars().count() > 1 || prev.is_some_and(|p| number(p).is_some()) {
                f.units.insert((*u).to_string());
            }
        }
        if NEGATIONS.contains(&w) || w.ends_with("n't") {
            f.negations += 1;
        }
        if QUANTIFIERS.contains(&w) {
            f.quantifiers.insert(w.to_string());
        }
        let capitalised = t.raw.chars().next().is_some_and(char::is_uppercase);
        let all_caps =
            t.raw.chars().filter(|c| c.is_alphabetic()).count() >= 2 && !t.raw.chars().any(char::is_lowercase);
        let inner_caps = t.raw.chars().skip(1).any(char::is_uppercase) && t.raw.chars().any(char::is_lowercase);
        let name_like = (capitalised && !t.sentence_start) || all_caps || inner_caps;
        if name_like && !CAPITALISED_COMMON.contains(&w) {
            let base = w.strip_suffix("'s").unwrap_or(w);
            f.entities.push(base.to_string());
        }
        prev = Some(w);
    }
    f.sequence = toks.iter().map(|t| t.lower.clone()).collect();
    // Multi-word quantifiers.
    let lowered: Vec<&str> = toks.iter().map(|t| t.lower.as_str()).collect();
    for pair in lowered.windows(2) {
        if matches!(
            pair,
            ["at", "least" | "most"] | ["more" | "less" | "fewer", "than"] | ["up", "to"] | ["no", "more"]
        ) {
            f.quantifiers.insert(format!("{} {}", pair[0], pair[1]));
        }
    }
    f
}

fn opposite(a: &str, b: &str) -> bool {
    ANTONYMS
        .iter()
        .chain(DIRECTIONS)
        .any(|(x, y)| (*x == a && *y == b) || (*x == b && *y == a))
        || OPPOSING_PREFIXES.iter().any(|p| {
            (a.len() > p.len() + 2 && a.strip_prefix(p) == Some(b))
                || (b.len() > p.len() + 2 && b.strip_prefix(p) == Some(a))
        })
}

/// What each anchor present points at: (anchor, the next word that is not filler).
fn anchored(seq: &[String]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (i, w) in seq.iter().enumerate() {
        if ANCHORS.contains(&w.as_str()) {
            if let Some(next) = seq[i + 1..].iter().find(|n| !FILLER.contains(&n.as_str())) {
                out.insert((w.clone(), next.clone()));
            }
        }
    }
    out
}

/// Where a word first occurs.
fn first_at(seq: &[String], w: &str) -> Option<usize> {
    seq.iter().position(|x| x == w)
}

/// Whether `question` may be answered with the answer to `cached`: `Ok` with what agreed, or
/// `Err` with the first check that failed.
pub fn check(question: &str, cached: &str) -> Result<&'static str, String> {
    let (q, c) = (read(question), read(cached));
    if q.numbers != c.numbers {
        return Err(format!("numbers differ: {:?} vs {:?}", q.numbers, c.numbers));
    }
    if q.codes != c.codes {
        return Err(format!("codes or ids differ: {:?} vs {:?}", q.codes, c.codes));
    }
    if q.dates != c.dates {
        return Err(format!("dates differ: {:?} vs {:?}", q.dates, c.dates));
    }
    if q.units != c.units {
        return Err(format!("units differ: {:?} vs {:?}", q.units, c.units));
    }
    if q.negations != c.negations {
        return Err(format!("negation differs: {} vs {}", q.negations, c.negations));
    }
    let only_q: Vec<&String> = q.words.difference(&c.words).collect();
    let only_c: Vec<&String> = c.words.difference(&q.words).collect();
    for a in &only_q {
        for b in &only_c {
            if opposite(a, b) {
                return Err(format!("opposites: {a} vs {b}"));
            }
        }
    }
    // Opposites present on both sides must stand in the same order ("an employee gives an
    // employer notice" is not "an employer gives an employee notice").
    for (x, y) in ANTONYMS {
        if let (Some(qx), Some(qy), Some(cx), Some(cy)) = (
            first_at(&q.sequence, x),
            first_at(&q.sequence, y),
            first_at(&c.sequence, x),
            first_at(&c.sequence, y),
        ) {
            if (qx < qy) != (cx < cy) {
                return Err(format!("roles swapped: {x} and {y}"));
            }
        }
    }
    let (qa, ca) = (anchored(&q.sequence), anchored(&c.sequence));
    for (anchor, target) in &qa {
        let theirs: Vec<&String> = ca.iter().filter(|(a, _)| a == anchor).map(|(_, t)| t).collect();
        if !theirs.is_empty() && !theirs.contains(&target) {
            return Err(format!("`{anchor}` points elsewhere: {target} vs {}", theirs[0]));
        }
    }
    if q.entities != c.entities {
        return Err(format!("named entities differ: {:?} vs {:?}", q.entities, c.entities));
    }
    if q.quantifiers != c.quantifiers {
        return Err(format!(
            "quantifiers differ: {:?} vs {:?}",
            q.quantifiers, c.quantifiers
        ));
    }
    Ok("numbers, codes, dates, units, negation, antonyms, entities and quantifiers agree")
}

#[cfg(test)]
mod tests {
    use super::check;

    fn refused(a: &str, b: &str) {
        assert!(check(a, b).is_err(), "{a:?} vs {b:?} must be refused");
        assert!(check(b, a).is_err(), "{b:?} vs {a:?} must be refused");
    }

    fn allowed(a: &str, b: &str) {
        assert!(check(a, b).is_ok(), "{a:?} vs {b:?}: {:?}", check(a, b));
        assert!(check(b, a).is_ok(), "{b:?} vs {a:?}: {:?}", check(b, a));
    }

    #[test]
    fn numbers_codes_dates_and_units_must_agree() {
        refused("Track order 48213", "Track order 48231");
        refused("I took 3 tablets", "I took 5 tablets");
        refused("I took three tablets", "I took five tablets");
        refused("Is Python 3.11 supported?", "Is Python 3.12 supported?");
        refused("What does error E404 mean?", "What does error E500 mean?");
        refused("Email bob@example.com the report", "Email bo@example.com the report");
        refused("Open config.yaml", "Open config.json");
        refused("Is the store open on Monday?", "Is the store open on Tuesday?");
        refused("What's the weather today?", "What's the weather tomorrow?");
        refused("How far is 10 km?", "How far is 10 miles?");
        refused("Convert 5 mg to g", "Convert 5 g to mg");
        refused("What is 20 °C in Fahrenheit?", "What is 20 °F in Celsius?");
        allowed("Track order 48,213 please", "please track order 48213");
        allowed("Is 3.0 the same as three?", "is 3 the same as 3?");
    }

    #[test]
    fn negations_antonyms_and_quantifiers_must_agree() {
        refused(
            "Is ibuprofen safe during pregnancy?",
            "Is ibuprofen unsafe during pregnancy?",
        );
        refused(
            "Is ibuprofen safe during pregnancy?",
            "Is ibuprofen not safe during pregnancy?",
        );
        refused("Can I take it with food?", "Can I take it without food?");
        refused("Why can't I log in?", "Why can I log in?");
        refused(
            "How do I enable two-factor authentication?",
            "How do I disable two-factor authentication?",
        );
        refused("Should I take it before meals?", "Should I take it after meals?");
        refused("Which plan is cheapest?", "Which plan is most expensive?");
        refused("How do I increase the heap size?", "How do I decrease the heap size?");
        refused("Delete all rows", "Delete some rows");
        refused(
            "Do I need at least two forms of ID?",
            "Do I need at most two forms of ID?",
        );
        refused("Show the first entry", "Show the last entry");
        allowed("How do I reset my password?", "How can I reset my password?");
        allowed(
            "Is coffee safe while breastfeeding?",
            "While breastfeeding, is coffee safe?",
        );
    }

    #[test]
    fn named_entities_must_agree_in_order() {
        refused("What is the capital of France?", "What is the capital of Spain?");
        refused("How do I read a file in Python?", "How do I read a file in Rust?");
        refused("Convert USD to EUR", "Convert EUR to USD");
        refused("Alice owes Bob money", "Bob owes Alice money");
        refused("Deploy it on AWS", "Deploy it on Azure");
        refused("Move $50 from checking to savings", "Move $50 from savings to checking");
        refused("Convert 5 miles to km", "Convert 5 km to miles");
        refused(
            "What notice does an employee give an employer?",
            "What notice does an employer give an employee?",
        );
        allowed(
            "How do I get to the airport from downtown?",
            "How do I get from downtown to the airport?",
        );
        refused("Cheap flights from Paris", "Cheap flights to Paris");
        allowed("What's the capital of France?", "Tell me France's capital.");
        allowed("Explain how DNS works.", "How does DNS work?");
        allowed(
            "Hello! Can you help me write a cover letter?",
            "Can you help me write a cover letter?",
        );
    }
}
