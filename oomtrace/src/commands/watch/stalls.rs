//! Which containers the stall watch watches: each one a runtime starts while the watch runs,
//! and those already running when a runtime's cache is first filled.

use oomtrace_core::{
    attribution::killer::SenderContainer, kernel::cgroups::CgroupMode, stall::OomStall,
};

use crate::{
    attribution::enrich::Caches,
    source::stall::{self, StallWatch, Watched},
};

pub struct Stalls(Option<StallWatch>);

impl Stalls {
    pub fn start(mode: CgroupMode, root: Option<std::path::PathBuf>) -> Self {
        Self(stall::start(mode, root))
    }

    /// Watches the container `id`, if a runtime knows its main process.
    pub fn started(&self, id: &str, caches: Caches) {
        if let Some(meta) = caches.any(id) {
            self.watch(id, meta.container.name, meta.container.main_pid);
        }
    }

    /// Watches every running container the runtimes know.
    pub fn running(&self, caches: Caches) {
        for cache in [caches.docker, caches.containerd].into_iter().flatten() {
            for (id, meta) in cache.all() {
                self.watch(&id, meta.container.name, meta.container.main_pid);
            }
        }
    }

    fn watch(&self, id: &str, name: Option<String>, main_pid: Option<u32>) {
        if let (Some(watch), Some(main_pid)) = (&self.0, main_pid) {
            let _ = watch.containers.send(Watched {
                container: SenderContainer {
                    id: id.to_owned(),
                    name,
                },
                main_pid,
            });
        }
    }

    /// The next stall event; never, without a watch.
    pub async fn next(&mut self) -> Option<OomStall> {
        match &mut self.0 {
            Some(watch) => watch.events.recv().await,
            None => std::future::pending().await,
        }
    }
}
