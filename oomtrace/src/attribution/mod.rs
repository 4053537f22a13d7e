//! Attribution: from the victim's cgroup to the container that owns it ([`cgroup_path`]), and
//! what that container's runtime says about it ([`docker`], applied by [`enrich`]).

pub mod docker;
pub mod enrich;
pub mod memcg_files;
