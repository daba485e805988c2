//! Token estimates with tiktoken: the right encoding per model family, OpenAI's per-message overhead.
//!
//! Exact BPE counting of a 2 KB prompt costs up to a millisecond on a loaded 2-core machine, ten
//! times the gateway's whole latency budget, so the request path never counts by default. It
//! keeps a free upper bound instead (a byte-level BPE token is at least one byte, so a text of
//! N bytes has at most N tokens) and counts exactly only when that bound matters: a request that
//! might not fit a context window, or an upstream that reported no usage.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// The BPE vocabulary used to estimate a model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-5, o-series.
    O200k = 0,
    /// GPT-4, GPT-3.5 and, as the closest public approximation, every non-OpenAI model.
    Cl100k = 1,
}

/// OpenAI's chat format adds three tokens per message and one per `name`, plus three that prime the reply.
pub const TOKENS_PER_MESSAGE: u64 = 3;
pub const TOKENS_PER_NAME: u64 = 1;
pub const REPLY_PRIMING: u64 = 3;

impl Encoding {
    /// Picks the encoding from an upstream model name.
    pub fn for_model(model: &str) -> Encoding {
        let m = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
        let o200k_prefixes = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "chatgpt-4o",
            "gpt-oss",
        ];
        if o200k_prefixes.iter().any(|p| m.starts_with(p)) {
            Encoding::O200k
        } else {
            Encoding::Cl100k
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Exact token count of plain text (special-token strings count as ordinary text).
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe().count_ordinary(text) as u64
    }
}

/// Builds the given encoders so no request pays for it (a fraction of a second each). Each one
/// costs memory for as long as the process lives (cl100k about 24 MB, o200k about 45 MB), so only
/// the encodings of deployments that may need an estimate are built; any other is built on its
/// first use.
pub fn warm_up(encodings: &[Encoding]) {
    for e in encodings {
        e.count("warm");
    }
}

/// The countable text of a chat prompt, gathered once while the request is validated.
///
/// Its exact count is made at most once per encoding, whoever asks (a context-window check, a
/// routing decision, an estimate): the first [`PromptText::count`] counts, later ones read the
/// result.
#[derive(Debug, Default)]
pub struct PromptText {
    /// Message contents, names, tool-call arguments and tool schemas, in order, separated by newlines.
    pub text: String,
    pub messages: u64,
    pub names: u64,
    /// The text's exact count per encoding, once made.
    counted: [OnceLock<u64>; 2],
    /// How many times the text was actually counted (at most one per encoding).
    counts: AtomicU32,
}

impl Clone for PromptText {
    fn clone(&self) -> Self {
        PromptText {
            text: self.text.clone(),
            messages: self.messages,
            names: self.names,
            counted: self.counted.clone(),
            counts: AtomicU32::new(self.counts.load(Ordering::Relaxed)),
        }
    }
}

impl PromptText {
    pub fn new(text: String, messages: u64, names: u64) -> PromptText {
        PromptText {
            text,
            messages,
            names,
            ..PromptText::default()
        }
    }

    fn overhead(&self) -> u64 {
        self.messages
            .saturating_mul(TOKENS_PER_MESSAGE)
            .saturating_add(self.names.saturating_mul(TOKENS_PER_NAME))
            .saturating_add(REPLY_PRIMING)
    }

    /// An upper bound on the prompt's tokens in any byte-level BPE, computed without counting.
    pub fn upper_bound(&self) -> u64 {
        (self.text.len() as u64).saturating_add(self.overhead())
    }

    /// A lower bound without counting: the chat format's own tokens. A window that cannot hold
    /// even these cannot hold the prompt.
    pub fn lower_bound(&self) -> u64 {
        self.overhead()
    }

    /// The estimate of the prompt's tokens in `enc`, with OpenAI's chat overhead; counted on
    /// the first call for each encoding only.
    pub fn count(&self, enc: Encoding) -> u64 {
        let n = *self.counted[enc as usize].get_or_init(|| {
            self.counts.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchyard_prompt_counts_total").increment(1);
            enc.count(&self.text)
        });
        n.saturating_add(self.overhead())
    }

    /// Whether the exact count in `enc` is known already (asking for it costs nothing).
    pub fn is_counted(&self, enc: Encoding) -> bool {
        self.counted[enc as usize].get().is_some()
    }

    /// How many times the text was actually counted.
    pub fn counts_made(&self) -> u32 {
        self.counts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_encoding_by_family() {
        let cases = [
            ("gpt-4o-mini", Encoding::O200k),
            ("gpt-4.1", Encoding::O200k),
            ("openai/gpt-5", Encoding::O200k),
            ("o3-mini", Encoding::O200k),
            ("gpt-4-turbo", Encoding::Cl100k),
            ("gpt-3.5-turbo", Encoding::Cl100k),
            ("claude-sonnet-4-5", Encoding::Cl100k),
            ("llama-3.1-8b", Encoding::Cl100k),
        ];
        for (model, want) in cases {
            assert_eq!(Encoding::for_model(model), want, "{model}");
        }
    }

    #[test]
    fn counts_known_strings() {
        // Reference counts from OpenAI's tiktoken for these encodings.
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
        assert_eq!(Encoding::O200k.count("hello world"), 2);
        assert_eq!(Encoding::Cl100k.count(""), 0);
        assert_eq!(
            Encoding::Cl100k.count("<|endoftext|>"),
            7,
            "special tokens count as text"
        );
    }

    #[test]
    fn upper_bound_is_never_below_the_count() {
        let samples = [
            "plain English text with a few words",
            "fn main() { println!(\"{}\", 1 + 2); }",
            "数学の問題を解いてください: ∫ x² dx",
            "🦀🦀🦀 emoji and ümlauts",
        ];
        for s in samples {
            let p = PromptText::new(s.to_string(), 2, 1);
            for enc in [Encoding::O200k, Encoding::Cl100k] {
                assert!(p.upper_bound() >= p.count(enc), "{s}");
            }
        }
    }

    #[test]
    fn chat_overhead_matches_openai_cookbook() {
        // The cookbook's example: two messages "hello" / "hi" → 2*3 + 1 + 1 + 3 = 11 with cl100k.
        let p = PromptText::new("hello\nhi".to_string(), 2, 0);
        let words = Encoding::Cl100k.count("hello\nhi");
        assert_eq!(p.count(Encoding::Cl100k), words + 2 * 3 + 3);
    }

    #[test]
    fn a_prompt_is_counted_once_per_encoding() {
        let p = PromptText::new("some words to count".to_string(), 1, 0);
        assert!(!p.is_counted(Encoding::Cl100k));
        let a = p.count(Encoding::Cl100k);
        assert_eq!(p.count(Encoding::Cl100k), a);
        assert!(p.is_counted(Encoding::Cl100k) && !p.is_counted(Encoding::O200k));
        assert_eq!(p.counts_made(), 1);
        p.count(Encoding::O200k);
        assert_eq!(p.counts_made(), 2);
        assert!(p.lower_bound() <= a && a <= p.upper_bound());
    }
}
