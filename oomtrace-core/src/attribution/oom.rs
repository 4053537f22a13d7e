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
//!
//! Which cgroup is killed whole with the victim (`oom.group_memcg`) is what the kernel's
//! `mem_cgroup_get_oom_group(victim, oc->memcg)` returns, which `oom_kill_process` calls before
//! it kills its chosen victim: the highest memory cgroup from the victim's up to the OOM domain
//! (the limited cgroup; the root for a global OOM) whose `memory.oom.group` is set, and none on
//! cgroup v1. Its members are killed for it after the victim. The handler read each level's
//! flag, so the same walk gives the answer, or `null` where a level in it was not read.

use crate::{
    kernel::stack::StackReading,
    report::{KernelFacts, MemcgReading, OomContext, Report, exact, kernel_text},
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
    // The log names the group only after the chosen victim's kill: its report takes it here.
    if oom.group_memcg.is_none()
        && let Some(bytes) = group_cgroup(report, &oom)
    {
        let (text, exact_bytes) = kernel_text(&bytes);
        (oom.group_memcg, oom.group_memcg_bytes) = (Some(text), exact_bytes);
    }
    report.oom = Some(oom);
}

/// The OOM domain `mem_cgroup_get_oom_group` walks up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomDomain {
    /// The limited memory cgroup, by its id.
    Memcg(u64),
    /// The root, for a global OOM: every level below it, the root itself having no
    /// `memory.oom.group` to set.
    Root,
}

/// What `mem_cgroup_get_oom_group` returned, as far as the readings tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomGroup {
    /// A level it looks at was not read, or where it stops is not known.
    Unknown,
    /// No group: the victim is killed alone.
    Alone,
    /// Every task of this memory cgroup (by id) is killed with the victim.
    Cgroup(u64),
}

/// The kernel's walk over the handler's memory cgroups (`memcgs`, the victim's first): from
/// the victim's up to `domain`, the highest level whose `memory.oom.group` is set. Every level
/// on the way must have been read, and the domain must be on the victim's chain (the kernel
/// ignores the flag for a victim moved out of it, which the readings cannot tell).
pub fn oom_group(memcgs: &[MemcgReading], domain: OomDomain) -> OomGroup {
    let walked = match domain {
        OomDomain::Root => memcgs,
        OomDomain::Memcg(id) => match memcgs.iter().position(|level| level.id == id) {
            Some(at) => &memcgs[..=at],
            None => return OomGroup::Unknown,
        },
    };
    if walked.is_empty() {
        return OomGroup::Unknown;
    }
    let mut group = OomGroup::Alone;
    for level in walked {
        match level.oom_group {
            None => return OomGroup::Unknown,
            // Higher levels come later and win.
            Some(true) => group = OomGroup::Cgroup(level.id),
            Some(false) => {}
        }
    }
    group
}

/// [`oom_group`] for a report, its OOM as `oom` says so far: the domain from the limited
/// cgroup (or a global OOM), and what the kernel does before it walks at all.
pub fn report_oom_group(report: &Report, oom: &OomContext) -> OomGroup {
    // `memory.oom.group` is cgroup v2's: on v1 the kernel never kills a group.
    if report.cgroup.mode == Some("v1") {
        return OomGroup::Alone;
    }
    // The kernel asks only on its way to killing the victim it chose: one already exiting is
    // only marked (`task_will_free_mem`), with no group. A member was killed for its group.
    if oom.group_kill != Some(true) {
        match oom.kind {
            Some("killed") => {}
            Some("marked") => return OomGroup::Alone,
            _ => return OomGroup::Unknown,
        }
    }
    let (Some(facts), Some(path)) = (report.facts.as_deref(), report.cgroup.path.as_deref()) else {
        return OomGroup::Unknown;
    };
    let path = exact(path, report.cgroup.path_bytes.as_deref());
    let memcg = oom
        .memcg
        .as_deref()
        .map(|memcg| exact(memcg, oom.memcg_bytes.as_deref()));
    let domain = match (oom.global, memcg) {
        (Some(true), None) => OomDomain::Root,
        (Some(false) | None, Some(memcg)) => {
            match ancestor_id_of_bytes(path, &facts.cgroup_ids, memcg) {
                Some(id) => OomDomain::Memcg(id),
                None => return OomGroup::Unknown,
            }
        }
        _ => return OomGroup::Unknown,
    };
    oom_group(&facts.memcgs, domain)
}

