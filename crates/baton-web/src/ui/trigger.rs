//! The trigger form (`/trigger/{kind}/{name}`): start a task or pipeline with arguments.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};

use baton_core::run::{TargetKind, TriggerKind};
use baton_sched::{SchedError, TriggerRequest};

use super::page::{Nav, PageError, PageResult, not_found, render};
use super::request::{Fields, field, form_user, page_user};
use crate::AppState;
use crate::auth::Access;

#[cfg(test)]
mod tests {
    #[test]
    fn a_pipelines_form_asks_for_the_arguments_its_scripts_use() {
        let scripts = [
            baton_core::config::rewrite_templates("echo {{ .version }} '{{ .target }}'"),
            baton_core::config::rewrite_templates("echo \"v={{ .version }}\" ${HOME} ${x?other}"),
        ];
        assert_eq!(
            super::referenced_args(scripts.iter().map(String::as_str)),
            vec!["version", "target"]
        );
    }
}

#[derive(Template)]
#[template(path = "trigger.html")]
struct TriggerTpl {
    nav: Nav,
    kind: &'static str,
    name: String,
    description: String,
    known_args: Vec<String>,
    /// A repository's task (`REPO/TASK`): the form asks for a ref, not arguments.
    repo_task: bool,
    error: String,
}

fn target_kind(kind: &str) -> Result<TargetKind, PageError> {
    match kind {
        "task" => Ok(TargetKind::Task),
        "pipeline" => Ok(TargetKind::Pipeline),
        _ => Err(not_found()),
    }
}

async fn trigger_form(
    a: &Access,
    nav: Nav,
    kind: TargetKind,
    name: &str,
    error: &str,
) -> Result<TriggerTpl, PageError> {
    if !a.can_see(kind, name) {
        return Err(not_found());
    }
    if kind == TargetKind::Task
        && let Some(repo) = crate::repos::manual::repo_of(&a.config, name)
    {
        return Ok(TriggerTpl {
            nav,
            kind: kind.as_str(),
            name: name.to_owned(),
            description: format!("A task of repository {} (from its .baton/).", repo.name),
            known_args: Vec::new(),
            repo_task: true,
            error: error.to_owned(),
        });
    }
    let (description, known_args) = match kind {
        TargetKind::Task => a
            .config
            .tasks
            .get(name)
            .map(|t| (t.description.clone(), Vec::new())),
        TargetKind::Pipeline => a.config.pipelines.get(name).map(|p| {
            let scripts = p.tasks.values().map(|t| t.script.as_str());
            (p.description.clone(), referenced_args(scripts))
        }),
    }
    .ok_or_else(not_found)?;
    Ok(TriggerTpl {
        nav,
        kind: kind.as_str(),
        name: name.to_owned(),
        description,
        known_args,
        repo_task: false,
        error: error.to_owned(),
    })
}

/// The arguments a pipeline's scripts use (`{{ .name }}`, rewritten at load time to
/// `${name?…}`), each once, in order of first use: the form asks for each.
fn referenced_args<'a>(scripts: impl Iterator<Item = &'a str>) -> Vec<String> {
    let tail = format!("?{}}}", baton_core::config::UNSET_MESSAGE);
    let mut names: Vec<String> = Vec::new();
    for script in scripts {
        for (i, _) in script.match_indices("${") {
            let rest = &script[i + 2..];
            let Some(end) = rest.find(&tail) else {
                continue;
            };
            let name = &rest[..end];
            let plain =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if plain && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

pub(super) async fn trigger_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let kind = target_kind(&kind)?;
    Ok(render(&trigger_form(&a, nav, kind, &name, "").await?))
}

pub(super) async fn trigger(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> PageResult {
    let (_, a, nav) = form_user(&s, &headers, &uri, &f).await?;
    let kind = target_kind(&kind)?;
    if !a.can_see(kind, &name) {
        return Err(not_found());
    }
    if kind == TargetKind::Task
        && let Some(repo) = crate::repos::manual::repo_of(&a.config, &name)
    {
        let git_ref = field(&f, "ref").trim().to_owned();
        let git_ref = (!git_ref.is_empty()).then_some(git_ref.as_str());
        let config = a.config.clone();
        return match crate::repos::manual::trigger(
            &s,
            &config,
            repo,
            &name,
            git_ref,
            (TriggerKind::Api, false),
        )
        .await
        {
            Ok(id) => Ok(Redirect::to(&format!("/runs/{id}")).into_response()),
            Err(e) => {
                let t = trigger_form(&a, nav, kind, &name, &e.message).await?;
                Ok((e.status, render(&t)).into_response())
            }
        };
    }
    let mut args = BTreeMap::new();
    for (k, v) in &f {
        if let Some(arg) = k.strip_prefix("arg.")
            && !v.is_empty()
        {
            args.insert(arg.to_owned(), v.clone());
        }
    }
    for line in field(&f, "extra").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                args.insert(k.trim().to_owned(), v.to_owned());
            }
            None => {
                let msg = format!("{line:?} is not name=value");
                let t = trigger_form(&a, nav, kind, &name, &msg).await?;
                return Ok((StatusCode::BAD_REQUEST, render(&t)).into_response());
            }
        }
    }
    let req = TriggerRequest {
        target: name.clone(),
        kind: Some(kind),
        args,
        trigger: TriggerKind::Api,
        ancestors: vec![],
        no_cache: false,
    };
    match s.sched.trigger(req).await {
        Ok(run) => Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(e @ (SchedError::BadArgument { .. } | SchedError::Disabled(_))) => {
            let t = trigger_form(&a, nav, kind, &name, &e.to_string()).await?;
            Ok((StatusCode::BAD_REQUEST, render(&t)).into_response())
        }
        Err(e @ SchedError::WaitListFull { .. }) => {
            let t = trigger_form(&a, nav, kind, &name, &e.to_string()).await?;
            Ok((StatusCode::CONFLICT, render(&t)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
