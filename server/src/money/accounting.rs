//! Accounting, in one place: what an upstream reported (or nothing) and the text that was seen
//! become the usage of a call, where it came from, its cost, and a flag when the report could not
//! be believed.
//!
//! Every path goes through [`account`]: a JSON answer, a stream's end, both attempts of a
//! cascade, embeddings, a client that went away, an upstream that failed mid-answer. A report is
//! believed only within the request's bounds: prompt tokens cannot exceed the deployment's
//! context window, completion tokens cannot exceed the output cap times `n`, no count is negative
//! or fractional. Anything else is replaced by an estimate and flagged, with a metric and a log
//! line, so an absurd report (a bug upstream, or a hostile server) can neither overflow the
//! ledger nor bill a customer for tokens that cannot have been used. All arithmetic on counts and
//! money saturates.

use std::sync::Arc;

use crate::config::DeploymentConfig;
use crate::money::pricing::{Nanos, Price};
use crate::money::tokens::{Encoding, PromptText};
use crate::records::usage::{Reported, Usage, UsageSource};

/// What a call could plausibly have used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Prompt tokens at most (the deployment's context window, times the inputs of an
    /// embeddings call).
    pub prompt: u64,
    /// Completion tokens at most: the requested cap (else the deployment's, else its window)
    /// for every choice.
    pub completion: u64,
}

impl Bounds {
    /// The bounds of a chat call with `max_output` and `n` choices on `d`.
    pub fn chat(d: &DeploymentConfig, max_output: Option<u32>, n: u32) -> Bounds {
        let window = u64::from(d.context_window);
        let cap = max_output
            .or(d.max_output_tokens)
            .map_or(window, u64::from)
            .min(window.max(1));
        Bounds {
            prompt: window,
            completion: cap.saturating_mul(u64::from(n.max(1))),
        }
    }

    /// The bounds of an embeddings call with `inputs` inputs on `d`: no completion.
    pub fn embeddings(d: &DeploymentConfig, inputs: u64) -> Bounds {
        Bounds {
            prompt: u64::from(d.context_window).saturating_mul(inputs.max(1)),
            completion: 0,
        }
    }

    /// No bounds known (nothing was dispatched); only sign and type are checked.
    pub const UNKNOWN: Bounds = Bounds {
        prompt: u64::MAX,
        completion: u64::MAX,
    };
}

/// Whether a report is believed, or what replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Believed as reported (possibly with a correction, then flagged).
    Believe(Usage, Option<&'static str>),
    /// Not usable: estimate instead. The flag is set when the report was there but implausible;
    /// a missing report (or a zero prompt count, which some servers send) is not flagged.
    Estimate(Option<&'static str>),
}

/// Decides whether `reported` can be believed within `bounds`.
pub fn judge(reported: Option<&Reported>, bounds: Bounds) -> Verdict {
    let Some(r) = reported else {
        return Verdict::Estimate(None);
    };
    if r.malformed {
        return Verdict::Estimate(Some("malformed"));
    }
    let negative = |v: Option<i128>| v.is_some_and(|v| v < 0);
    if negative(r.prompt_tokens) || negative(r.completion_tokens) || negative(r.cached_tokens) {
        return Verdict::Estimate(Some("malformed"));
    }
    // Every real prompt has a token; a report of none would bill the call at $0.
    let prompt = match r.prompt_tokens {
        None | Some(0) => return Verdict::Estimate(None),
        Some(p) => p,
    };
    if prompt > i128::from(bounds.prompt) {
        return Verdict::Estimate(Some("prompt_over_window"));
    }
    let completion = r.completion_tokens.unwrap_or(0);
    if completion > i128::from(bounds.completion) {
        return Verdict::Estimate(Some("completion_over_cap"));
    }
    // Both fit in u64 now: they are non-negative and at most a u64 bound.
    let prompt = prompt as u64;
    let completion = completion as u64;
    let cached = r.cached_tokens.unwrap_or(0);
    let (cached, flag) = if cached > i128::from(prompt) {
        (prompt, Some("cached_over_prompt"))
    } else {
        (cached as u64, None)
    };
    Verdict::Believe(
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
        },
        flag,
    )
}

