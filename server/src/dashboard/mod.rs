//! The dashboard's sign-in: the master key or a stored user's password, sessions kept in the
//! database as digests, failed attempts slowed down, and the first admin user of a fresh gateway.
//! The pages themselves are `switchyard-ui`; `http::ui` serves them.
//!
//! - this file: [`Dashboard`]: sign in, look a session up, sign out, add users;

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use switchyard_ui::backend::Session;
use switchyard_ui::types::{Created, Role, Viewer};

use crate::access::keys::{digest, MasterKey};
use crate::access::throttle::Throttle;
use crate::clock::Clock;
use crate::records::dashboard::{SessionRecord, UserRecord};
use crate::store::{Store, StoreError};

/// The name a master-key session shows.
pub const MASTER_USER: &str = "master key";
/// The first admin user made on a gateway that has neither a master key nor users.
pub const FIRST_USER: &str = "admin";

/// Why a sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInError {
    /// Wrong user or password (which one is not said).
    Wrong,
    /// Too many failures: try again after this many milliseconds.
    Throttled(i64),
    Unavailable,
}

/// A new user was refused.
#[derive(Debug)]
pub enum UserError {
    Invalid(&'static str, String),
    Exists,
    Store(StoreError),
}

pub struct Dashboard {
    store: Store,
    clock: Arc<dyn Clock>,
    master: Option<MasterKey>,
    session_ttl_ms: i64,
    throttle: Throttle,
    /// Secrets of keys created by forms posted without JavaScript, for the session's next page.
    created: moka::sync::Cache<String, Created>,
}

impl Dashboard {
    pub fn new(store: Store, clock: Arc<dyn Clock>, master: Option<MasterKey>, session_ttl: Duration) -> Dashboard {
        Dashboard {
            store,
            clock,
            master,
            session_ttl_ms: i64::try_from(session_ttl.as_millis()).unwrap_or(i64::MAX),
            throttle: Throttle::default(),
            created: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
        }
    }

    pub fn session_ttl_ms(&self) -> i64 {
        self.session_ttl_ms
    }

    /// Checks a sign-in from address `from` and starts a session: the cookie's secret and who.
    /// An empty `user` signs in with the master key.
    pub async fn sign_in(&self, user: &str, password: &str, from: &str) -> Result<(String, Viewer), SignInError> {
        let user = user.trim();
        let now = self.clock.now_ms();
        let by_ip = format!("ip:{from}");
        let by_user = format!("user:{user}");
        let subjects = [by_ip.as_str(), by_user.as_str()];
        let wait = self.throttle.wait_ms(&subjects, now);
        if wait > 0 {
            return Err(SignInError::Throttled(wait));
        }
        // Whether the name typed is a user's: only then is it logged as typed, since a password
        // typed into the user field must not reach the log.
        let mut known = user.is_empty();
        let role = if user.is_empty() {
            self.master
                .as_ref()
                .filter(|m| m.matches(&digest(password)))
                .map(|_| Role::Admin)
        } else {
            let stored = self.store.get_user(user).await.map_err(|e| {
                tracing::error!(error = %e, "sign-in: cannot read users");
                SignInError::Unavailable
            })?;
            known = stored.is_some();
            let hash = stored.as_ref().map(|u| u.password_hash.clone());
            let ok = verify_password(password.to_string(), hash).await;
            stored.filter(|_| ok).map(|u| u.role)
        };
        let Some(role) = role else {
            self.throttle.failed(&subjects, now);
            if known {
                tracing::warn!(
                    user = if user.is_empty() { MASTER_USER } else { user },
                    from,
                    "dashboard sign-in refused"
                );
            } else {
                // Not even a hash of it: a short password would be found from one.
                tracing::warn!(from, "dashboard sign-in refused for a user name that is not a user's");
            }
            return Err(SignInError::Wrong);
        };
        self.throttle.succeeded(&subjects);
        let secret = random_token();
        let name = if user.is_empty() { MASTER_USER } else { user };
        let rec = SessionRecord {
            id_hash: hex::encode(Sha256::digest(secret.as_bytes())),
            user: name.to_string(),
            role,
            csrf: random_token(),
            created_ms: now,
            expires_ms: now.saturating_add(self.session_ttl_ms),
        };
        self.store.insert_session(&rec).await.map_err(|e| {
            tracing::error!(error = %e, "sign-in: cannot store the session");
            SignInError::Unavailable
        })?;
        tracing::info!(user = name, role = role.as_str(), from, "dashboard sign-in");
        Ok((secret, viewer_of(&rec)))
    }

