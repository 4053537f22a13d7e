//! Enrichment from the Docker Engine: names, images, labels and main pids of containers, kept
//! in a cache fed by Docker's event stream.
//!
//! The cache exists because a `--rm` container killed at once is gone from the API by the time
//! its report is written; the `create` event already carried its name, image and labels. The
//! report path only ever reads the cache. When it meets a container the cache does not know
//! yet, it asks for an inspect and may wait a moment for the answer (see `commands::watch`);
//! Docker absent or stopped never delays anything.
//!
//! oomtrace only reads from Docker: it lists, inspects and follows events. [`cache`] holds
//! what Docker said, [`connect`] reaches it, [`inspect`] reads one container, [`follow`] keeps
//! the cache in step for a watch, and [`ask`] puts one-off questions for `history`,
//! `explain` and `check`.

mod ask;
mod cache;
mod connect;
mod follow;
mod inspect;

pub use ask::{WAIT, ask, containers, inspect_now, version};
pub use cache::apply_event;
pub use connect::socket_path;
pub use follow::start;
