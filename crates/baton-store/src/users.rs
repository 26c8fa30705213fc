//! Users (argon2id password hashes) and login sessions. A session id is a random secret given to
//! the browser in a cookie and stored here only as its SHA-256 hash; each session carries its
//! own CSRF secret.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use crate::tokens::{hash, random_secret};
use crate::{Result, Store, StoreError, from_ms, ms};

/// A user as the UI shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A live login session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user: String,
    /// The session's CSRF secret: every form and cookie-authenticated write must carry it.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// The shortest password a user may set (`baton user add`, the /me page).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// How many hex digits of a session's stored hash name it on its user's page: enough to tell
/// sessions apart, and nothing of the cookie (the hash of a random secret).
const HANDLE_LEN: usize = 16;

/// A user's live session as their page lists it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// A name for the session (a prefix of its id's hash), to end it by.
    pub handle: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The handle ([`SessionRow::handle`]) of the session whose cookie value is `id`.
pub fn session_handle(id: &str) -> String {
    hash(id).chars().take(HANDLE_LEN).collect()
}

/// A new session: the cookie value (shown once) and its CSRF secret.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Password(e.to_string()))
}

/// User names: 1–64 characters of letters, digits, `.`, `_`, `-` and `@`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn user_info(r: &sqlx::any::AnyRow) -> Result<UserInfo> {
    Ok(UserInfo {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

impl Store {
    /// Adds a user, or sets the password of an existing one. Returns `true` if the user is new.
    pub async fn upsert_user(&self, name: &str, password: &str) -> Result<bool> {
        if !valid_user_name(name) {
            return Err(StoreError::Password(format!(
                "invalid user name {name:?} (use letters, digits, `.`, `_`, `-`, `@`; at most 64)"
            )));
        }
        if password.is_empty() {
            return Err(StoreError::Password("the password is empty".into()));
        }
        let phc = {
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|e| StoreError::Password(e.to_string()))??
        };
        let existed = match self.user_provider(name).await? {
            None => false,
            Some(None) => true,
            Some(Some(provider)) => {
                return Err(StoreError::Password(format!(
                    "user `{name}` signs in through {provider} and has no password here"
                )));
            }
        };
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(phc)
        .bind(ms(Utc::now()))
        .execute(self.pool())
        .await?;
        if existed {
            // A new password ends every session of the old one.
            sqlx::query(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            )
            .bind(name)
            .execute(self.pool())
            .await?;
        }
        Ok(!existed)
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM users ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_info).collect()
    }

    /// Removes user `name` with their sessions and tokens, in one transaction. `false` when
    /// there is no such user.
    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        for sql in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM tokens WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let committed = tx.commit().await;
        // The user's tokens are gone: forgotten even after an error (it may have committed).
        self.token_cache
            .forget(|_, t| t.user.as_deref() == Some(name));
        committed?;
        Ok(true)
    }

    pub async fn find_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let row = sqlx::query("SELECT id, name, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_info).transpose()
    }

    /// `None` when no such user; `Some(None)` for a password user; `Some(Some(p))` for a user
    /// of single sign-on provider `p`.
    async fn user_provider(&self, name: &str) -> Result<Option<Option<String>>> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT provider FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The user `name` signing in through single sign-on provider `provider` as the account
    /// `subject` there: made on the first sign-in, which binds the name to that account. A name
    /// that belongs to a password user, to another provider's user or to another account of the
    /// same provider is refused ([`StoreError::IdentityConflict`]): a provider never takes over
    /// someone else's account, and a renamed account's old name cannot be re-registered into it.
    pub async fn sso_user(&self, name: &str, provider: &str, subject: &str) -> Result<()> {
        if !valid_user_name(name) {
            return Err(StoreError::Password(format!(
                "{provider} names this user {name:?}, which is not a valid user name here (letters, digits, `.`, `_`, `-`, `@`; at most 64)"
            )));
        }
        // Insert-if-absent, then read back who owns the name: one statement each, so two
        // concurrent first sign-ins agree.
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_at, provider, subject)
             VALUES ($1, '', $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(ms(Utc::now()))
        .bind(provider)
        .bind(subject)
        .execute(self.pool())
        .await?;
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT provider, subject FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        let conflict = |owner: String| {
            Err(StoreError::IdentityConflict {
                user: name.to_owned(),
                provider: provider.to_owned(),
                owner,
            })
        };
        match row {
            Some((Some(p), Some(sub))) if p == provider && sub == subject => Ok(()),
            Some((Some(p), _)) if p == provider => conflict(format!("another account of {p}")),
            Some((Some(p), _)) => conflict(format!("a user of {p}")),
            Some((None, _)) => conflict("a password user".into()),
            None => Err(StoreError::NoSuchUser(name.to_owned())),
        }
    }

    pub(crate) async fn user_id(&self, name: &str) -> Result<i64> {
        self.find_user(name)
            .await?
            .map(|u| u.id)
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
    }

    /// Whether `password` is `name`'s password. Unknown users cost the same argon2 work, so
    /// timing does not tell which names exist.
    pub async fn check_password(&self, name: &str, password: &str) -> Result<bool> {
        self.check_password_holding(name, password, ()).await
    }

    /// [`Store::check_password`], keeping `hold` (for example a semaphore permit that bounds
    /// concurrent hashing) until the argon2 work is over, even if the caller stops waiting.
    pub async fn check_password_holding<H: Send + 'static>(
        &self,
        name: &str,
        password: &str,
        hold: H,
    ) -> Result<bool> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        let known = stored.is_some();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _hold = hold;
            // Unknown names are checked against a hash of a random password, made once.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let phc = stored.unwrap_or_else(|| {
                DUMMY
                    .get_or_init(|| hash_password(&random_secret("")).unwrap_or_default())
                    .clone()
            });
            PasswordHash::new(&phc)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| StoreError::Password(e.to_string()))?;
        Ok(known && ok)
    }

    /// Opens a session for `user`, valid for `ttl`.
    pub async fn create_session(&self, user: &str, ttl: Duration) -> Result<NewSession> {
        let user_id = self.user_id(user).await?;
        let id = random_secret("");
        let csrf = random_secret("");
        let now = Utc::now();
        // Expired sessions go when new ones come.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(ms(now))
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash(&id))
        .bind(user_id)
        .bind(&csrf)
        .bind(ms(now))
        .bind(ms(now + ttl))
        .execute(self.pool())
        .await?;
        Ok(NewSession { id, csrf })
    }

    /// The live session whose cookie value is `id`.
    pub async fn session(&self, id: &str) -> Result<Option<SessionInfo>> {
        let row = sqlx::query(
            "SELECT u.name, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(hash(id))
        .bind(ms(Utc::now()))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionInfo {
                user: r.try_get("name")?,
                csrf: r.try_get("csrf")?,
                expires_at: from_ms(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    /// Changes password user `name`'s password, after checking `current` (argon2), and ends
    /// every other session of theirs (all but the one whose cookie value is `keep`).
    /// `Ok(false)`: `current` is wrong and nothing changed.
    pub async fn change_password(
        &self,
        name: &str,
        current: &str,
        new: &str,
        keep: Option<&str>,
    ) -> Result<bool> {
        let n = new.chars().count();
        if n < MIN_PASSWORD_CHARS {
            return Err(StoreError::Password(format!(
                "the new password has {n} characters; a password needs at least {MIN_PASSWORD_CHARS}"
            )));
        }
        if let Some(Some(provider)) = self.user_provider(name).await? {
            return Err(StoreError::Password(format!(
                "you sign in through {provider} and have no password here; change it there"
            )));
        }
        if !self.check_password(name, current).await? {
            return Ok(false);
        }
        let phc = {
            let new = new.to_owned();
            tokio::task::spawn_blocking(move || hash_password(&new))
                .await
                .map_err(|e| StoreError::Password(e.to_string()))??
        };
        let user_id = self.user_id(name).await?;
        let keep = keep.map(hash).unwrap_or_default();
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(phc)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// User `name`'s live sessions, newest first.
    pub async fn user_sessions(&self, name: &str) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(
            "SELECT s.id_hash, s.created_at, s.expires_at FROM sessions s
             JOIN users u ON u.id = s.user_id
             WHERE u.name = $1 AND s.expires_at > $2 ORDER BY s.created_at DESC",
        )
        .bind(name)
        .bind(ms(Utc::now()))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let h: String = r.try_get("id_hash")?;
                Ok(SessionRow {
                    handle: h.chars().take(HANDLE_LEN).collect(),
                    created_at: from_ms(r.try_get("created_at")?),
                    expires_at: from_ms(r.try_get("expires_at")?),
                })
            })
            .collect()
    }

    /// Ends user `name`'s session named `handle` ([`SessionRow::handle`]); `false` when they
    /// have none by that name.
    pub async fn end_user_session(&self, name: &str, handle: &str) -> Result<bool> {
        if handle.len() != HANDLE_LEN || !handle.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let done = sqlx::query(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)
             AND substr(id_hash, 1, CAST($2 AS INTEGER)) = $3",
        )
        .bind(name)
        .bind(HANDLE_LEN as i64)
        .bind(handle)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends the session whose cookie value is `id` (logout).
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash(id))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
