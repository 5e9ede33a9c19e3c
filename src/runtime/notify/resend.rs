//! Alertmanager resends: Prometheus posts a firing alert again every evaluation, and
//! Alertmanager resolves an alert whose `endsAt` has passed; so every open incident whose
//! declaration reached an Alertmanager receiver is posted to it again every `resend`, all of
//! them in one request per receiver per round. Each receiver has its own task: a slow
//! Alertmanager delays only its own resends, never the planner or the outbox.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::notify::config::{AlertmanagerConfig, ReceiverKind};
use crate::notify::receivers::alertmanager::{alert_of, post_alerts, Alert};
use crate::notify::{Kind, Message, NotifyConfig};
use crate::store::{IncidentQuery, OutboxState, Store, StoreError};

use super::super::Runtime;

/// Alerts posted in one request at most (the oldest open incidents first).
const MAX_ALERTS: usize = 1000;

/// Starts one resend task per Alertmanager receiver of `cfg`, until `cancel`.
pub fn start(rt: Arc<Runtime>, cfg: &NotifyConfig, cancel: CancellationToken) {
    let receivers: Vec<(String, AlertmanagerConfig)> = cfg
        .receivers
        .iter()
        .filter_map(|r| match &r.kind {
            ReceiverKind::Alertmanager(c) => Some((r.name.clone(), c.clone())),
            _ => None,
        })
        .collect();
    if receivers.is_empty() {
        return;
    }
    let http = crate::notify::receivers::client(cfg.delivery.timeout);
    for (name, am) in receivers {
        let (store, http, cancel) = (rt.store().clone(), http.clone(), cancel.clone());
        tokio::spawn(async move { resend_loop(store, name, am, http, cancel).await });
    }
}

async fn resend_loop(
    store: Store,
    name: String,
    am: AlertmanagerConfig,
    http: reqwest::Client,
    cancel: CancellationToken,
) {
    let every = am.resend.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alerts = match firing(&store, &name, am.resend).await {
            Ok(a) => a,
            Err(e) => {
                warn!(receiver = %name, error = %e, "alerts not resent: the store failed");
                continue;
            }
        };
        if alerts.is_empty() {
            continue;
        }
        let post = post_alerts(&http, &am, &alerts);
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = post => r,
        };
        if let Err(e) = result {
            warn!(receiver = %name, alerts = alerts.len(), error = %e, "firing alerts not resent");
        }
    }
}

/// The alerts of the open incidents whose declaration was delivered to receiver `name`.
async fn firing(store: &Store, name: &str, resend: Duration) -> Result<Vec<Alert>, StoreError> {
    let open = store
        .incidents(&IncidentQuery {
            open_only: true,
            since: None,
            limit: 0,
            component: None,
        })
        .await?;
    let mut alerts = Vec::new();
    for inc in open.iter().rev() {
        if alerts.len() >= MAX_ALERTS {
            warn!(receiver = %name, open = open.len(), resent = MAX_ALERTS, "more open incidents than one resend carries");
            break;
        }
        let rows = store.outbox_rows(inc.id, 0).await?;
        let declared = rows.iter().find(|r| {
            r.receiver == name && r.kind == Kind::Declared.as_str() && r.state == OutboxState::Sent
        });
        let Some(row) = declared else { continue };
        match serde_json::from_str::<Message>(&row.message) {
            Ok(m) => alerts.push(alert_of(&m, resend)),
            Err(e) => {
                warn!(receiver = %name, incident = inc.id, error = %e, "a stored declaration does not parse; its alert is not resent")
            }
        }
    }
    Ok(alerts)
}
