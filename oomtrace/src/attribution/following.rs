//! The task that keeps a runtime's cache in step with the runtime, whichever runtime: one
//! session after another, reconnecting with back-off whenever the runtime goes away, saying
//! once when it becomes unavailable and once when it answers again. Each runtime's module
//! says what a session is ([`Follow`]).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::attribution::runtime::{Cache, Lifecycle, Status};

/// A watch's handle on a runtime followed in the background.
pub struct Enricher {
    pub cache: Cache,
    pub status: watch::Receiver<Status>,
    requests: mpsc::UnboundedSender<String>,
    /// Starts and deaths, in the order the runtime reported them.
    pub lifecycle: mpsc::UnboundedReceiver<Lifecycle>,
}

impl Enricher {
    /// Asks the runtime about a container the cache does not know; the answer lands in the
    /// cache.
    pub fn request_inspect(&self, id: &str) {
        let _ = self.requests.send(id.to_owned());
    }
}

/// What a session works with: the cache it fills, the questions asked of it, where it tells
/// starts and deaths, and its status.
pub struct Link<'a> {
    pub cache: &'a Cache,
    pub requests: &'a mut mpsc::UnboundedReceiver<String>,
    pub lifecycle: &'a mpsc::UnboundedSender<Lifecycle>,
    status: &'a watch::Sender<Status>,
    said_unavailable: &'a mut bool,
}

impl Link<'_> {
    /// The runtime answers and the cache holds what exists: said once after an outage, with
    /// `back`.
    pub fn synced(&mut self, back: impl FnOnce() -> String) {
        let _ = self.status.send(Status::Synced);
        if std::mem::take(self.said_unavailable) {
            crate::say!("{}", back());
        }
    }
}

/// One runtime's way of following it.
pub trait Follow: Send + 'static {
    /// One connection: list what exists, then follow events until they end. Returns why it
    /// ended.
    fn session(&mut self, link: &mut Link<'_>) -> impl Future<Output = String> + Send;

    /// The sentence that says the runtime cannot be asked, and what that costs, given why.
    fn unavailable(&self, why: &str) -> String;
}

/// Starts the background task that keeps `cache` in step with the runtime.
pub fn start(cache: Cache, mut runtime: impl Follow) -> Enricher {
    let (status_tx, status) = watch::channel(Status::Connecting);
    let (requests, mut asked) = mpsc::unbounded_channel::<String>();
    let (lifecycle_tx, lifecycle) = mpsc::unbounded_channel();
    let task_cache = cache.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        // An outage is said once, when it begins; its end is said too, so that the next one
        // is said again.
        let mut said_unavailable = false;
        loop {
            let mut link = Link {
                cache: &task_cache,
                requests: &mut asked,
                lifecycle: &lifecycle_tx,
                status: &status_tx,
                said_unavailable: &mut said_unavailable,
            };
            let why = runtime.session(&mut link).await;
            // A runtime that was answering gets a quick retry; one that never did, a slower one.
            if *status_tx.borrow() == Status::Synced {
                backoff = Duration::from_millis(250);
            }
            let _ = status_tx.send(Status::Unavailable);
            if !said_unavailable {
                crate::say!("{}", runtime.unavailable(&why));
                said_unavailable = true;
            }
            // Questions asked while the runtime is away cannot be answered: drop them.
            while asked.try_recv().is_ok() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Enricher {
        cache,
        status,
        requests,
        lifecycle,
    }
}
