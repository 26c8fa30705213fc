//! API tokens: random, shown once, stored as SHA-256 hashes.

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, from_ms, ms};

/// A stored token, without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: chrono::DateTime<Utc>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates a token named `name` and returns its secret: the only time it is seen.
    pub async fn create_token(&self, name: &str) -> Result<String> {
        let bytes: [u8; 32] = rand::random();
        let token = format!("baton_{}", hex::encode(bytes));
        sqlx::query("INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(hash(&token))
            .bind(ms(Utc::now()))
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    /// The token's record if the secret is valid and not revoked.
    pub async fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(
            "SELECT id, name, created_at FROM tokens WHERE hash = ? AND revoked_at IS NULL",
        )
        .bind(hash(token))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(TokenInfo {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: from_ms(r.try_get("created_at")?),
            })
        })
        .transpose()
    }

    pub async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ms(Utc::now()))
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes every live token with this name (an agent's credentials). Returns how many.
    pub async fn revoke_tokens_named(&self, name: &str) -> Result<u64> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
                .bind(ms(Utc::now()))
                .bind(name)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }
}
