//! The incidents and maintenance API:
//!
//! - `GET /api/v1/incidents` (`?open=true`, `?limit=N`, default 50): incidents, newest first,
//!   each with its timeline;
//! - `GET /api/v1/incidents/ID`: one incident with its timeline;
//! - `POST /api/v1/incidents`: declare one (`{component, title, message, impact?, status?}`);
//! - `POST /api/v1/incidents/ID/updates`: post an update (`{message, status?, impact?,
//!   root_cause?, resolution?}`);
//! - `POST /api/v1/incidents/ID/ack`: acknowledge it (`{by?, message?}`; an empty body is
//!   `{}`): escalation stops; a second acknowledgement answers the incident unchanged, a
//!   resolved incident is `400`;
//! - `GET /api/v1/maintenance`: the windows in force (config and API), each with its next
//!   occurrence;
//! - `POST /api/v1/maintenance`: add one (`{name, components?, start, end | duration, every?,
//!   tz?}`);
//! - `DELETE /api/v1/maintenance/ID`.
//!
//! POST and DELETE pass the same authorisation and intent checks as the failover switch
//! ([`super::intent`]). Bodies are JSON of at most [`MAX_BODY`] bytes. A bad body or parameter
//! is `400` with `{"error": ..., "field": ...}`; an unknown id `404` with `{"error": ...}`.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{json, AppState, Body};
use crate::incident::manual::{
    self, AckInput, DeclareInput, MaintenanceInput, Resolution, UpdateInput,
};
use crate::incident::view::{self, IncidentView, MaintenanceView};
use crate::incident::IncidentError;
use crate::store::{now_millis, IncidentQuery, StoreError};

/// The largest request body accepted, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Incidents listed when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The most incidents one list answers.
pub const MAX_LIMIT: usize = 1000;

const INCIDENTS: &str = "/api/v1/incidents";
const MAINTENANCE: &str = "/api/v1/maintenance";

/// Whether `path` is one of this module's.
pub fn owns(path: &str) -> bool {
    [INCIDENTS, MAINTENANCE]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

fn error(status: StatusCode, msg: impl Into<String>, field: Option<&str>) -> Response<Body> {
    json(
        status,
        &ErrorJson {
            error: msg.into(),
            field,
        },
    )
}

fn store_error(e: StoreError) -> Response<Body> {
    match e {
        StoreError::NotFound { .. } => error(StatusCode::NOT_FOUND, e.to_string(), None),
        #[allow(unreachable_patterns)]
        _ => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

fn incident_error(e: IncidentError) -> Response<Body> {
    match e {
        IncidentError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string(), None),
        IncidentError::Invalid { field, message } => {
            error(StatusCode::BAD_REQUEST, message, Some(field))
        }
        IncidentError::Store(e) => store_error(e),
    }
}

/// The request's bytes, or the `413` to answer.
async fn read(req: Request<Incoming>) -> Result<bytes::Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => {
            let msg = format!("the body is larger than {MAX_BODY} bytes or was cut short");
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, msg, None))
        }
    }
}

/// The JSON body, or the `400` (`413` when too large) to answer.
async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    decode(req, false).await
}

/// The JSON body, where an empty body reads as `{}` (for requests whose fields are all
/// optional).
async fn body_or_empty<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    decode(req, true).await
}

async fn decode<T: DeserializeOwned>(
    req: Request<Incoming>,
    empty_is_object: bool,
) -> Result<T, Response<Body>> {
    let bytes = read(req).await?;
    let bytes: &[u8] = if empty_is_object && bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        // serde names the field in its message (`missing field `message``, `unknown field`).
        error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}"), None)
    })
}

fn query<'a>(q: Option<&'a str>, key: &str) -> Option<&'a str> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// `text` as an id, or the `400` naming it.
fn id_of(text: &str) -> Result<i64, Box<Response<Body>>> {
    text.parse().map_err(|_| {
        let msg = format!("`{text}` is not an id (a whole number)");
        Box::new(error(StatusCode::BAD_REQUEST, msg, Some("id")))
    })
}

/// Answers a request for one of this module's paths ([`owns`]).
pub async fn route(state: &Arc<AppState>, path: &str, req: Request<Incoming>) -> Response<Body> {
    let m = req.method().clone();
    let get = m == Method::GET || m == Method::HEAD;
    let rest = |p: &str| path.strip_prefix(p).and_then(|r| r.strip_prefix('/'));
    if path == INCIDENTS {
        return match m {
            _ if get => list(state, req.uri().query()).await,
            Method::POST => declare(state, req).await,
            _ => super::method_not_allowed("GET, POST"),
        };
    }
    if path == MAINTENANCE {
        return match m {
            _ if get => maintenance_list(state).await,
            Method::POST => maintenance_add(state, req).await,
            _ => super::method_not_allowed("GET, POST"),
        };
    }
    if let Some(r) = rest(MAINTENANCE) {
        return match m {
            Method::DELETE => match id_of(r) {
                Ok(id) => maintenance_delete(state, id).await,
                Err(resp) => *resp,
            },
            _ => super::method_not_allowed("DELETE"),
        };
    }
    let r = rest(INCIDENTS).unwrap_or("");
    let (id, tail) = r.split_once('/').unwrap_or((r, ""));
    let id = match id_of(id) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    match (tail, m) {
        ("", m) if m == Method::GET || m == Method::HEAD => show(state, id).await,
        ("", _) => super::method_not_allowed("GET"),
        ("updates", Method::POST) => post_update(state, id, req).await,
        ("updates", _) => super::method_not_allowed("POST"),
        ("ack", Method::POST) => post_ack(state, id, req).await,
        ("ack", _) => super::method_not_allowed("POST"),
        (other, _) => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {INCIDENTS}/{id}/{other}"),
            None,
        ),
    }
}

