//! The server's one HTTP client for its own outgoing calls (forge APIs, commit statuses,
//! notification hooks), made on first use: building a client loads and parses the system's
//! certificate store, which cost every server start several milliseconds and megabytes per
//! client when each part built its own at start, and most servers never call out at all.

use std::ops::Deref;
use std::sync::OnceLock;
use std::time::Duration;

/// How long one outgoing request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

/// A handle on the shared client: the client is built the first time it is used.
#[derive(Clone, Copy, Default)]
pub(crate) struct SharedClient;

impl Deref for SharedClient {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        CLIENT.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(
                        "cannot build the HTTP client with its settings ({e}); using the defaults"
                    );
                    reqwest::Client::new()
                })
        })
    }
}
