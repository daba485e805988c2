//! Virtual API keys and teams: records, secrets, and the cached lookup on the request path.
//!
//! A key's secret (`sk-sy-…`, 40 random base62 characters) is shown once, when it is created or
//! rotated; the store keeps its SHA-256 and a short visible prefix. Lookups go through a moka
//! cache keyed by that hash (also caching misses, so a flood of bad keys does not reach the
//! database); any change made through this process invalidates the cache, and entries expire
//! after `auth.key_cache_ttl_secs` so changes made by other processes are seen too.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::records::keys::{KeyStatus, Principal};
use crate::store::{Store, StoreError};

pub const SECRET_PREFIX: &str = "sk-sy-";
const SECRET_CHARS: usize = 40;
/// Characters of the secret kept visible (`sk-sy-` and the first six random ones).
const VISIBLE: usize = SECRET_PREFIX.len() + 6;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A random id such as `key_3f9a…` (16 hex digits).
pub fn new_id(kind: &str) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    format!("{kind}_{}", hex(&b))
}

/// A fresh secret and its visible prefix.
pub fn new_secret() -> (String, String) {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = String::from(SECRET_PREFIX);
    let mut buf = [0u8; 64];
    while s.len() < SECRET_PREFIX.len() + SECRET_CHARS {
        getrandom::fill(&mut buf).expect("the operating system's random source is available");
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if b < 248 && s.len() < SECRET_PREFIX.len() + SECRET_CHARS {
                s.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    let prefix = s[..VISIBLE].to_string();
    (s, prefix)
}

/// The SHA-256 of a presented secret: what the key cache is keyed by.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// What the store keeps of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&digest(secret))
}

/// The admin master key, kept as its digest and compared in constant time: neither where a
/// guess differs nor how long the key is leaks through timing.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn new(secret: &str) -> MasterKey {
        MasterKey(digest(secret))
    }

    /// Whether a presented secret, given by its digest, is the master key.
    pub fn matches(&self, presented: &[u8; 32]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(presented).into()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// Why a presented key was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Invalid,
    Revoked,
    Disabled,
    Expired,
    Unavailable(String),
}

pub struct Keys {
    store: Store,
    /// Keyed by the secret's digest (no text is built per request).
    cache: moka::sync::Cache<[u8; 32], Option<Arc<Principal>>>,
    /// Database lookups of keys not in the cache at once: a flood of unknown keys waits here
    /// instead of taking every connection the ledger writer and the leases need.
    lookups: tokio::sync::Semaphore,
}

/// Key lookups in the database at once (the pool holds `database.max_connections`, 8 by default).
pub const MAX_KEY_LOOKUPS: usize = 4;

impl Keys {
    pub fn new(store: Store, ttl: Duration) -> Keys {
        Keys {
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            lookups: tokio::sync::Semaphore::new(MAX_KEY_LOOKUPS),
        }
    }

    /// Whether the answer for this digest is cached (known or known not to exist).
    pub fn is_cached(&self, digest: &[u8; 32]) -> bool {
        self.cache.contains_key(digest)
    }

    /// The principal of a secret, checked for status and expiry at `now_ms`.
    pub async fn authenticate(&self, secret: &str, now_ms: i64) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_digest(secret, &digest(secret), now_ms).await
    }

    /// [`Keys::authenticate`] for a secret whose digest is known already.
    pub async fn authenticate_digest(
        &self,
        secret: &str,
        digest: &[u8; 32],
        now_ms: i64,
    ) -> Result<Arc<Principal>, AuthError> {
        if !secret.starts_with(SECRET_PREFIX) || secret.len() != SECRET_PREFIX.len() + SECRET_CHARS {
            return Err(AuthError::Invalid);
        }
        let found = match self.cache.get(digest) {
            Some(p) => p,
            None => {
                let _turn = self
                    .lookups
                    .acquire()
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                // Another request may have looked the same key up while this one waited.
                if let Some(p) = self.cache.get(digest) {
                    p
                } else {
                    let p = self
                        .load(&hex(digest))
                        .await
                        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                    self.cache.insert(*digest, p.clone());
                    p
                }
            }
        };
        let p = found.ok_or(AuthError::Invalid)?;
        match p.key.status {
            KeyStatus::Active => {}
            KeyStatus::Disabled => return Err(AuthError::Disabled),
            KeyStatus::Revoked => return Err(AuthError::Revoked),
        }
        if p.key.expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(AuthError::Expired);
        }
        Ok(p)
    }

    async fn load(&self, hash: &str) -> Result<Option<Arc<Principal>>, StoreError> {
        let Some(key) = self.store.key_by_hash(hash).await? else {
            return Ok(None);
        };
        let team = match &key.team_id {
            Some(t) => self.store.get_team(t).await?,
            None => None,
        };
        Ok(Some(Arc::new(Principal::new(key, team))))
    }

    /// Forgets every cached lookup (after any change to keys or teams).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let (a, pa) = new_secret();
        let (b, _) = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-sy-") && a.len() == 46, "{a}");
        assert!(a[6..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(pa, &a[..12]);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
