//! What the kernel stack recorded at `mark_victim` says about the OOM, once its return
//! addresses are placed among the OOM killer's functions (oomtrace's `kernel::symbols`, which
//! reads `/proc/kallsyms`). Attribution takes it to tell whose limit was hit.

/// What a stack says about the OOM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackReading {
    /// True: a cgroup's limit was hit; false: the machine ran out.
    pub memcg: Option<bool>,
    /// Killed as a member of a `memory.oom.group` kill, after its chosen victim.
    pub group_member: Option<bool>,
}
