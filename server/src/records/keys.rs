//! Keys, teams and the caller behind a request, as stored and as the request path sees them.

use serde::Serialize;

use super::limits::Limits;

/// A key's state: `disabled` can be set back to `active`; `revoked` is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    /// Temporarily off; can be enabled again.
    Disabled,
    /// Permanently off.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Result<KeyStatus, String> {
        Ok(match s {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            "revoked" => KeyStatus::Revoked,
            _ => return Err(format!("unknown key status `{s}` (active, disabled, revoked)")),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    pub cost_center: Option<String>,
    pub limits: Limits,
    /// Store the prompt and answer bodies of its keys' requests in the request log.
    pub store_bodies: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The visible start of the secret, e.g. `sk-sy-Ab12Cd`.
    pub prefix: String,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Vec<String>,
    /// Logical models this key may call; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// The routing preference for requests without an `x-switchyard-prefer` header.
    pub route_prefer: Option<Prefer>,
    pub expires_ms: Option<i64>,
    pub status: KeyStatus,
    pub limits: Limits,
    /// Store the prompt and answer bodies of its requests in the request log.
    pub store_bodies: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub rotated_ms: Option<i64>,
}

impl KeyRecord {
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// The caller behind a request: its key and the key's team.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: KeyRecord,
    pub team: Option<TeamRecord>,
    pub key_scope: String,
    pub team_scope: Option<String>,
}

impl Principal {
    pub fn new(key: KeyRecord, team: Option<TeamRecord>) -> Principal {
        Principal {
            key_scope: format!("key:{}", key.id),
            team_scope: team.as_ref().map(|t| format!("team:{}", t.id)),
            key,
            team,
        }
    }

    /// Whether the key or its team opted in to stored bodies.
    pub fn stores_bodies(&self) -> bool {
        self.key.store_bodies || self.team.as_ref().is_some_and(|t| t.store_bodies)
    }

    /// The key's cost center, else its team's.
    pub fn cost_center(&self) -> Option<&str> {
        self.key
            .cost_center
            .as_deref()
            .or(self.team.as_ref().and_then(|t| t.cost_center.as_deref()))
    }
}

/// What the caller asked for in `x-switchyard-prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    Balanced,
    Cost,
    Quality,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Balanced => "balanced",
            Prefer::Cost => "cost",
            Prefer::Quality => "quality",
        }
    }

    pub fn parse(v: &str) -> Option<Prefer> {
        match v.trim().to_ascii_lowercase().as_str() {
            "cost" | "cheap" => Some(Prefer::Cost),
            "quality" | "strong" => Some(Prefer::Quality),
            "balanced" | "default" => Some(Prefer::Balanced),
            _ => None,
        }
    }
}