    /// The live session behind a cookie's secret.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>, StoreError> {
        if secret.is_empty() || secret.len() > 128 {
            return Ok(None);
        }
        let id_hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let rec = self.store.live_session(&id_hash, self.clock.now_ms()).await?;
        Ok(rec.map(|r| Session {
            id: r.id_hash.clone(),
            viewer: viewer_of(&r),
            address: None,
        }))
    }

    pub async fn sign_out(&self, session: &Session) -> Result<(), StoreError> {
        self.created.invalidate(&session.id);
        self.store.delete_session(&session.id).await
    }

    pub fn put_created(&self, session: &str, c: Created) {
        self.created.insert(session.to_string(), c);
    }

    pub fn take_created(&self, session: &str) -> Option<Created> {
        self.created.remove(session)
    }

    /// Adds a user with a password of at least 12 characters.
    pub async fn add_user(&self, name: &str, password: &str, role: Role) -> Result<UserRecord, UserError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || "-_.@".contains(c)) {
            return Err(UserError::Invalid(
                "name",
                "1 to 64 letters, digits and `-` `_` `.` `@`".into(),
            ));
        }
        if password.chars().count() < 12 || password.len() > 1024 {
            return Err(UserError::Invalid("password", "12 to 1024 characters".into()));
        }
        let now = self.clock.now_ms();
        let u = UserRecord {
            name: name.to_string(),
            password_hash: hash_password(password.to_string()).await,
            role,
            created_ms: now,
            updated_ms: now,
        };
        match self.store.insert_user(&u).await {
            Ok(()) => Ok(u),
            Err(e) if e.is_conflict() => Err(UserError::Exists),
            Err(e) => Err(UserError::Store(e)),
        }
    }

    /// On a gateway with no master key and no users, makes the admin user [`FIRST_USER`] with
    /// a random password, writes the password to `file` (readable by its owner only) and
    /// returns it; otherwise `None`.
    pub async fn first_user(&self, file: &std::path::Path) -> Result<Option<String>, String> {
        if self.master.is_some() || self.store.count_users().await.map_err(|e| e.to_string())? > 0 {
            return Ok(None);
        }
        let password = random_token();
        match self.add_user(FIRST_USER, &password, Role::Admin).await {
            Ok(_) => {}
            // Another process made it first.
            Err(UserError::Exists) => return Ok(None),
            Err(UserError::Store(e)) => return Err(e.to_string()),
            Err(UserError::Invalid(_, m)) => return Err(m),
        }
        write_private(file, &format!("{password}\n")).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Some(password))
    }
}

fn viewer_of(r: &SessionRecord) -> Viewer {
    Viewer {
        name: r.user.clone(),
        role: r.role,
        csrf: r.csrf.clone(),
    }
}

/// 32 random bytes as URL-safe base64 (43 characters).
pub fn random_token() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Argon2id with its default cost (19 MiB, 2 passes), on a blocking thread.
pub async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the operating system's random source is available");
        let salt = SaltString::encode_b64(&salt).expect("16 bytes make a salt");
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashes any password")
            .to_string()
    })
    .await
    .expect("the hashing task does not panic")
}

/// Checks a password against a stored hash; with no hash (an unknown user) it still spends the
/// time of a check, so timing does not tell which user names exist.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::encode_b64(b"switchyard-dummy").expect("salt");
                    Argon2::default()
                        .hash_password(b"not a password", &salt)
                        .expect("hash")
                        .to_string()
                })
                .clone()
        });
        let ok = PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        known && ok
    })
    .await
    .unwrap_or(false)
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}
