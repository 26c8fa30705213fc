//! What the CI cache's digest covers of a job's definition: the task (or pipeline task) as
//! written, without its `cache:`, with the cache's inputs, env and key. One function for the
//! server and for `baton run`, so a run on a laptop and on the server make the same digest.

use super::model::{CacheDef, PipelineTask, TaskDef};

impl TaskDef {
    /// The task's `cache:` and the definition its digest covers (JSON), with the task named
    /// `name`: its name within its repository (a repository's task is `REPO/TASK` on the
    /// server and `TASK` on a laptop: both pass `TASK`). `None`: no `cache:`.
    pub fn cache_definition(&self, name: &str) -> Option<(CacheDef, String)> {
        let mut t = self.clone();
        let c = t.cache.take()?;
        t.name = name.to_owned();
        let json = serde_json::to_string(&(t, &c.inputs, &c.env, &c.key)).ok()?;
        Some((*c, json))
    }
}

impl PipelineTask {
    /// As [`TaskDef::cache_definition`], for a pipeline's task (named within its pipeline).
    pub fn cache_definition(&self) -> Option<(CacheDef, String)> {
        let mut t = self.clone();
        let c = t.cache.take()?;
        let json = serde_json::to_string(&(t, &c.inputs, &c.env, &c.key)).ok()?;
        Some((*c, json))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_repo_sources;

    #[test]
    fn a_repository_task_has_one_cache_definition_wherever_it_is_loaded() {
        let yaml = "tasks:\n  t:\n    command: make\n    cache: {inputs: ['src/**'], key: v1}\n";
        let sources = [(std::path::PathBuf::from(".baton/ci.yml"), yaml.to_owned())];
        let laptop = load_repo_sources(&sources, &Default::default()).unwrap();
        let mut server = load_repo_sources(&sources, &Default::default()).unwrap();
        let on_server = server.tasks.get_mut("t").unwrap();
        on_server.name = "app/t".into();
        let (c, here) = laptop.tasks["t"].cache_definition("t").unwrap();
        let (_, there) = on_server.cache_definition("t").unwrap();
        assert_eq!(here, there);
        assert_eq!(c.key, "v1");
        assert!(!here.contains("app/t"));
    }
}
