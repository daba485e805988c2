//! A response-cache entry as the database keeps it (when `cache.persist` is on).

/// One kept answer, with what the semantic tier needs to index its question again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The exact tier's key (the scoped fingerprint), in hex.
    pub key: String,
    pub id: String,
    pub scope: String,
    /// The route or model asked for.
    pub target: String,
    /// The logical model that produced the answer.
    pub model: String,
    /// The `chat.completion` body.
    pub body: String,
    pub cost_nanos: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub tool_calls: bool,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The semantic tier's context group (hex) and question, when the answer has them.
    pub group: Option<String>,
    pub question: Option<String>,
    /// The question's vector (base64 of little-endian `f32`s) and the embedder that made it.
    pub embedder: Option<String>,
    pub vector: Option<String>,
}
