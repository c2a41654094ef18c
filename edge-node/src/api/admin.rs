//! The operator's routes under `/admin` (admins only): the edge's status,
//! its cells and lease epoch, pages of recipients and providers (without
//! contact data: `GET /recipients/{id}` shows it, audited), the surplus and
//! the dead-letter queue it holds. `pahlawan status`, `recipients list`,
//! `cells list` and friends call these.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use sync_protocol::{ProviderId, RecipientId, SurplusStatus};

use super::auth::Caller;
use super::dto::{
    CellJson, CellsJson, PageQuery, ProviderJson, ProviderPageJson, RecipientJson,
    RecipientPageJson, StatusJson, StatusQuery, SurplusItemsJson, SurplusJson, rfc3339,
};
use super::dto::{DlqQuery, RecipientRequest, recipient_id};
use super::error::{ActionErrors, ApiError, AuthErrors, BodyErrors, ErrorBody};
use super::extract::{ApiJson, ApiQuery, IdPath, Traceparent};
use super::state::AppState;
use crate::commands::SurplusAction;
use sync_protocol::SurplusId;

/// Files deeper than this under the data directory are not counted.
const MAX_DATA_DIR_DEPTH: usize = 4;

/// The edge's health, version, uptime, sync and queues. Admins only.
#[utoipa::path(get, path = "/admin/status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = StatusJson), AuthErrors))]
pub async fn status(
    State(edge): State<AppState>,
    caller: Caller,
) -> Result<Json<StatusJson>, ApiError> {
    caller.require_admin()?;
    let committed = edge.committed_seq();
    let link = edge.link.borrow().clone();
    let backlog = committed.saturating_sub(link.acked_seq);
    let dir = edge.config.data_dir.clone();
    let data_dir_bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir, 0))
        .await
        .unwrap_or(0);
    let now = edge.now();
    let uptime_ms = now.unix_ms().saturating_sub(edge.started_at.unix_ms());
    Ok(Json(StatusJson {
        edge_id: edge.config.edge_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ready: edge.is_ready(),
        started_at: rfc3339(edge.started_at),
        uptime_seconds: u64::try_from(uptime_ms / 1_000).unwrap_or(0),
        committed_seq: committed,
        hub_enabled: link.enabled,
        hub_connected: link.connected,
        acked_seq: link.acked_seq,
        outbox_backlog: if link.enabled { backlog } else { 0 },
        replication_lag_seconds: if backlog == 0 { 0.0 } else { link.lag_seconds },
        last_sync_at: link.last_sync_at.map(rfc3339),
        lease_epoch: link.lease_epoch,
        live_surplus: edge.reads.live_count() as u64,
        dlq_size: edge.reads.count_status(SurplusStatus::DeadLettered) as u64,
        data_dir_bytes,
    }))
}

/// Bytes of the files under `dir` (symbolic links not followed; what
/// cannot be read counts as nothing).
fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            total += meta.len();
        } else if meta.is_dir() && depth < MAX_DATA_DIR_DEPTH {
            total += dir_bytes(&entry.path(), depth + 1);
        }
    }
    total
}

/// The cells this edge owns and the lease epoch the hub granted. Admins only.
#[utoipa::path(get, path = "/admin/cells", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = CellsJson), AuthErrors))]
pub async fn cells(
    State(edge): State<AppState>,
    caller: Caller,
) -> Result<Json<CellsJson>, ApiError> {
    caller.require_admin()?;
    let link = edge.link.borrow().clone();
    let owned = edge.writes.cells();
    Ok(Json(CellsJson {
        level: owned.level(),
        lease_epoch: link.lease_epoch,
        hub_connected: link.connected,
        cells: owned
            .iter()
            .map(|c| CellJson {
                token: crate::cells::token(c),
                lease: cell_lease(&link, c).into(),
            })
            .collect(),
    }))
}

/// One cell's lease as this edge knows it: `none` without a hub, `pending`
/// until the hub granted an epoch, `conflict` when the hub says another
/// edge holds it (our events there are fenced), else `held`.
fn cell_lease(link: &crate::ports::LinkStatus, cell: u64) -> &'static str {
    if !link.enabled {
        "none"
    } else if link.conflicts.contains(&cell) {
        "conflict"
    } else if link.lease_epoch == 0 {
        "pending"
    } else {
        "held"
    }
}