/// A call's usage as it is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounted {
    pub usage: Usage,
    pub source: UsageSource,
    /// The call's cost at its price.
    pub cost: Nanos,
    /// Why the upstream's report was corrected or replaced, when it was.
    pub flag: Option<&'static str>,
}

/// Turns a report (or none) into billed usage: believed within `bounds`, else `estimate()`d.
/// `deployment` names the call in the log line an implausible report leaves.
pub fn account(
    reported: Option<&Reported>,
    bounds: Bounds,
    price: Price,
    deployment: &str,
    estimate: impl FnOnce() -> Usage,
) -> Accounted {
    let (usage, source, flag) = match judge(reported, bounds) {
        Verdict::Believe(u, flag) => (u, UsageSource::Reported, flag),
        Verdict::Estimate(flag) => (estimate(), UsageSource::Estimated, flag),
    };
    if let Some(flag) = flag {
        metrics::counter!("switchyard_usage_implausible_total", "flag" => flag).increment(1);
        tracing::warn!(deployment, flag, reported = ?reported, counted = ?usage,
            "implausible usage report from the upstream; billed from the gateway's count");
    }
    Accounted {
        usage,
        source,
        cost: price.cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens),
        flag,
    }
}

/// A chat call's estimate: the prompt (counted at most once per encoding, see
/// [`PromptText::count`]) and the generated text.
pub fn estimate_chat(prompt: Option<&PromptText>, completion_text: &str, enc: Encoding) -> Usage {
    Usage {
        prompt_tokens: prompt.map_or(0, |p| p.count(enc)),
        completion_tokens: enc.count(completion_text),
        cached_tokens: 0,
    }
}

/// Texts longer than this are counted on a blocking thread, not on the async executor.
pub const COUNT_INLINE_BYTES: usize = 32 * 1024;

/// [`estimate_chat`] off the async executor when there is much to count.
pub async fn estimate_chat_off_executor(
    prompt: Option<Arc<PromptText>>,
    completion_text: Arc<str>,
    enc: Encoding,
) -> Usage {
    let uncounted_prompt = prompt
        .as_ref()
        .filter(|p| !p.is_counted(enc))
        .map_or(0, |p| p.text.len());
    if uncounted_prompt + completion_text.len() <= COUNT_INLINE_BYTES {
        return estimate_chat(prompt.as_deref(), &completion_text, enc);
    }
    let text = completion_text.clone();
    let p = prompt.clone();
    match tokio::task::spawn_blocking(move || estimate_chat(p.as_deref(), &text, enc)).await {
        Ok(u) => u,
        // The blocking pool is shutting down: count here rather than bill nothing.
        Err(_) => estimate_chat(prompt.as_deref(), &completion_text, enc),
    }
}