/// The exact path of the cgroup the kernel kills whole with the report's victim; `None` when
/// there is none or it is not known.
fn group_cgroup(report: &Report, oom: &OomContext) -> Option<Vec<u8>> {
    let OomGroup::Cgroup(id) = report_oom_group(report, oom) else {
        return None;
    };
    let facts = report.facts.as_deref()?;
    let path = report.cgroup.path.as_deref()?;
    ancestor_bytes(
        exact(path, report.cgroup.path_bytes.as_deref()),
        &facts.cgroup_ids,
        id,
    )
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
/// handler's path ids. Of exact bytes, which need not be UTF-8: two names that read alike as
/// strings are two cgroups.
fn ancestor_id_of_bytes(path: &[u8], ids: &[u64], memcg: &[u8]) -> Option<u64> {
    let components = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
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
        let ancestor_id = |path: &str, ids: &[u64], memcg: &str| {
            ancestor_id_of_bytes(path.as_bytes(), ids, memcg.as_bytes())
        };
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

    /// A level whose `memory.oom.group` reads `flag` (`None`: not read), at no limit.
    fn flagged(id: u64, flag: Option<bool>) -> MemcgReading {
        MemcgReading {
            oom_group: flag,
            ..level(id, MIB, NONE)
        }
    }

    #[test]
    fn the_group_is_the_highest_flagged_level_up_to_the_oom_domain() {
        use OomDomain::{Memcg, Root};
        use OomGroup::{Alone, Cgroup, Unknown};
        let (set, unset, unread) = (Some(true), Some(false), None);
        // (what, the flags of levels 30 (victim's), 20, 10 (below the root), domain, answer)
        let cases = [
            (
                "the container's own",
                [set, unset, unset],
                Memcg(20),
                Cgroup(30),
            ),
            (
                "the pod's, over the container's",
                [set, set, unset],
                Memcg(20),
                Cgroup(20),
            ),
            ("none set", [unset, unset, unset], Memcg(20), Alone),
            (
                "a flag above the domain counts not",
                [unset, unset, set],
                Memcg(20),
                Alone,
            ),
            (
                "the domain is the victim's own",
                [set, set, set],
                Memcg(30),
                Cgroup(30),
            ),
            (
                "a level on the way unread",
                [set, unread, unset],
                Memcg(20),
                Unknown,
            ),
            (
                "unread below the flag",
                [unread, set, unset],
                Memcg(20),
                Unknown,
            ),
            (
                "unread above the domain does not matter",
                [set, unset, unread],
                Memcg(20),
                Cgroup(30),
            ),
            (
                "a domain not on the chain",
                [set, set, set],
                Memcg(99),
                Unknown,
            ),
            (
                "global: up to the top",
                [unset, unset, set],
                Root,
                Cgroup(10),
            ),
            ("global, none set", [unset, unset, unset], Root, Alone),
            (
                "global, the top unread",
                [set, unset, unread],
                Root,
                Unknown,
            ),
        ];
        for (what, [a, b, c], domain, want) in cases {
            let memcgs = [flagged(30, a), flagged(20, b), flagged(10, c)];
            assert_eq!(oom_group(&memcgs, domain), want, "{what}");
        }
        assert_eq!(oom_group(&[], Root), Unknown, "nothing read");
        assert_eq!(oom_group(&[], Memcg(30)), Unknown, "nothing read");
    }

    /// A v2 report of a kill in `/kubepods/pod1/c1` (ids 30, 20, 10) at `/kubepods/pod1`'s
    /// limit, `memory.oom.group` set on the container and the pod.
    fn group_report() -> Report {
        let mut report = crate::testing::report();
        report.cgroup.path = Some("/kubepods/pod1/c1".into());
        report.cgroup.mode = Some("v2");
        report.facts = Some(Box::new(facts(
            vec![
                flagged(30, Some(true)),
                flagged(20, Some(true)),
                flagged(10, Some(false)),
            ],
            Some(vec![30, 20, 10]),
            &[30, 20, 10],
        )));
        report.oom = Some(OomContext {
            kind: Some("killed"),
            memcg: Some("/kubepods/pod1".into()),
            global: Some(false),
            group_kill: Some(false),
            ..OomContext::default()
        });
        report
    }

    #[test]
    fn the_group_of_a_report_is_what_the_kernel_walked() {
        use OomGroup::{Alone, Cgroup, Unknown};
        type Edit = fn(&mut Report);
        fn oom(report: &mut Report) -> &mut OomContext {
            report.oom.as_mut().unwrap()
        }
        let cases: [(&str, Edit, OomGroup); 13] = [
            ("the chosen victim", |_| {}, Cgroup(20)),
            ("a member", |r| oom(r).group_kill = Some(true), Cgroup(20)),
            (
                "a member whose kind is unknown",
                |r| (oom(r).group_kill, oom(r).kind) = (Some(true), None),
                Cgroup(20),
            ),
            (
                "the kill's place in the group unknown",
                |r| oom(r).group_kill = None,
                Cgroup(20),
            ),
            (
                "the container's own limit",
                |r| oom(r).memcg = Some("/kubepods/pod1/c1".into()),
                Cgroup(30),
            ),
            (
                "a global OOM",
                |r| (oom(r).memcg, oom(r).global) = (None, Some(true)),
                Cgroup(20),
            ),
            // The kernel returned before it asked.
            ("only marked", |r| oom(r).kind = Some("marked"), Alone),
            ("cgroup v1", |r| r.cgroup.mode = Some("v1"), Alone),
            // Not known.
            (
                "killed or only marked, unknown",
                |r| oom(r).kind = None,
                Unknown,
            ),
            (
                "the limited cgroup unknown",
                |r| oom(r).memcg = None,
                Unknown,
            ),
            (
                "the limited cgroup not the victim's ancestor",
                |r| oom(r).memcg = Some("/kubepods/pod2".into()),
                Unknown,
            ),
            (
                "a name that reads as the ancestor's but is other bytes",
                |r| {
                    oom(r).memcg = Some("/kubepods/pod\u{fffd}".into());
                    oom(r).memcg_bytes = Some(b"/kubepods/pod\xff".to_vec());
                    r.cgroup.path = Some("/kubepods/pod\u{fffd}/c1".into());
                    r.cgroup.path_bytes = Some(b"/kubepods/pod\xfe/c1".to_vec());
                },
                Unknown,
            ),
            ("no readings", |r| r.facts = None, Unknown),
        ];
        for (what, edit, want) in cases {
            let mut report = group_report();
            edit(&mut report);
            let oom = report.oom.clone().unwrap();
            assert_eq!(report_oom_group(&report, &oom), want, "{what}");
        }
    }

    #[test]
    fn complete_names_the_group_by_its_exact_path_unless_the_log_did() {
        let mut report = group_report();
        complete(&mut report, StackReading::default(), 4096);
        let oom = report.oom.as_ref().unwrap();
        assert_eq!(oom.group_memcg.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(oom.group_memcg_bytes, None);

        let mut report = group_report();
        report.cgroup.path = Some("/kubepods/p\u{fffd}d1/c1".into());
        report.cgroup.path_bytes = Some(b"/kubepods/p\xffd1/c1".to_vec());
        let oom = report.oom.as_mut().unwrap();
        oom.memcg = Some("/kubepods/p\u{fffd}d1".into());
        oom.memcg_bytes = Some(b"/kubepods/p\xffd1".to_vec());
        complete(&mut report, StackReading::default(), 4096);
        let oom = report.oom.as_ref().unwrap();
        assert_eq!(oom.group_memcg.as_deref(), Some("/kubepods/p\u{fffd}d1"));
        assert_eq!(
            oom.group_memcg_bytes.as_deref(),
            Some(&b"/kubepods/p\xffd1"[..])
        );

        // What the kernel log printed stands.
        let mut report = group_report();
        report.oom.as_mut().unwrap().group_memcg = Some("/kubepods".into());
        complete(&mut report, StackReading::default(), 4096);
        let oom = report.oom.as_ref().unwrap();
        assert_eq!(oom.group_memcg.as_deref(), Some("/kubepods"));

        // No group: nothing.
        let mut report = group_report();
        report.oom.as_mut().unwrap().kind = Some("marked");
        complete(&mut report, StackReading::default(), 4096);
        assert_eq!(report.oom.unwrap().group_memcg, None);
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
