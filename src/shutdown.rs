//! Process signals: SIGINT/SIGTERM end the process gracefully, SIGHUP reloads the config.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::runtime::Runtime;

/// Cancels `cancel` on the first SIGINT or SIGTERM.
pub fn on_terminate(cancel: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received, shutting down"),
            _ = int.recv() => info!("SIGINT received, shutting down"),
            _ = cancel.cancelled() => return,
        }
        cancel.cancel();
    });
    Ok(())
}

/// Reloads the runtime's config on every SIGHUP until `cancel` fires.
pub fn reload_on_hup(runtime: Arc<Runtime>, cancel: CancellationToken) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => {
                    if r.is_none() {
                        return;
                    }
                    info!("SIGHUP received, reloading the config");
                    if let Err(e) = runtime.reload().await {
                        warn!(error = %e, "reload on SIGHUP failed; the running config is unchanged");
                    }
                }
            }
        }
    });
    Ok(())
}