/// A rough estimate from sizes alone (about four bytes a token), for when the exact count
/// cannot be afforded: flagged `approximate` wherever it is used.
pub fn approximate(prompt_bytes: usize, completion_bytes: usize) -> Usage {
    Usage {
        prompt_tokens: (prompt_bytes as u64).div_ceil(4),
        completion_tokens: (completion_bytes as u64).div_ceil(4),
        cached_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::pricing::PicoPerToken;

    fn rep(p: Option<i128>, c: Option<i128>, cached: Option<i128>) -> Reported {
        Reported {
            prompt_tokens: p,
            completion_tokens: c,
            cached_tokens: cached,
            malformed: false,
        }
    }

    const B: Bounds = Bounds {
        prompt: 1000,
        completion: 100,
    };

    #[test]
    fn plausible_reports_are_believed() {
        let v = judge(Some(&rep(Some(10), Some(5), Some(4))), B);
        assert_eq!(
            v,
            Verdict::Believe(
                Usage {
                    prompt_tokens: 10,
                    completion_tokens: 5,
                    cached_tokens: 4
                },
                None
            )
        );
        // At the bounds exactly is still believable.
        assert!(matches!(
            judge(Some(&rep(Some(1000), Some(100), None)), B),
            Verdict::Believe(_, None)
        ));
    }

    #[test]
    fn absurd_reports_are_replaced_and_flagged() {
        let cases = [
            (rep(Some(1 << 62), Some(1), None), Some("prompt_over_window")),
            (rep(Some(1001), Some(1), None), Some("prompt_over_window")),
            (rep(Some(10), Some(101), None), Some("completion_over_cap")),
            (
                rep(Some(10), Some(i128::from(u64::MAX) + 5), None),
                Some("completion_over_cap"),
            ),
            (rep(Some(-3), Some(1), None), Some("malformed")),
            (rep(Some(10), Some(-1), None), Some("malformed")),
            (rep(Some(10), Some(1), Some(-1)), Some("malformed")),
            (
                Reported {
                    malformed: true,
                    ..rep(Some(10), Some(1), None)
                },
                Some("malformed"),
            ),
            // A missing or zero prompt count is common and not flagged.
            (rep(None, Some(1), None), None),
            (rep(Some(0), Some(0), None), None),
        ];
        for (r, flag) in cases {
            assert_eq!(judge(Some(&r), B), Verdict::Estimate(flag), "{r:?}");
        }
        assert_eq!(judge(None, B), Verdict::Estimate(None));
    }

    #[test]
    fn cached_beyond_the_prompt_is_clamped_and_flagged() {
        let v = judge(Some(&rep(Some(10), Some(1), Some(50))), B);
        assert_eq!(
            v,
            Verdict::Believe(
                Usage {
                    prompt_tokens: 10,
                    completion_tokens: 1,
                    cached_tokens: 10
                },
                Some("cached_over_prompt")
            )
        );
    }

    #[test]
    fn an_estimate_replaces_what_is_not_believed_and_is_priced() {
        let price = Price {
            input: PicoPerToken(1_000_000),
            output: PicoPerToken(2_000_000),
            cached_input: PicoPerToken(500_000),
        };
        let counted = Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            cached_tokens: 0,
        };
        let a = account(Some(&rep(Some(1 << 62), Some(3), None)), B, price, "d", || counted);
        assert_eq!(a.usage, counted);
        assert_eq!(a.source, UsageSource::Estimated);
        assert_eq!(a.flag, Some("prompt_over_window"));
        assert_eq!(a.cost, Nanos((7 * 1_000_000 + 3 * 2_000_000) / 1000));
        let a = account(Some(&rep(Some(8), Some(2), None)), B, price, "d", || {
            panic!("not counted")
        });
        assert_eq!(
            (a.source, a.flag, a.usage.prompt_tokens),
            (UsageSource::Reported, None, 8)
        );
    }

    #[test]
    fn chat_bounds_follow_the_request_and_the_deployment() {
        let text = r#"
            [providers.p]
            kind = "mock"
            [models.m]
            [[models.m.deployments]]
            provider = "p"
            model = "x"
            input_per_mtok = 1
            output_per_mtok = 1
            context_window = 1000
            max_output_tokens = 200
        "#;
        let c = crate::config::Config::from_toml(text, &|_| None, std::iter::empty()).unwrap();
        let d = &c.models["m"].deployments[0];
        assert_eq!(
            Bounds::chat(d, None, 1),
            Bounds {
                prompt: 1000,
                completion: 200
            }
        );
        assert_eq!(Bounds::chat(d, Some(50), 3).completion, 150);
        assert_eq!(
            Bounds::chat(d, Some(u32::MAX), 1).completion,
            1000,
            "never above the window"
        );
        assert_eq!(Bounds::embeddings(d, 4).prompt, 4000);
    }
}