/// A page of this edge's own recipients in id order, without contact data.
/// Admins only.
#[utoipa::path(get, path = "/admin/recipients", tag = "admin", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = RecipientPageJson),
        (status = 422, description = "A query parameter breaks the schema", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn recipients(
    State(edge): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<RecipientPageJson>, ApiError> {
    caller.require_admin()?;
    let limit = q.limit()?;
    let after = q.after.map(RecipientId::from_uuid);
    let rows = edge.reads.recipients_page(after, limit).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|(r, _)| *r.id.as_uuid()))
        .flatten();
    Ok(Json(RecipientPageJson {
        items: rows
            .iter()
            .map(|(r, cell)| RecipientJson::new(r, *cell, None))
            .collect(),
        next,
    }))
}

/// A page of providers in id order, without contact data. Admins only.
#[utoipa::path(get, path = "/admin/providers", tag = "admin", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = ProviderPageJson),
        (status = 422, description = "A query parameter breaks the schema", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn providers(
    State(edge): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ProviderPageJson>, ApiError> {
    caller.require_admin()?;
    let limit = q.limit()?;
    let after = q.after.map(ProviderId::from_uuid);
    let rows = edge.reads.providers_page(after, limit).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|(p, _)| *p.id.as_uuid()))
        .flatten();
    Ok(Json(ProviderPageJson {
        items: rows
            .iter()
            .map(|(p, address)| ProviderJson::new(p, address.clone(), None))
            .collect(),
        next,
    }))
}

/// Every surplus the edge holds in memory (unfinished, and finished within
/// the recent window), oldest posted first. Admins only.
#[utoipa::path(get, path = "/admin/surplus", tag = "admin", security(("bearer" = [])),
    params(StatusQuery),
    responses(
        (status = 200, body = SurplusItemsJson),
        (status = 422, description = "A query parameter breaks the schema", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn surplus(
    State(edge): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<SurplusItemsJson>, ApiError> {
    caller.require_admin()?;
    let (status, limit) = (q.status()?, q.limit()?);
    Ok(Json(items(&edge, status, limit)))
}

fn items(edge: &AppState, status: Option<SurplusStatus>, limit: usize) -> SurplusItemsJson {
    SurplusItemsJson {
        items: edge
            .reads
            .surplus_all(status, limit)
            .iter()
            .map(SurplusJson::from)
            .collect(),
    }
}

/// The dead-letter queue: surplus nobody could be matched to, oldest posted
/// first. Admins only.
#[utoipa::path(get, path = "/admin/dlq", tag = "admin", security(("bearer" = [])),
    params(DlqQuery),
    responses(
        (status = 200, body = SurplusItemsJson),
        (status = 422, description = "A query parameter breaks the schema", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn dlq(
    State(edge): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DlqQuery>,
) -> Result<Json<SurplusItemsJson>, ApiError> {
    caller.require_admin()?;
    let limit = q.limit()?;
    Ok(Json(items(&edge, Some(SurplusStatus::DeadLettered), limit)))
}

/// Retry a dead-lettered surplus now: it is matched again (nobody offered
/// it before is offered it again), and goes back into the queue if nobody
/// fits. Admins only.
#[utoipa::path(post, path = "/admin/dlq/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id")),
    responses(
        (status = 200, description = "Matched again: offered, or back in the queue", body = SurplusJson),
        ActionErrors, AuthErrors,
    ))]
pub async fn dlq_retry(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    trace: Traceparent,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let _slot = edge.matching_slot().await?;
    super::surplus::act(&edge, &caller, id, SurplusAction::DlqRetry, None, trace).await
}

/// Resolve a dead-lettered surplus by hand: it is offered to the recipient
/// the operator names (radius, food type and capacity are the operator's
/// call), who accepts or declines it as any offer. Admins only.
#[utoipa::path(post, path = "/admin/dlq/{id}/resolve", tag = "admin", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id")),
    request_body = RecipientRequest,
    responses(
        (status = 200, description = "Offered to the recipient", body = SurplusJson),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn dlq_resolve(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    trace: Traceparent,
    ApiJson(req): ApiJson<RecipientRequest>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let action = SurplusAction::DlqResolve {
        recipient_id: recipient_id(req.recipient_id),
    };
    super::surplus::act(&edge, &caller, id, action, None, trace).await
}
