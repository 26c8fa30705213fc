//! API tokens: random, shown once, stored as SHA-256 hashes. A token belongs to a user, or to
//! no one (an operator token, which acts as an administrator).

use std::time::Instant;

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, from_ms, ms};

/// Names of pools' one-time join tokens start with this (`pool-join:POOL:AGENT`).
pub const POOL_JOIN_PREFIX: &str = "pool-join:";

/// A stored token, without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The owning user's name; `None` for an operator token.
    pub user: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
}

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

fn info(r: &sqlx::any::AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        user: r.try_get("user_name")?,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT t.id, t.name, t.created_at, u.name AS user_name
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id ",
            $where
        )
    };
}

impl Store {
    /// Creates an operator token (no user) named `name` and returns its secret: the only time
    /// it is seen.
    pub async fn create_token(&self, name: &str) -> Result<String> {
        self.create_user_token(name, None).await
    }

    /// Creates a token owned by `user` (or an operator token with `None`) and returns its
    /// secret. Fails with [`crate::StoreError::NoSuchUser`] when the user does not exist.
    pub async fn create_user_token(&self, name: &str, user: Option<&str>) -> Result<String> {
        let user_id = match user {
            Some(u) => Some(self.user_id(u).await?),
            None => None,
        };
        let token = random_secret("baton_");
        sqlx::query("INSERT INTO tokens (name, hash, created_at, user_id) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(hash(&token))
            .bind(ms(Utc::now()))
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    /// Creates a one-time join token for an agent of pool `pool` named `agent` (token name
    /// `pool-join:POOL:AGENT`) and returns its id and secret. It is good for one join only
    /// ([`Store::consume_pool_token`]).
    pub async fn create_pool_token(&self, pool: &str, agent: &str) -> Result<(i64, String)> {
        let token = random_secret("baton_");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (name, hash, created_at, user_id) VALUES ($1, $2, $3, NULL) RETURNING id",
        )
        .bind(format!("{POOL_JOIN_PREFIX}{pool}:{agent}"))
        .bind(hash(&token))
        .bind(ms(Utc::now()))
        .fetch_one(self.pool())
        .await?;
        Ok((id, token))
    }

    /// Uses up a pool's join token: revokes it in the same statement that finds it, so two
    /// joins with one token cannot both succeed. Returns `(pool, agent)` it names, or `None`
    /// when the secret is unknown, used or revoked, or not a pool's join token.
    pub async fn consume_pool_token(&self, token: &str) -> Result<Option<(String, String)>> {
        let used = hash(token);
        let name: sqlx::Result<Option<String>> = sqlx::query_scalar(
            "UPDATE tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL
               AND name LIKE 'pool-join:%' RETURNING name",
        )
        .bind(ms(Utc::now()))
        .bind(&used)
        .fetch_optional(self.pool())
        .await;
        self.token_cache.forget(|h, _| h == used);
        let name = name?;
        Ok(name.and_then(|n| {
            let rest = n.strip_prefix(POOL_JOIN_PREFIX)?;
            let (pool, agent) = rest.split_once(':')?;
            Some((pool.to_string(), agent.to_string()))
        }))
    }

    /// The token's record if the secret is valid and not revoked.
    pub async fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>> {
        self.verify_hash(&hash(token)).await
    }

    async fn verify_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(select!("WHERE t.hash = $1 AND t.revoked_at IS NULL"))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(info).transpose()
    }

    /// [`Store::verify_token`] through a short-lived in-memory cache of verified tokens, keyed
    /// by the token's hash (for agents' requests, which come all the time). A revocation
    /// through this store takes effect at once; one made by another process on the same
    /// database within [`crate::TOKEN_CACHE_TTL`].
    pub async fn verify_token_cached(&self, token: &str) -> Result<Option<TokenInfo>> {
        let hash = hash(token);
        let generation = match self.token_cache.get(&hash, Instant::now()) {
            Ok(info) => return Ok(Some(info)),
            Err(generation) => generation,
        };
        let found = self.verify_hash(&hash).await?;
        if let Some(info) = &found {
            self.token_cache
                .put(hash, info.clone(), generation, Instant::now());
        }
        Ok(found)
    }

    /// The live tokens of `user`, newest first.
    pub async fn user_tokens(&self, user: &str) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(select!(
            "WHERE u.name = $1 AND t.revoked_at IS NULL ORDER BY t.id DESC"
        ))
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(info).collect()
    }

    /// Every live token (operators' and users'), newest first.
    pub async fn all_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(select!("WHERE t.revoked_at IS NULL ORDER BY t.id DESC"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(info).collect()
    }

    pub async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ms(Utc::now()))
                .bind(id)
                .execute(self.pool())
                .await;
        // Forgotten even after an error: the update may have been committed.
        self.token_cache.forget(|_, t| t.id == id);
        let done = done?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes every live token with this name (an agent's credentials). Returns how many.
    pub async fn revoke_tokens_named(&self, name: &str) -> Result<u64> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                .bind(ms(Utc::now()))
                .bind(name)
                .execute(self.pool())
                .await;
        // Forgotten even after an error: the update may have been committed.
        self.token_cache.forget(|_, t| t.name == name);
        let done = done?;
        Ok(done.rows_affected())
    }

    /// Revokes token `id` only if it belongs to `user`; `false` when it does not exist, is not
    /// theirs, or is already revoked.
    pub async fn revoke_user_token(&self, user: &str, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL
               AND user_id = (SELECT id FROM users WHERE name = $3)",
        )
        .bind(ms(Utc::now()))
        .bind(id)
        .bind(user)
        .execute(self.pool())
        .await;
        // Forgotten even after an error: the update may have been committed.
        self.token_cache.forget(|_, t| t.id == id);
        let done = done?;
        Ok(done.rows_affected() > 0)
    }
}
