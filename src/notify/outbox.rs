//! Delivery workers over the store's outbox: one per receiver, so a slow or dead receiver
//! delays only itself.
//!
//! The signatures below are the ones the runtime's glue starts, reconfigures and renders; the
//! workers themselves are written in their own part.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::{NotifyConfig, Receiver};
use super::receivers::SendError;
use super::Message;
use crate::store::Store;

/// A delivery in progress.
pub type Delivering<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Delivers one message to one receiver (HTTP in production, a fake in tests).
pub trait Deliver: Send + Sync {
    /// Delivers `m` to `r`.
    fn deliver<'a>(&'a self, r: &'a Receiver, m: &'a Message) -> Delivering<'a>;
}

/// Delivers through [`super::receivers::send`] with one shared client.
#[derive(Debug, Clone)]
pub struct HttpDeliver {
    http: reqwest::Client,
}

impl HttpDeliver {
    /// A deliverer whose every attempt is bounded by `timeout`.
    pub fn new(timeout: Duration) -> HttpDeliver {
        HttpDeliver {
            http: super::receivers::client(timeout),
        }
    }
}

impl Deliver for HttpDeliver {
    fn deliver<'a>(&'a self, r: &'a Receiver, m: &'a Message) -> Delivering<'a> {
        Box::pin(super::receivers::send(&self.http, r, m))
    }
}

/// The delivery workers, one per receiver.
#[derive(Debug)]
pub struct Dispatcher {}

impl Dispatcher {
    /// Starts a worker per receiver of `config` (and the built-in `status-page`), until
    /// `cancel`.
    pub fn start(
        store: Store,
        config: Arc<NotifyConfig>,
        deliver: Arc<dyn Deliver>,
        cancel: CancellationToken,
    ) -> Dispatcher {
        let _ = (store, config, deliver, cancel);
        todo!("outbox")
    }

    /// Tells the workers that rows were enqueued.
    pub fn wake(&self) {
        todo!("outbox")
    }

    /// A reloaded config: workers of new receivers start, those of removed ones stop (their
    /// pending rows stay pending).
    pub fn set_config(&self, config: Arc<NotifyConfig>) {
        let _ = config;
        todo!("outbox")
    }

    /// Renders the `watchfire_notify_*` families into `out`.
    pub fn render(&self, out: &mut String) {
        let _ = out;
        todo!("outbox")
    }
}
