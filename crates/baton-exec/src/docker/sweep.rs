//! Removing Baton's containers whose job is over (left by a server that stopped between a job's
//! exit record and the container's removal).

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::{DockerExecutor, LABEL_BATON, LABEL_DIR, remove};
use crate::error::ExecError;
use crate::layout::EXIT_FILE;

impl DockerExecutor {
    /// Removes Baton's containers (label `org.baton=1`) whose job is over (`exit.json` in the
    /// folder their `baton.dir` label names). Returns how many it removed.
    pub async fn sweep(&self) -> Result<usize, ExecError> {
        let docker = self.client().await?;
        let filters = HashMap::from([("label", vec![format!("{LABEL_BATON}=1")])]);
        let list = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| self.err("list Baton's containers", e))?;
        let mut removed = 0;
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(dir) = labels.get(LABEL_DIR) else {
                continue;
            };
            let exit = Path::new(dir).join(EXIT_FILE);
            if tokio::fs::try_exists(&exit).await.unwrap_or(false) {
                remove(&docker, &id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
