//! [`CallbackHub`]: where job-end callbacks from remote workers land.
//!
//! An executor that starts a job elsewhere (an SSH worker) gives the job a fresh random token,
//! registers the token's SHA-256 with the hub and waits on the returned [`Notify`]. The web
//! layer hands every `POST /api/v1/callbacks/jobs/{id}` to [`CallbackHub::deliver`], which
//! checks the token in constant time and wakes the waiter. The token dies with the job
//! ([`CallbackHub::unregister`]); only its hash is kept, in memory and in the job folder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

/// Shared by the executors (which register jobs) and the web layer (which delivers).
#[derive(Clone, Default)]
pub struct CallbackHub {
    jobs: Arc<Mutex<HashMap<i64, Registered>>>,
}

struct Registered {
    hash: [u8; 32],
    notify: Arc<Notify>,
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    /// No job with this id waits for a callback (it ended, or never ran remotely).
    #[error("no running remote job {0} expects a callback")]
    UnknownJob(i64),
    /// The token does not match the job's.
    #[error("wrong callback token for job {0}")]
    BadToken(i64),
}

/// A fresh random job token (64 hex digits).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl CallbackHub {
    /// Expects callbacks for `job_id` with the token whose hash is `hash`; returns what
    /// [`deliver`](Self::deliver) notifies. Registering again replaces the token.
    pub fn register(&self, job_id: i64, hash: [u8; 32]) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.jobs.lock().expect("callback hub poisoned").insert(
            job_id,
            Registered {
                hash,
                notify: notify.clone(),
            },
        );
        notify
    }

    /// The job ended: its token is no longer accepted.
    pub fn unregister(&self, job_id: i64) {
        self.jobs
            .lock()
            .expect("callback hub poisoned")
            .remove(&job_id);
    }

    /// A callback for `job_id` carrying `token`: wakes the job's waiter if the token is right.
    pub fn deliver(&self, job_id: i64, token: &str) -> Result<(), CallbackError> {
        self.with_job(job_id, token, |reg| reg.notify.notify_one())
    }

    /// Whether `token` is the running job `job_id`'s (for what else a job may ask of the
    /// server with it, such as fetching its repository), without waking its waiter.
    pub fn check(&self, job_id: i64, token: &str) -> Result<(), CallbackError> {
        self.with_job(job_id, token, |_| ())
    }

    fn with_job(
        &self,
        job_id: i64,
        token: &str,
        then: impl FnOnce(&Registered),
    ) -> Result<(), CallbackError> {
        let given = token_hash(token);
        let jobs = self.jobs.lock().expect("callback hub poisoned");
        let reg = jobs.get(&job_id).ok_or(CallbackError::UnknownJob(job_id))?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&reg.hash[..], &given[..])) {
            return Err(CallbackError::BadToken(job_id));
        }
        then(reg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_of_a_live_job_is_accepted() {
        let hub = CallbackHub::default();
        let token = new_token();
        let _n = hub.register(7, token_hash(&token));
        assert_eq!(hub.deliver(7, "nope"), Err(CallbackError::BadToken(7)));
        assert_eq!(hub.check(7, "nope"), Err(CallbackError::BadToken(7)));
        assert_eq!(hub.check(7, &token), Ok(()));
        assert_eq!(hub.deliver(8, &token), Err(CallbackError::UnknownJob(8)));
        assert_eq!(hub.deliver(7, &token), Ok(()));
        hub.unregister(7);
        assert_eq!(hub.deliver(7, &token), Err(CallbackError::UnknownJob(7)));
    }
}
