//! Which containers the stall watch watches: each one a runtime starts while the watch runs,
//! those already running when a runtime's cache is first filled, and the cgroups
//! `--stall-cgroup` names.

use oomtrace_core::{
    attribution::killer::SenderContainer, kernel::cgroups::CgroupMode, stall::OomStall,
};

use crate::{
    attribution::enrich::Caches,
    source::stall::{self, StallWatch, Watched},
};

pub struct Stalls(Option<StallWatch>);

impl Stalls {
    /// Refuses a cgroup `--stall-cgroup` names that is not a memory cgroup: before anything
    /// starts, so the refusal is the only line.
    pub fn check_named(named: &[String]) -> anyhow::Result<()> {
        let mode = CgroupMode::of_host();
        let root = oomtrace_core::kernel::cgroups::host_memory_root(mode);
        for path in named {
            stall::check_cgroup(mode, root.as_deref(), path)
                .map_err(|why| anyhow::anyhow!("--stall-cgroup {path}: {why}"))?;
        }
        Ok(())
    }

    /// Starts watching, and the cgroups `--stall-cgroup` names at once.
    pub fn start(mode: CgroupMode, root: Option<std::path::PathBuf>, named: &[String]) -> Self {
        let watch = stall::start(mode, root);
        if let Some(watch) = &watch {
            for path in named {
                let _ = watch.watch.send(Watched::Cgroup(path.clone()));
            }
        }
        Self(watch)
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
            let _ = watch.watch.send(Watched::Container {
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
