//! What `explain` knows about one container before it says anything: its kills and exits as
//! the journal and the kernel log hold them, what Docker answers now, and what the sources
//! could not give. The story is built from this and from nothing else.

use std::time::SystemTime;

use crate::attribution::runtime::ContainerMeta;
use oomtrace_core::report::{ContainerExit, Report};

/// How a text shows an untrusted string, given as its exact bytes (a kernel-given name need
/// not be UTF-8): escaped for a terminal, or as the string JSON has.
pub type Show = fn(&[u8]) -> String;

/// What Docker answered about the container.
#[derive(Clone, Debug)]
pub enum DockerView {
    /// `--no-enrich`.
    NotAsked,
    /// Why it could not be asked.
    Unreachable(String),
    /// Docker answered, and does not know the container: it was removed.
    Gone,
    /// Docker answered; the container belongs to another runtime.
    NotDocker,
    // Boxed: a container's description dwarfs the other answers.
    Present(Box<ContainerMeta>),
}

/// Whether the journal was read, and if not, why.
pub use oomtrace_core::journal::State as JournalRead;

/// Everything known about one container, gathered; `story::build` makes the explanation of it.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub id: String,
    /// This container's kills, oldest first.
    pub kills: Vec<Report>,
    /// Its exits as a watch recorded them, oldest first.
    pub exits: Vec<ContainerExit>,
    pub docker: DockerView,
    pub journal: JournalRead,
    /// Kills in the kernel log that name no cgroup: whose they were is not known.
    pub unattributed: usize,
    /// What reading the journal and the kernel log could not do, one sentence each.
    pub gaps: Vec<String>,
    /// Other containers that had the name asked for and OOM kills, newest first.
    pub same_name: Vec<String>,
    pub since: Option<SystemTime>,
}
