//! The trigger form (`/trigger/{kind}/{name}`): start a task or pipeline with arguments.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
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

/// One argument's form field.
struct ArgField {
    name: String,
    /// Help text: the declaration's description (or where the name comes from).
    help: String,
    /// A select of these when not empty.
    choices: Vec<String>,
    /// The value filled in: the rerun run's, else the default.
    value: String,
    required: bool,
}

#[derive(Template)]
#[template(path = "trigger.html")]
struct TriggerTpl {
    nav: Nav,
    kind: &'static str,
    name: String,
    description: String,
    fields: Vec<ArgField>,
    /// The target declares its arguments: no others are taken (no free-form box).
    declared: bool,
    /// Free-form `name=value` lines filled in (a rerun's arguments beyond the fields).
    extra: String,
    /// The run this form reruns with other arguments (0: a new trigger).
    from: i64,
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

/// What the form is filled with: the arguments given (a rerun's, or a refused post's) and the
/// run it reruns (0: none).
#[derive(Default)]
struct Filled {
    args: BTreeMap<String, String>,
    from: i64,
}

async fn trigger_form(
    a: &Access,
    nav: Nav,
    (kind, name): (TargetKind, &str),
    filled: Filled,
    error: &str,
) -> Result<TriggerTpl, PageError> {
    if !a.can_see(kind, name) {
        return Err(not_found());
    }
    let mut tpl = TriggerTpl {
        nav,
        kind: kind.as_str(),
        name: name.to_owned(),
        description: String::new(),
        fields: Vec::new(),
        declared: false,
        extra: String::new(),
        from: filled.from,
        repo_task: false,
        error: error.to_owned(),
    };
    if kind == TargetKind::Task
        && let Some(repo) = crate::repos::manual::repo_of(&a.config, name)
    {
        tpl.description = format!("A task of repository {} (from its .baton/).", repo.name);
        tpl.repo_task = true;
        return Ok(tpl);
    }
    let (description, declared, used) = match kind {
        TargetKind::Task => a
            .config
            .tasks
            .get(name)
            .map(|t| (t.description.clone(), t.args.clone(), Vec::new())),
        TargetKind::Pipeline => a.config.pipelines.get(name).map(|p| {
            let scripts = p.tasks.values().map(|t| t.script.as_str());
            (
                p.description.clone(),
                p.args.clone(),
                referenced_args(scripts),
            )
        }),
    }
    .ok_or_else(not_found)?;
    tpl.description = description;
    tpl.declared = !declared.is_empty();
    let mut given = filled.args;
    tpl.fields = if tpl.declared {
        declared
            .into_iter()
            .map(|d| ArgField {
                value: given
                    .remove(&d.name)
                    .or(d.default.clone())
                    .unwrap_or_default(),
                help: d.description,
                choices: d.choices,
                required: d.required,
                name: d.name,
            })
            .collect()
    } else {
        used.into_iter()
            .map(|n| ArgField {
                value: given.remove(&n).unwrap_or_default(),
                help: "used by the pipeline's scripts".into(),
                choices: Vec::new(),
                required: true,
                name: n,
            })
            .collect()
    };
    tpl.extra = given.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Ok(tpl)
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

#[derive(serde::Deserialize)]
pub(super) struct FormQuery {
    /// Fill the form with this run's arguments and rerun it with the ones posted.
    from: Option<i64>,
}

pub(super) async fn trigger_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((kind, name)): Path<(String, String)>,
    q: Result<Query<FormQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    let kind = target_kind(&kind)?;
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut filled = Filled::default();
    if let Some(id) = q.from {
        let run = s.store.get_run(id).await?.ok_or_else(not_found)?;
        if run.kind != kind || run.target != name || !a.can_see(run.kind, &run.target) {
            return Err(not_found());
        }
        filled = Filled {
            args: run.args,
            from: id,
        };
    }
    Ok(render(
        &trigger_form(&a, nav, (kind, &name), filled, "").await?,
    ))
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
                let t = trigger_form(&a, nav, (kind, &name), Filled::default(), &e.message).await?;
                Ok((e.status, render(&t)).into_response())
            }
        };
    }
    let args = match posted_args(&f) {
        Ok(args) => args,
        Err(msg) => {
            let t = trigger_form(&a, nav, (kind, &name), Filled::default(), &msg).await?;
            return Ok((StatusCode::BAD_REQUEST, render(&t)).into_response());
        }
    };
    let from: i64 = field(&f, "from").parse().unwrap_or(0);
    let started = if from > 0 {
        let old = s.store.get_run(from).await?.ok_or_else(not_found)?;
        if old.kind != kind || old.target != name {
            return Err(not_found());
        }
        let opts = baton_sched::RerunOptions {
            args: Some(args.clone()),
            ..Default::default()
        };
        s.sched.rerun_opts(from, TriggerKind::Rerun, opts).await
    } else {
        let req = TriggerRequest {
            target: name.clone(),
            kind: Some(kind),
            args: args.clone(),
            trigger: TriggerKind::Api,
            ancestors: vec![],
            no_cache: false,
        };
        s.sched.trigger(req).await
    };
    let (status, msg) = match started {
        Ok(run) => return Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(
            e
            @ (SchedError::BadArgument { .. } | SchedError::Disabled(_) | SchedError::BadRerun(_)),
        ) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ SchedError::WaitListFull { .. }) => (StatusCode::CONFLICT, e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let t = trigger_form(&a, nav, (kind, &name), Filled { args, from }, &msg).await?;
    Ok((status, render(&t)).into_response())
}

/// The arguments a form posts: its `arg.NAME` fields (empty ones left out: a declared
/// argument then gets its default) and its `name=value` lines.
fn posted_args(f: &Fields) -> Result<BTreeMap<String, String>, String> {
    let mut args = BTreeMap::new();
    for (k, v) in f {
        if let Some(arg) = k.strip_prefix("arg.")
            && !v.is_empty()
        {
            args.insert(arg.to_owned(), v.clone());
        }
    }
    for line in field(f, "extra").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                args.insert(k.trim().to_owned(), v.to_owned());
            }
            None => return Err(format!("{line:?} is not name=value")),
        }
    }
    Ok(args)
}