async fn views(
    state: &AppState,
    incidents: Vec<crate::store::Incident>,
) -> Result<Vec<IncidentView>, StoreError> {
    let ids: Vec<i64> = incidents.iter().map(|i| i.id).collect();
    let updates = state.runtime.store().updates(&ids).await?;
    Ok(incidents
        .iter()
        .map(|i| IncidentView::new(i, &updates))
        .collect())
}

async fn list(state: &AppState, q: Option<&str>) -> Response<Body> {
    let open_only = match query(q, "open") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(v) => {
            let msg = format!("`open` must be true or false, not `{v}`");
            return error(StatusCode::BAD_REQUEST, msg, Some("open"));
        }
    };
    let limit = match query(q, "limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            let msg = format!("`limit` must be a number from 1 to {MAX_LIMIT}");
            return error(StatusCode::BAD_REQUEST, msg, Some("limit"));
        }
    };
    let iq = IncidentQuery {
        open_only,
        since: None,
        limit,
        component: None,
    };
    let found = match state.runtime.store().incidents(&iq).await {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    match views(state, found).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => store_error(e),
    }
}

async fn one(state: &AppState, id: i64) -> Result<IncidentView, Response<Body>> {
    let inc = match state.runtime.store().incident(id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(incident_error(IncidentError::NotFound(id))),
        Err(e) => return Err(store_error(e)),
    };
    views(state, vec![inc])
        .await
        .map_err(store_error)
        .map(|mut v| v.remove(0))
}

async fn show(state: &AppState, id: i64) -> Response<Body> {
    match one(state, id).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(resp) => resp,
    }
}

async fn declare(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let input: DeclareInput = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match manual::declare(state.runtime.store(), &input, now_millis()).await {
        Ok(inc) => {
            wake_notifier(state);
            match one(state, inc.id).await {
                Ok(v) => json(StatusCode::CREATED, &v),
                Err(resp) => resp,
            }
        }
        Err(e) => incident_error(e),
    }
}

async fn post_update(state: &AppState, id: i64, req: Request<Incoming>) -> Response<Body> {
    let input: UpdateInput = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let config = state.runtime.config();
    let calendar = state.runtime.calendar();
    let counters = crate::runtime::counters::RuntimeCounters(state.runtime.clone());
    let how = Resolution {
        config: &config.incidents,
        calendar: &*calendar,
        counters: &counters,
    };
    let store = state.runtime.store();
    match manual::update(store, id, &input, now_millis(), &how).await {
        Ok(_) => {
            wake_notifier(state);
            show(state, id).await
        }
        Err(e) => incident_error(e),
    }
}

async fn post_ack(state: &AppState, id: i64, req: Request<Incoming>) -> Response<Body> {
    let input: AckInput = match body_or_empty(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let store = state.runtime.store();
    let (by, message) = (input.by.as_deref(), input.message.as_deref());
    match manual::ack(store, id, now_millis(), by, message).await {
        Ok(_) => {
            wake_notifier(state);
            show(state, id).await
        }
        Err(e) => incident_error(e),
    }
}

/// Tells the notifier that an incident changed, so its messages (a note, the acknowledgement,
/// RESOLVED) are planned now rather than at its next tick. Nothing to do until the notifier
/// offers a wake-up; its tick finds the change anyway.
/// A person's change is planned (and sent) at once, not at the notifier's next tick.
fn wake_notifier(state: &AppState) {
    state.runtime.wake_notifier();
}

async fn maintenance_list(state: &AppState) -> Response<Body> {
    let now = now_millis();
    let mut out: Vec<MaintenanceView> = state
        .runtime
        .config()
        .maintenance
        .iter()
        .map(|w| MaintenanceView::config(w, now))
        .collect();
    let stored = match state.runtime.store().maintenances().await {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    for m in &stored {
        let next = crate::incident::maintenance::WindowSpec::from_stored(m)
            .ok()
            .and_then(|w| view::next(&w, now));
        out.push(MaintenanceView::stored(m, next));
    }
    json(StatusCode::OK, &out)
}

async fn maintenance_add(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let input: MaintenanceInput = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let known = state.runtime.config().components();
    let m = match manual::check_maintenance(&input, Some(&known)) {
        Ok(m) => m,
        Err(problems) => {
            let (field, _) = problems[0];
            let msg = problems
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; ");
            return error(StatusCode::BAD_REQUEST, msg, Some(field));
        }
    };
    let store = state.runtime.store();
    let id = match store.add_maintenance(&m).await {
        Ok(id) => id,
        Err(e) => return store_error(e),
    };
    if let Err(e) = crate::runtime::incidents::refresh_calendar(&state.runtime).await {
        return store_error(e);
    }
    let m = crate::store::Maintenance { id, ..m };
    let next = crate::incident::maintenance::WindowSpec::from_stored(&m)
        .ok()
        .and_then(|w| view::next(&w, now_millis()));
    json(StatusCode::CREATED, &MaintenanceView::stored(&m, next))
}

async fn maintenance_delete(state: &AppState, id: i64) -> Response<Body> {
    if let Err(e) = state.runtime.store().delete_maintenance(id).await {
        return store_error(e);
    }
    if let Err(e) = crate::runtime::incidents::refresh_calendar(&state.runtime).await {
        return store_error(e);
    }
    #[derive(Serialize)]
    struct Deleted {
        deleted: i64,
    }
    json(StatusCode::OK, &Deleted { deleted: id })
}
