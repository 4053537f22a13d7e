//! Which limit was hit, and which OOM invocation a kill belongs to: the `oom` object of an
//! eBPF report, from what the handler read and the kernel stack, past what the kernel log's
//! report told where it printed one (`source::kmsg::kill`, applied first).
//!
//! The kernel log's `oom-kill:` summary names the cgroup whose limit was hit exactly, and its
//! report gives that cgroup's charge, limit, stats and every task's RSS. It is rate-limited,
//! so without it the limit is read off the memory cgroups the handler read, by what the kernel
//! itself checked before killing: in `mem_cgroup_out_of_memory` it kills only if the limited
//! cgroup's margin (limit minus charge) is below the charge that failed (at most 8 pages), and
//! below that cgroup every level took the charge. So the limited cgroup is the one level, on
//! both the victim's and the trigger's chain, whose margin is under 8 pages; if no level or
//! several are, `oom.memcg` is `null`. A concurrent uncharge between the kernel's check and
//! the handler can only widen the margin, which makes the answer `null`, not another cgroup,
//! unless a second level happens to sit within 8 pages of its own limit at that moment.

use crate::{
    kernel::stack::StackReading,
    report::{KernelFacts, MemcgReading, Report, kernel_text},
};

/// The largest charge the memcg OOM killer acts on: `PAGE_ALLOC_COSTLY_ORDER` (3) pages.
const MARGIN_PAGES: u64 = 8;

/// The cgroup whose limit was hit, read off the handler's memory cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
    pub path: String,
    pub id: u64,
    pub limit_bytes: u64,
    pub usage_bytes: u64,
}

/// Completes `report.oom` from the stack reading and the handler's memory cgroups, where the
/// kernel log's account of the kill (applied first) left it open.
pub fn complete(report: &mut Report, stack: StackReading, page_size: u64) {
    let mut oom = report.oom.take().unwrap_or_default();
    // The log's `Killed process` line comes even when its report was rate-limited away, so
    // what it lacks the stack may still say.
    if oom.global.is_none() {
        oom.global = stack.memcg.map(|memcg| !memcg);
    }
    if oom.constraint.is_none() && stack.memcg == Some(true) {
        oom.constraint = Some("CONSTRAINT_MEMCG".to_owned());
    }
    if oom.group_kill.is_none() {
        oom.group_kill = stack.group_member;
    }
    if oom.memcg.is_none()
        && stack.memcg == Some(true)
        && let (Some(facts), Some(path)) = (report.facts.as_deref(), report.cgroup.path.as_deref())
        && let Some(hit) = limit_hit(facts, path, page_size)
    {
        // The ancestor's exact name is a prefix of the victim's exact path: U+FFFD never
        // stands for a `/`, so both have the same components.
        oom.memcg_bytes = report
            .cgroup
            .path_bytes
            .as_deref()
            .and_then(|exact| ancestor_bytes(exact, &facts.cgroup_ids, hit.id))
            .and_then(|bytes| kernel_text(&bytes).1);
        oom.memcg = Some(hit.path);
        oom.memcg_limit_bytes = Some(hit.limit_bytes);
        oom.memcg_usage_bytes = Some(hit.usage_bytes);
    }
    report.oom = Some(oom);
}

/// The one level, on the victim's and the trigger's memory cgroup chains, at its limit; see
/// the module docs. `victim_path` names the levels through the handler's cgroup ids.
pub fn limit_hit(facts: &KernelFacts, victim_path: &str, page_size: u64) -> Option<LimitHit> {
    let threshold = MARGIN_PAGES * page_size;
    let on_trigger_chain = |level: &MemcgReading| {
        facts
            .trigger_memcg_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&level.id))
    };
    let mut at_limit = facts
        .memcgs
        .iter()
        .filter(|level| on_trigger_chain(level))
        .filter_map(|level| binding_counter(level, threshold).map(|c| (level, c)));
    let (level, (limit_bytes, usage_bytes)) = at_limit.next()?;
    if at_limit.next().is_some() {
        return None;
    }
    Some(LimitHit {
        path: ancestor_path(victim_path, &facts.cgroup_ids, level.id)?,
        id: level.id,
        limit_bytes,
        usage_bytes,
    })
}

/// The counter of `level` within `threshold` bytes of its limit, as (limit, usage): memory
/// first, then memory+swap.
fn binding_counter(level: &MemcgReading, threshold: u64) -> Option<(u64, u64)> {
    let near = |usage: u64, limit: Option<u64>| {
        limit
            .filter(|&limit| limit.saturating_sub(usage) < threshold)
            .map(|limit| (limit, usage))
    };
    near(level.usage_bytes, level.limit_bytes)
        .or_else(|| level.memsw.and_then(|(usage, limit)| near(usage, limit)))
}

