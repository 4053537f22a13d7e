//! Enrichment from containerd: the Kubernetes names, image, memory limit and main pid of the
//! containers it runs, kept in a cache fed by containerd's event stream, through containerd's
//! own client crate (its gRPC API).
//!
//! On a Kubernetes node that runs containerd (no Docker) the cgroup path gives only the
//! container id, the pod uid and the QoS class; containerd's record of the container gives
//! the rest: the CRI labels kubelet sets (`io.kubernetes.pod.name`, `...pod.namespace`,
//! `...container.name`), the image, and the OCI spec's memory limit. Like the Docker cache,
//! this one exists because a container deleted right after its kill is gone from the API by
//! the time its report is written; its create event was followed when it happened.
//!
//! oomtrace only reads: it lists namespaces, containers and tasks, gets one container, and
//! subscribes to events. [`connect`] finds the socket the way `ctr` does and reaches it,
//! [`describe`] turns containerd's record into the report's words, [`follow`] keeps the cache
//! in step for a watch, and [`ask`] puts one-off questions for `check`.

mod ask;
mod connect;
mod describe;
mod follow;

pub use ask::version;
pub use connect::{ADDRESS_ENV, DEFAULT_SOCKET, socket_path};
pub use follow::start;
