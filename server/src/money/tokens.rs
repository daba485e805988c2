//! Token estimates with tiktoken: the right encoding per model family, OpenAI's per-message overhead.
//!
//! Exact BPE counting of a 2 KB prompt costs up to a millisecond on a loaded 2-core machine, ten
//! times the gateway's whole latency budget, so the request path never counts by default. It
//! keeps a free upper bound instead (a byte-level BPE token is at least one byte, so a text of
//! N bytes has at most N tokens) and counts exactly only when that bound matters: a request that
//! might not fit a context window, or an upstream that reported no usage.

use tiktoken_rs::CoreBPE;

/// The BPE vocabulary used to estimate a model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-5, o-series.
    O200k,
    /// GPT-4, GPT-3.5 and, as the closest public approximation, every non-OpenAI model.
    Cl100k,
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
#[derive(Debug, Clone, Default)]
pub struct PromptText {
    /// Message contents, names, tool-call arguments and tool schemas, in order, separated by newlines.
    pub text: String,
    pub messages: u64,
    pub names: u64,
}

impl PromptText {
    /// An upper bound on the prompt's tokens in any byte-level BPE, computed without counting.
    pub fn upper_bound(&self) -> u64 {
        self.text.len() as u64 + self.messages * TOKENS_PER_MESSAGE + self.names * TOKENS_PER_NAME + REPLY_PRIMING
    }

    /// The estimate of the prompt's tokens in `enc`, with OpenAI's chat overhead.
    pub fn count(&self, enc: Encoding) -> u64 {
        enc.count(&self.text) + self.messages * TOKENS_PER_MESSAGE + self.names * TOKENS_PER_NAME + REPLY_PRIMING
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
            let p = PromptText {
                text: s.to_string(),
                messages: 2,
                names: 1,
            };
            for enc in [Encoding::O200k, Encoding::Cl100k] {
                assert!(p.upper_bound() >= p.count(enc), "{s}");
            }
        }
    }

    #[test]
    fn chat_overhead_matches_openai_cookbook() {
        // The cookbook's example: two messages "hello" / "hi" → 2*3 + 1 + 1 + 3 = 11 with cl100k.
        let p = PromptText {
            text: "hello\nhi".to_string(),
            messages: 2,
            names: 0,
        };
        let words = Encoding::Cl100k.count("hello\nhi");
        assert_eq!(p.count(Encoding::Cl100k), words + 2 * 3 + 3);
    }
}