/// The path of the ancestor of `path` (or `path` itself) whose cgroup id is `id`; `ids` are
/// the path's components' ids, leaf first.
pub fn ancestor_path(path: &str, ids: &[u64], id: u64) -> Option<String> {
    let bytes = ancestor_bytes(path.as_bytes(), ids, id)?;
    Some(kernel_text(&bytes).0)
}

/// [`ancestor_path`] of a path's exact bytes, which need not be UTF-8.
fn ancestor_bytes(path: &[u8], ids: &[u64], id: u64) -> Option<Vec<u8>> {
    let components: Vec<&[u8]> = path
        .strip_prefix(b"/")?
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if components.len() != ids.len() {
        return None;
    }
    let from_leaf = ids.iter().position(|&i| i == id)?;
    let depth = components.len() - from_leaf;
    Some([&b"/"[..], &components[..depth].join(&b'/')].concat())
}

/// The id of `memcg`, an ancestor of (or the same as) the victim's cgroup `path`, from the
/// handler's path ids.
pub fn ancestor_id(path: &str, ids: &[u64], memcg: &str) -> Option<u64> {
    let components = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (victim, limited) = (components(path), components(memcg));
    if victim.len() != ids.len()
        || limited.len() > victim.len()
        || victim[..limited.len()] != limited[..]
    {
        return None;
    }
    ids.get(victim.len() - limited.len()).copied()
}

/// Whether the victim's cgroups could take part in a `memory.oom.group` kill: one of them
/// has it set, or it could not be read. `false` only when every level was read and none has.
pub fn group_kill_possible(facts: Option<&KernelFacts>) -> bool {
    match facts {
        Some(facts) if !facts.memcgs.is_empty() => facts
            .memcgs
            .iter()
            .any(|level| level.oom_group != Some(false)),
        _ => true,
    }
}

/// Numbers OOM invocations as reports arrive: a kill starts a new invocation unless it is a
/// member of the `memory.oom.group` kill the previous one started (same trigger, and the
/// stack shows the group's member path). The id is the first victim's `boot_ns`.
#[derive(Debug, Default)]
pub struct Invocations {
    last: Option<(Option<u32>, u64)>,
}

