//! The webhook deliveries page (`/deliveries`), for administrators: every delivery, newest first,
//! with its verdict and the runs it started — where one looks when "CI didn't run". Paged by
//! cursor (`?before=ID`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::Deserialize;

use super::format::when;
use super::page::{Nav, PageError, PageResult, render};
use super::request::page_user;
use crate::AppState;

const PAGE: u32 = 50;

#[derive(Deserialize)]
pub(super) struct DeliveriesQuery {
    before: Option<i64>,
}

struct DeliveryView {
    id: i64,
    time: String,
    forge: String,
    event: String,
    delivery: String,
    repo: String,
    git_ref: String,
    commit: String,
    commit_short: String,
    status_code: u16,
    verdict: String,
    processing: bool,
    runs: Vec<i64>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesTpl {
    nav: Nav,
    deliveries: Vec<DeliveryView>,
    next: String,
}

pub(super) async fn deliveries_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let (_, a, nav) = page_user(&s, &headers, &uri).await?;
    if !a.is_admin() {
        return Err(PageError::Page(
            StatusCode::FORBIDDEN,
            "Only administrators may see webhook deliveries.".into(),
        ));
    }
    let Query(q) = q.map_err(|e| PageError::Page(StatusCode::BAD_REQUEST, e.body_text()))?;
    let rows = s.store.deliveries_page(q.before, PAGE).await?;
    let next = match rows.last() {
        Some(last) if rows.len() == PAGE as usize => format!("/deliveries?before={}", last.id),
        _ => String::new(),
    };
    let deliveries = rows
        .into_iter()
        .map(|d| {
            let commit = d.commit.unwrap_or_default();
            DeliveryView {
                id: d.id,
                time: when(d.received_at),
                forge: d.forge,
                event: d.event,
                delivery: d.delivery.unwrap_or_default(),
                repo: d.repo.unwrap_or_default(),
                git_ref: d.git_ref.unwrap_or_default(),
                commit_short: commit.chars().take(10).collect(),
                commit,
                status_code: d.status_code,
                verdict: d.verdict,
                processing: d.processing,
                runs: d.run_ids,
            }
        })
        .collect();
    Ok(render(&DeliveriesTpl {
        nav,
        deliveries,
        next,
    }))
}
