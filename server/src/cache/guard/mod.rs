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

mod words;
use words::*;

/// A question as the guard reads it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Facts {
    numbers: Vec<String>,
    codes: BTreeSet<String>,
    dates: BTreeSet<String>,
    /// Units in the order first mentioned.
    units: Vec<String>,
    /// Some unit follows a number (a quantity, not just a dimension).
    measured: bool,
    negations: usize,
    /// Words written as names (capitalised inside a sentence, all capitals, inner capitals).
    names: BTreeSet<String>,
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

/// How a word counts, once split at hyphens ("3-day" is the number 3 and the unit day,
/// "two-factor" the number 2).
fn classify(f: &mut Facts, w: &str, prev: Option<&str>) {
    if w.contains('-') && !w.starts_with('-') {
        let mut p = prev;
        for part in w.split('-').filter(|x| !x.is_empty()) {
            classify(f, part, p);
            p = Some(part);
        }
        return;
    }
    let after_number = prev.is_some_and(|p| number(p).is_some() || NUMBER_WORDS.iter().any(|(k, _)| *k == p));
    if let Some(n) = number(w) {
        f.numbers.push(n);
    } else if let Some((_, n)) = NUMBER_WORDS.iter().find(|(k, _)| *k == w) {
        // "second" is a unit after a number and an ordinal otherwise.
        if !(w == "second" && after_number) {
            f.numbers.push((*n).to_string());
        }
    } else if w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(char::is_alphabetic) {
        // 1st, 3rd, v2, E404, ipv6, 10am, 5kg: numbers with letters attached.
        f.codes.insert(w.to_string());
    } else if w.contains('@') || (w.contains('.') && w.len() > 3 && !w.ends_with('.')) {
        f.codes.insert(w.to_string());
    }
    if let Some((_, d)) = DATE_WORDS.iter().find(|(k, _)| *k == w) {
        f.dates.insert((*d).to_string());
    }
    if let Some((_, u)) = UNITS.iter().find(|(k, _)| *k == w) {
        // One-letter units only count after a number ("5 m", not "I am at m").
        if w.chars().count() > 1 || after_number {
            if !f.units.contains(&(*u).to_string()) {
                f.units.push((*u).to_string());
            }
            if after_number {
                f.measured = true;
            }
        }
    }
}

fn read(text: &str) -> Facts {
    let mut f = Facts::default();
    let toks = tokens(text);
    let lowered: Vec<&str> = toks.iter().map(|t| t.lower.as_str()).collect();
    // A period said as a phrase ("every year") is the date word ("yearly") and not a quantifier.
    let mut periodic = vec![false; toks.len()];
    for (i, pair) in lowered.windows(2).enumerate() {
        if let ["every" | "each" | "per" | "a", unit] = pair {
            if let Some(d) = PERIODS.iter().find(|(k, _)| k == unit).map(|(_, d)| d) {
                f.dates.insert((*d).to_string());
                periodic[i] = true;
                periodic[i + 1] = true;
            }
        }
    }
    let mut prev: Option<&str> = None;
    for (i, t) in toks.iter().enumerate() {
        let w = t.lower.as_str();
        f.words.insert(w.to_string());
        if !periodic[i] {
            classify(&mut f, w, prev);
        }
        if NEGATIONS.contains(&w) || w.ends_with("n't") {
            f.negations += 1;
        }
        if let Some((_, q)) = QUANTIFIERS.iter().find(|(k, _)| *k == w).filter(|_| !periodic[i]) {
            f.quantifiers.insert((*q).to_string());
        }
        let capitalised = t.raw.chars().next().is_some_and(char::is_uppercase);
        let all_caps =
            t.raw.chars().filter(|c| c.is_alphabetic()).count() >= 2 && !t.raw.chars().any(char::is_lowercase);
        let inner_caps = t.raw.chars().skip(1).any(char::is_uppercase) && t.raw.chars().any(char::is_lowercase);
        let name_like = (capitalised && !t.sentence_start) || all_caps || inner_caps;
        if name_like && !CAPITALISED_COMMON.contains(&w) {
            f.names.insert(name_of(w).to_string());
        }
        prev = Some(w);
    }
    f.sequence = toks.iter().map(|t| t.lower.clone()).collect();
    // Multi-word quantifiers.
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

/// A word as a name: without a possessive.
fn name_of(w: &str) -> &str {
    w.strip_suffix("'s").unwrap_or(w)
}

/// The names either question capitalises, in the order `seq` first mentions them (so a name
/// one side writes in lower case still counts on that side).
fn names_in(seq: &[String], names: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in seq {
        let n = name_of(w);
        if names.contains(n) && !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Whether two words differ by one edit (a typo), for words long enough to tell.
fn one_typo(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().min(b.len()) < 6 || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    prefix + suffix + 1 >= a.len().max(b.len())
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
    let from = seq.iter().any(|w| w == "from");
    for (i, w) in seq.iter().enumerate() {
        if ANCHORS.contains(&w.as_str()) || (from && w == "to") {
            if let Some(next) = seq[i + 1..].iter().find(|n| !FILLER.contains(&n.as_str())) {
                out.insert((w.clone(), next.clone()));
            }
        }
    }
    out
}

/// The word without a common inflection.
fn stem(w: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s", "ly"] {
        if let Some(s) = w.strip_suffix(suffix) {
            if s.len() >= 3 {
                return s;
            }
        }
    }
    w
}

/// The words of a question without punctuation (apostrophes included), for comparing them in
/// place.
fn plain_words(seq: &[String]) -> Vec<String> {
    seq.iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
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
    // Units must agree wherever one side measures something, or both name units ("how many
    // minutes" and "how long" ask the same; "5 km" and "5 miles" do not).
    if (q.measured || c.measured || (!q.units.is_empty() && !c.units.is_empty())) && q.units != c.units {
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
    // ("to" is an anchor only beside "from": otherwise it mostly begins an infinitive.)
    for (anchor, target) in &qa {
        let theirs: Vec<&String> = ca.iter().filter(|(a, _)| a == anchor).map(|(_, t)| t).collect();
        if !theirs.is_empty() && !theirs.contains(&target) {
            return Err(format!("`{anchor}` points elsewhere: {target} vs {}", theirs[0]));
        }
    }
    // The same question with one word swapped for another is the shape of a trap (another
    // drug, another product, another action), unless the words are inflections of each other
    // or interchangeable function words.
    let (qw, cw) = (plain_words(&q.sequence), plain_words(&c.sequence));
    if qw.len() == cw.len() {
        let swapped: Vec<(&String, &String)> = qw.iter().zip(&cw).filter(|(a, b)| a != b).collect();
        if let [(a, b)] = swapped[..] {
            let harmless = stem(a) == stem(b)
                || one_typo(a, b)
                || (INTERCHANGEABLE.contains(&a.as_str()) && INTERCHANGEABLE.contains(&b.as_str()));
            if !harmless {
                return Err(format!("one word swapped: {a} vs {b}"));
            }
        }
    }
    let names: BTreeSet<String> = q.names.union(&c.names).cloned().collect();
    let (qn, cn) = (names_in(&q.sequence, &names), names_in(&c.sequence, &names));
    if qn != cn {
        return Err(format!("named entities differ: {qn:?} vs {cn:?}"));
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
mod tests;