impl Invocations {
    pub fn id_for(&mut self, report: &Report, stack: StackReading) -> Option<u64> {
        let boot_ns = report.boot_ns?;
        let trigger = report.trigger.tid;
        let member = match stack.group_member {
            Some(member) => member,
            // Without the stack, only a kill that cannot be in a group kill is known to be one
            // of its own.
            None if !group_kill_possible(report.facts.as_deref()) => false,
            None => {
                self.last = None;
                return None;
            }
        };
        match self.last {
            Some((last_trigger, id)) if member && last_trigger == trigger => Some(id),
            // A member whose chosen victim was not seen: its invocation's id is unknown.
            _ if member => None,
            _ => {
                self.last = Some((trigger, boot_ns));
                Some(boot_ns)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const NONE: Option<u64> = None;

    fn level(id: u64, usage: u64, limit: Option<u64>) -> MemcgReading {
        MemcgReading {
            id,
            usage_bytes: usage,
            limit_bytes: limit,
            memsw: None,
            oom_group: Some(false),
        }
    }

    fn facts(levels: Vec<MemcgReading>, trigger: Option<Vec<u64>>, ids: &[u64]) -> KernelFacts {
        KernelFacts {
            memcgs: levels,
            trigger_memcg_ids: trigger,
            cgroup_ids: ids.to_vec(),
            stack: Vec::new(),
        }
    }

    #[test]
    fn the_limit_hit_is_the_one_level_at_its_limit_on_both_chains() {
        let page = 4096;
        let full = 32 * MIB;
        // (what, levels victim-first, trigger chain, path ids leaf first, path, answer)
        let cases: Vec<(&str, KernelFacts, &str, Option<&str>)> = vec![
            (
                "a container at its own limit",
                facts(
                    vec![level(42, full - page, Some(full)), level(7, 40 * MIB, NONE)],
                    Some(vec![42, 7]),
                    &[42, 7],
                ),
                "/docker/abc",
                Some("/docker/abc"),
            ),
            (
                "a parent's limit, the child unlimited",
                facts(
                    vec![level(9, full, NONE), level(8, full, Some(full))],
                    Some(vec![9, 8]),
                    &[9, 8],
                ),
                "/parent/child",
                Some("/parent"),
            ),
            (
                "a pod's slice, the container below its own limit",
                facts(
                    vec![
                        level(30, 60 * MIB, Some(64 * MIB)),
                        level(20, 64 * MIB - 2 * page, Some(64 * MIB)),
                        level(10, 900 * MIB, NONE),
                    ],
                    Some(vec![31, 20, 10]),
                    &[30, 20, 10],
                ),
                "/kubepods/pod1/c1",
                Some("/kubepods/pod1"),
            ),
            (
                "two levels at their limits: cannot tell",
                facts(
                    vec![level(2, full, Some(full)), level(1, full, Some(full))],
                    Some(vec![2, 1]),
                    &[2, 1],
                ),
                "/a/b",
                None,
            ),
            (
                "none at its limit (memory freed since): cannot tell",
                facts(vec![level(2, full / 2, Some(full))], Some(vec![2]), &[2]),
                "/a",
                None,
            ),
            (
                "at its limit but not on the trigger's chain",
                facts(
                    vec![level(2, full, Some(full)), level(1, 40 * MIB, NONE)],
                    Some(vec![5, 1]),
                    &[2, 1],
                ),
                "/a/b",
                None,
            ),
            (
                "the trigger's chain unknown: the victim's decides",
                facts(vec![level(2, full, Some(full))], None, &[2]),
                "/a",
                Some("/a"),
            ),
            (
                "a level the path cannot name",
                facts(vec![level(2, full, Some(full))], Some(vec![2]), &[3]),
                "/a",
                None,
            ),
            ("no levels read", facts(Vec::new(), None, &[2]), "/a", None),
        ];
        for (what, facts, path, want) in cases {
            assert_eq!(
                limit_hit(&facts, path, page).map(|h| h.path).as_deref(),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn memory_and_swap_at_its_limit_is_the_limit_hit_on_v1() {
        let full = 32 * MIB;
        let mut level = level(2, full - MIB, Some(full));
        level.memsw = Some((full, Some(full)));
        let facts = facts(vec![level], Some(vec![2]), &[2]);
        assert_eq!(
            limit_hit(&facts, "/a", 4096),
            Some(LimitHit {
                path: "/a".into(),
                id: 2,
                limit_bytes: full,
                usage_bytes: full,
            })
        );
    }

    #[test]
    fn ancestors_are_named_through_the_path_ids() {
        let ids = [30, 20, 10];
        let cases = [
            (30, Some("/a/b/c")),
            (20, Some("/a/b")),
            (10, Some("/a")),
            (99, None),
        ];
        for (id, want) in cases {
            assert_eq!(ancestor_path("/a/b/c", &ids, id).as_deref(), want, "{id}");
        }
        assert_eq!(
            ancestor_path("/a/b", &ids, 10),
            None,
            "ids and path disagree"
        );
        assert_eq!(
            ancestor_bytes(b"/a\xff/b/c", &ids, 20).as_deref(),
            Some(&b"/a\xff/b"[..]),
            "a name that is not UTF-8 is kept byte for byte"
        );
        assert_eq!(ancestor_id("/a/b/c", &ids, "/a/b"), Some(20));
        assert_eq!(ancestor_id("/a/b/c", &ids, "/a/b/c"), Some(30));
        assert_eq!(ancestor_id("/a/b/c", &ids, "/x"), None);
        assert_eq!(ancestor_id("/a/b/c", &ids, "/a/bc"), None);
        assert_eq!(
            ancestor_id("/a/b", &ids, "/a"),
            None,
            "ids and path disagree"
        );
    }

    fn report_by(trigger: u32, boot_ns: u64, oom_group: Option<bool>) -> Report {
        let mut report = crate::testing::report();
        report.trigger.tid = Some(trigger);
        report.boot_ns = Some(boot_ns);
        let facts = report.facts.as_mut().unwrap();
        for level in &mut facts.memcgs {
            level.oom_group = oom_group;
        }
        report
    }

    #[test]
    fn a_group_kill_is_one_invocation() {
        let member = StackReading {
            memcg: Some(true),
            group_member: Some(true),
        };
        let chosen = StackReading {
            memcg: Some(true),
            group_member: Some(false),
        };
        let unknown = StackReading::default();
        let mut ids = Invocations::default();
        let group = Some(true);
        assert_eq!(ids.id_for(&report_by(5, 100, group), chosen), Some(100));
        assert_eq!(ids.id_for(&report_by(5, 101, group), member), Some(100));
        assert_eq!(ids.id_for(&report_by(5, 102, group), member), Some(100));
        // The next invocation, even by the same trigger, starts afresh.
        assert_eq!(ids.id_for(&report_by(5, 900, group), chosen), Some(900));
        // A member by another trigger is not the last invocation's.
        assert_eq!(ids.id_for(&report_by(6, 901, group), member), None);
        // No stack: a cgroup without memory.oom.group anywhere is an invocation of its own...
        assert_eq!(
            ids.id_for(&report_by(7, 950, Some(false)), unknown),
            Some(950)
        );
        // ... one that has it, or unread, cannot be told.
        assert_eq!(ids.id_for(&report_by(7, 960, group), unknown), None);
        assert_eq!(ids.id_for(&report_by(7, 970, None), unknown), None);
    }
}
