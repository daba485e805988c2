//! The dashboard's users and sessions as stored.

pub use switchyard_ui::types::Role;

#[derive(Clone)]
pub struct UserRecord {
    pub name: String,
    /// Argon2id in PHC string form.
    pub password_hash: String,
    pub role: Role,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Clone)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie's secret: a stolen database holds no usable session.
    pub id_hash: String,
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}
