//! Which cgroup hierarchy holds the memory controller on this host, and where it is mounted.
//! Every part of oomtrace that names a cgroup asks here, so they all agree.

use std::path::{Path, PathBuf};

use oomtrace_common::cgroup_mode;

/// The hierarchy a victim's memory cgroup is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// A v1 hierarchy carries the memory controller (hybrid hosts: `/sys/fs/cgroup/memory`).
    V1,
    /// The unified hierarchy carries it.
    V2,
    /// No hierarchy offers the memory controller.
    None,
}

impl CgroupMode {
    /// The value the kernel program understands ([`oomtrace_common::cgroup_mode`]).
    pub fn as_raw(self) -> u32 {
        match self {
            Self::V1 => cgroup_mode::V1,
            Self::V2 => cgroup_mode::V2,
            Self::None => cgroup_mode::NONE,
        }
    }

    /// `"v1"` or `"v2"`, as `cgroup.mode` in JSON; `None` without a memory hierarchy.
    pub fn json_name(self) -> Option<&'static str> {
        match self {
            Self::V1 => Some("v1"),
            Self::V2 => Some("v2"),
            Self::None => None,
        }
    }

    /// For the ready line and `oomtrace check`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::V1 => "cgroup v1",
            Self::V2 => "cgroup v2",
            Self::None => "no memory cgroup",
        }
    }

    /// The running system's mode.
    pub fn of_host() -> Self {
        let proc_self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let controllers = memory_hierarchy_root(&mountinfo, Self::V2)
            .and_then(|root| std::fs::read_to_string(root.join("cgroup.controllers")).ok());
        Self::from_proc(&proc_self_cgroup, controllers.as_deref())
    }

    /// From `/proc/self/cgroup`: a v1 line that lists `memory`, else the unified hierarchy if
    /// its root offers `memory`.
    pub fn from_proc(proc_self_cgroup: &str, v2_root_controllers: Option<&str>) -> Self {
        let v1_memory = proc_self_cgroup.lines().any(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers) = (parts.next(), parts.next().unwrap_or(""));
            controllers.split(',').any(|c| c == "memory")
        });
        if v1_memory {
            return Self::V1;
        }
        let v2_memory = v2_root_controllers
            .is_some_and(|controllers| controllers.split_whitespace().any(|c| c == "memory"));
        let has_unified = proc_self_cgroup.lines().any(|line| line.starts_with("0::"));
        if has_unified && v2_memory {
            Self::V2
        } else {
            Self::None
        }
    }
}

/// Where `mode`'s hierarchy is mounted, from `/proc/self/mountinfo`.
pub fn memory_hierarchy_root(mountinfo: &str, mode: CgroupMode) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let mut right = right.split_whitespace();
        let fs_type = right.next()?;
        let options = right.nth(1).unwrap_or_default();
        let hit = match mode {
            CgroupMode::V1 => fs_type == "cgroup" && options.split(',').any(|o| o == "memory"),
            CgroupMode::V2 => fs_type == "cgroup2",
            CgroupMode::None => false,
        };
        hit.then(|| mount_point.into())
    })
}

/// The memory hierarchy's mount point on this host.
pub fn host_memory_root(mode: CgroupMode) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    memory_hierarchy_root(&mountinfo, mode)
}

/// The directory of cgroup `path` (as the kernel spells it, from the hierarchy's root).
pub fn cgroup_dir(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_the_memory_controller() {
        let hybrid = "12:memory:/user.slice\n1:name=systemd:/\n0::/\n";
        let unified = "0::/user.slice/session-1.scope\n";
        let cases = [
            (hybrid, Some("cpu io memory"), CgroupMode::V1),
            (hybrid, Some(""), CgroupMode::V1),
            (unified, Some("cpuset cpu io memory pids"), CgroupMode::V2),
            (unified, Some("cpu io"), CgroupMode::None),
            (unified, None, CgroupMode::None),
            ("4:cpu,cpuacct:/\n", None, CgroupMode::None),
            ("3:cpu,memory:/x\n", None, CgroupMode::V1),
            ("", None, CgroupMode::None),
        ];
        for (cgroup, controllers, want) in cases {
            assert_eq!(
                CgroupMode::from_proc(cgroup, controllers),
                want,
                "{cgroup:?} {controllers:?}"
            );
        }
    }

    #[test]
    fn finds_the_memory_hierarchy_mount() {
        let mountinfo = "\
36 35 0:31 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory
";
        assert_eq!(
            memory_hierarchy_root(mountinfo, CgroupMode::V1).as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            memory_hierarchy_root(mountinfo, CgroupMode::V2).as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(memory_hierarchy_root(mountinfo, CgroupMode::None), None);
    }

    #[test]
    fn raw_and_json_names_agree_with_the_kernel_program() {
        assert_eq!(CgroupMode::V1.as_raw(), cgroup_mode::V1);
        assert_eq!(CgroupMode::V2.as_raw(), cgroup_mode::V2);
        assert_eq!(CgroupMode::None.as_raw(), cgroup_mode::NONE);
        assert_eq!(CgroupMode::V2.json_name(), Some("v2"));
        assert_eq!(CgroupMode::None.json_name(), None);
    }
}
