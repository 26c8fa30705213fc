//! Counts over the whole store, for the server's metrics: runs by status, webhook deliveries by
//! the HTTP status they were answered with.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Result, Store};

impl Store {
    /// How many runs the store holds in each status (statuses with none are absent).
    pub async fn runs_by_status(&self) -> Result<BTreeMap<String, i64>> {
        self.count_by("SELECT status AS k, COUNT(*) AS n FROM runs GROUP BY status")
            .await
    }

    /// How many webhook deliveries were answered with each HTTP status code.
    pub async fn deliveries_by_code(&self) -> Result<BTreeMap<String, i64>> {
        self.count_by(
            "SELECT CAST(status_code AS TEXT) AS k, COUNT(*) AS n FROM webhook_deliveries \
             GROUP BY status_code",
        )
        .await
    }

    async fn count_by(&self, sql: &'static str) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("n")?)))
            .collect()
    }
}
