//! What the pages show: the signed-in viewer, and the admin API's answers as the dashboard reads
//! them (only the fields it shows; the API's own schema is the OpenAPI document).

use serde::{Deserialize, Serialize};

/// What a dashboard user may do: everything, or read only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// The signed-in user, as the session holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    /// The session's anti-forgery token, sent back by every form.
    pub csrf: String,
}

impl Viewer {
    pub fn can_edit(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The admin API's list shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: String,
    pub cost_nanos: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub group: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// `GET /admin/v1/usage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub totals: Totals,
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub limit_usd: String,
    pub period: String,
    pub soft_limit_pct: u8,
    pub spent_usd_local: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

/// A virtual key (`GET /admin/v1/keys`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Vec<String>,
    pub allowed_models: Option<Vec<String>>,
    pub route_prefer: Option<String>,
    pub expires_at: Option<String>,
    pub status: String,
    pub limits: Limits,
    pub created_at: String,
}

/// A key just made or rotated, with the secret shown once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub secret: String,
}

/// The overview page's numbers for one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub period: String,
    pub totals: Totals,
    /// Spend and requests per time bucket, oldest first.
    pub series: Vec<Group>,
    pub top_keys: Vec<Group>,
    pub top_teams: Vec<Group>,
    pub top_models: Vec<Group>,
    /// Key ids to names, for the top keys.
    pub key_names: Vec<(String, String)>,
}
