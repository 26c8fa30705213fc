//! Image questions: the CI cache counts a container job's image by the id the engine that runs
//! it gives (`NAME@sha256:…`). For a job on an agent that engine is the agent's own, so the
//! server asks the agent: the question goes out in the answer to a poll, the agent asks its
//! engine (pulling the image when it lacks it, as it would to run the job) and posts the id
//! back, and the job's launch task, which waits for it, makes the digest with it.

use super::*;

/// How long the server waits for an agent's answer (a pull of a big image takes a while).
const ANSWER_LIMIT: Duration = Duration::from_secs(600);

/// A question to an agent: the engine's id of `image`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageQuery {
    pub id: u64,
    pub image: String,
}

/// An agent's answer to an [`ImageQuery`]: the engine's id (`sha256:…`), or why it has none.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageAnswer {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// An image question in flight: the agent asked, and its answer once it came.
pub(super) struct Question {
    agent: String,
    answer: Option<ImageAnswer>,
}

impl AgentHub {
    /// Asks agent `agent` for its engine's id of `image` and waits for the answer. `Ok(None)`
    /// when the agent does not answer image questions (an older agent); an error when it is
    /// not connected, is lost meanwhile, says its engine cannot give the id, or does not
    /// answer within ten minutes.
    pub(super) async fn ask_image(
        &self,
        agent: &str,
        image: &str,
    ) -> Result<Option<String>, ExecError> {
        let failed = |detail: String| ExecError::Agent {
            agent: agent.to_string(),
            action: "get the id of an image from its engine",
            detail,
        };
        let id = {
            let mut st = self.lock();
            let id = st.next_question;
            let Some(a) = st.agents.get_mut(agent) else {
                return Err(failed("the agent is not connected".into()));
            };
            if !a.image_ids {
                return Ok(None);
            }
            a.images.push_back(ImageQuery {
                id,
                image: image.to_string(),
            });
            a.wake.notify_one();
            st.next_question += 1;
            st.questions.insert(
                id,
                Question {
                    agent: agent.to_string(),
                    answer: None,
                },
            );
            id
        };
        // The question goes however this ends (answered, lost, or the launch dropped).
        struct Asked<'a>(&'a AgentHub, u64);
        impl Drop for Asked<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                st.questions.remove(&self.1);
                for a in st.agents.values_mut() {
                    a.images.retain(|q| q.id != self.1);
                }
            }
        }
        let _asked = Asked(self, id);
        let deadline = Instant::now() + ANSWER_LIMIT;
        loop {
            let notified = self.answers.notified();
            let answer = self
                .lock()
                .questions
                .get_mut(&id)
                .and_then(|q| q.answer.take());
            if let Some(a) = answer {
                return match (a.id, a.error) {
                    (Some(id), _) => Ok(Some(id)),
                    (None, Some(e)) => Err(failed(e)),
                    (None, None) => Err(failed(
                        "the agent answered neither an id nor an error".into(),
                    )),
                };
            }
            if let Some(why) = self.lost(agent) {
                return Err(failed(why));
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "no answer within {} s (hint: is the image very large, or the agent's engine stuck?)",
                    ANSWER_LIMIT.as_secs()
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    /// Agent `agent` answers image question `id`. False when there is no such question of
    /// that agent (answered already, or its asker gave up).
    pub fn answer_image(&self, agent: &str, id: u64, answer: ImageAnswer) -> bool {
        let mut st = self.lock();
        let Some(q) = st.questions.get_mut(&id).filter(|q| q.agent == agent) else {
            return false;
        };
        q.answer = Some(answer);
        drop(st);
        self.answers.notify_waiters();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> AgentInfo {
        AgentInfo {
            queues: vec!["arm".into()],
            slots: 1,
        }
    }

    fn body(image_ids: bool) -> PollBody {
        PollBody {
            info: info(),
            holds: None,
            image_ids,
        }
    }

    #[tokio::test]
    async fn an_image_question_goes_out_in_a_poll_and_its_answer_comes_back() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let quick = Duration::from_millis(10);
        hub.poll("a1", body(true), quick).await;
        let asker = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.ask_image("a1", "busybox:1").await })
        };
        let got = hub.poll("a1", body(true), Duration::from_secs(10)).await;
        assert_eq!(got.images.len(), 1, "{got:?}");
        assert_eq!(got.images[0].image, "busybox:1");
        let q = got.images[0].id;
        // Another agent cannot answer it; a question nobody asked has no answer to take.
        assert!(!hub.answer_image("a2", q, ImageAnswer::default()));
        assert!(!hub.answer_image("a1", q + 1, ImageAnswer::default()));
        let answer = ImageAnswer {
            id: Some("sha256:abc".into()),
            error: None,
        };
        assert!(hub.answer_image("a1", q, answer));
        let id = asker.await.unwrap().unwrap();
        assert_eq!(id.as_deref(), Some("sha256:abc"));
        // Taken back: a late second answer finds no question.
        assert!(!hub.answer_image("a1", q, ImageAnswer::default()));

        // The engine's error comes back as the error.
        let asker = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.ask_image("a1", "nope:1").await })
        };
        let got = hub.poll("a1", body(true), Duration::from_secs(10)).await;
        let answer = ImageAnswer {
            id: None,
            error: Some("no such image".into()),
        };
        assert!(hub.answer_image("a1", got.images[0].id, answer));
        let err = asker.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("no such image") && err.contains("a1"), "{err}");
    }

    #[tokio::test]
    async fn an_agent_that_does_not_answer_image_questions_is_not_asked() {
        let hub = AgentHub::new(Duration::from_secs(30));
        hub.poll("old", body(false), Duration::from_millis(10))
            .await;
        assert_eq!(hub.ask_image("old", "busybox:1").await.unwrap(), None);
        let got = hub
            .poll("old", body(false), Duration::from_millis(10))
            .await;
        assert!(got.images.is_empty(), "{got:?}");
        let err = hub.ask_image("never-seen", "busybox:1").await.unwrap_err();
        assert!(err.to_string().contains("not connected"), "{err}");
    }

    #[tokio::test]
    async fn a_lost_agent_fails_the_question() {
        let hub = AgentHub::new(Duration::from_millis(300));
        hub.poll("a1", body(true), Duration::from_millis(10)).await;
        // It never polls again: after the heartbeat timeout the question fails.
        let err = hub.ask_image("a1", "busybox:1").await.unwrap_err();
        assert!(err.to_string().contains("lost"), "{err}");
        assert!(hub.lock().questions.is_empty());
        assert!(hub.lock().agents["a1"].images.is_empty());
    }
}
