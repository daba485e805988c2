//! The built-in demo configuration: mock models, no key, no network.

/// The configuration used when no file is given.
pub const DEMO_CONFIG: &str = r#"
[auth]
# The demo answers without a key; keys created through the admin API are still enforced.
required = false

# Answers are cached: an exact repeat, or the same conversation with its last question
# reworded (all-MiniLM-L6-v2 from models/, fetched by scripts/fetch-model.sh; without it, the
# lexical embedder), per caller. A hit costs nothing.
[cache]
enabled = true
[cache.semantic]
enabled = true
embedder = "local"

[providers.demo]
kind = "mock"
latency_ms = 20
chunk_delay_ms = 15

[models.demo-cheap]
description = "Built-in demo model standing in for a small, cheap model"
[[models.demo-cheap.deployments]]
provider = "demo"
model = "demo-cheap"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
cached_input_per_mtok = "0.075"
context_window = 128000
max_output_tokens = 16384
capabilities = ["tools", "json", "vision"]

[models.demo-powerful]
description = "Built-in demo model standing in for a large, capable model"
[[models.demo-powerful.deployments]]
provider = "demo"
model = "demo-powerful"
input_per_mtok = "2.50"
output_per_mtok = "10.00"
cached_input_per_mtok = "1.25"
context_window = 128000
max_output_tokens = 16384
capabilities = ["tools", "json", "vision"]

[routes.auto]
description = "The cheap model unless the request looks hard (the hardest 30 %), with soft landing near the budget"
cheap = "demo-cheap"
strong = "demo-powerful"
strong_share = 0.3

[models.demo-embed]
kind = "embedding"
description = "Built-in demo embedding model (deterministic vectors)"
[[models.demo-embed.deployments]]
provider = "demo"
model = "demo-embed"
input_per_mtok = "0.02"
output_per_mtok = "0"
context_window = 8191
"#;
