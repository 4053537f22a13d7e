//! Attribution that asks the running system: what a container's runtime says about it
//! ([`docker`], [`containerd`], kept in a [`runtime`] cache and applied by [`enrich`]), and
//! who shares its pod ([`pod_members`]). From a cgroup path alone, the
//! container is `oomtrace_core`'s `attribution::cgroup_path`.

pub mod containerd;
pub mod docker;
pub mod enrich;
pub mod following;
pub mod pod_members;
pub mod runtime;
