//! The kernel functions an OOM's stack is read by. The handler records the kernel stack at
//! `mark_victim`; which functions its return addresses fall in says whether the OOM was a
//! cgroup's or the machine's, and whether the victim was killed as a member of a
//! `memory.oom.group` kill; a signal's stack says whether a write to `cgroup.kill` sent it.
//! Their addresses come from `/proc/kallsyms`, read once, off the
//! event path: it is about 10 MB of text.
//!
//! Never guessed: a stack that reaches none of the functions, or symbols that cannot be
//! read (`kptr_restrict`, no CAP_SYSLOG), give `None`.

use std::{
    io::{BufRead as _, BufReader},
    ops::Range,
};

use oomtrace_core::kernel::stack::StackReading;

/// Where a function the reading looks for lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `out_of_memory` and `oom_kill_process`: the OOM killer itself. What called them says
    /// whose OOM it is.
    OomKiller,
    /// Kills the rest of a `memory.oom.group` after its chosen victim.
    GroupMember,
    /// The memory controller's paths into the OOM killer.
    Memcg,
    /// The page allocator's and the page fault's: the machine's memory.
    Global,
    /// A write to `cgroup.kill`, which signals every task in the cgroup.
    CgroupKill,
}

/// Functions by name (any `.cold`, `.constprop.0`, ... suffix stripped), and their roles.
const FUNCTIONS: [(&str, Role); 15] = [
    ("out_of_memory", Role::OomKiller),
    ("oom_kill_process", Role::OomKiller),
    ("oom_kill_memcg_member", Role::GroupMember),
    ("mem_cgroup_out_of_memory", Role::Memcg),
    ("mem_cgroup_oom", Role::Memcg),
    ("try_charge_memcg", Role::Memcg),
    ("memory_max_write", Role::Memcg),
    ("mem_cgroup_oom_synchronize", Role::Memcg),
    ("memcg1_oom_synchronize", Role::Memcg),
    ("__alloc_pages_may_oom", Role::Global),
    ("__alloc_pages_slowpath", Role::Global),
    ("pagefault_out_of_memory", Role::Global),
    ("moom_callback", Role::Global),
    ("cgroup_kill_write", Role::CgroupKill),
    ("__cgroup_kill", Role::CgroupKill),
];

/// The functions' addresses, loaded on a thread of their own while the watch starts, so
/// neither start-up nor the first report waits the ~100 ms kallsyms takes unless a kill comes
/// that soon.
pub struct Symbols(Loading);

enum Loading {
    Pending(std::thread::JoinHandle<Option<Kallsyms>>),
    Done(Option<Kallsyms>),
}

impl Symbols {
    pub fn load_in_background() -> Self {
        match std::thread::Builder::new()
            .name("kallsyms".into())
            .spawn(Kallsyms::load)
        {
            Ok(handle) => Self(Loading::Pending(handle)),
            Err(_) => Self(Loading::Done(Kallsyms::load())),
        }
    }

    /// Reads a stack recorded at `mark_victim`, innermost frame first. Unknown (all `None`)
    /// without symbols.
    pub fn read(&mut self, stack: &[u64]) -> StackReading {
        match self.loaded() {
            Some(kallsyms) => kallsyms.read(stack),
            None => StackReading::default(),
        }
    }

    /// Whether a signal's stack, recorded at `signal_generate`, passes through a write to
    /// `cgroup.kill`: false without symbols, as without a stack.
    pub fn via_cgroup_kill(&mut self, stack: &[u64]) -> bool {
        self.loaded().is_some_and(|kallsyms| {
            stack
                .iter()
                .any(|&a| kallsyms.role(a) == Some(Role::CgroupKill))
        })
    }

    fn loaded(&mut self) -> Option<&Kallsyms> {
        if let Loading::Pending(_) = &self.0 {
            let Loading::Pending(handle) = std::mem::replace(&mut self.0, Loading::Done(None))
            else {
                unreachable!("checked just above")
            };
            self.0 = Loading::Done(handle.join().ok().flatten());
        }
        match &self.0 {
            Loading::Done(kallsyms) => kallsyms.as_ref(),
            Loading::Pending(_) => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kallsyms {
    /// Address ranges of the functions in [`FUNCTIONS`], with their roles.
    ranges: Vec<(Range<u64>, Role)>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`; `None` if it cannot be read or hides the addresses.
    pub fn load() -> Option<Self> {
        let open = || {
            std::fs::File::open("/proc/kallsyms")
                .ok()
                .map(BufReader::new)
        };
        // Two passes, so nothing but a handful of ranges is ever held.
        let starts = find_starts(open()?.lines().map_while(Result::ok));
        if starts.is_empty() {
            return None;
        }
        let symbols = Self::from_starts(starts, open()?.lines().map_while(Result::ok));
        (!symbols.ranges.is_empty()).then_some(symbols)
    }

    /// Ends each function at the next symbol's address.
    fn from_starts(starts: Vec<(u64, Role)>, lines: impl Iterator<Item = String>) -> Self {
        let mut ends: Vec<u64> = vec![u64::MAX; starts.len()];
        for line in lines {
            let Some(address) = line.split_whitespace().next().and_then(parse_address) else {
                continue;
            };
            for ((start, _), end) in starts.iter().zip(ends.iter_mut()) {
                if address > *start && address < *end {
                    *end = address;
                }
            }
        }
        let ranges = starts
            .into_iter()
            .zip(ends)
            .filter(|(_, end)| *end != u64::MAX)
            .map(|((start, role), end)| (start..end, role))
            .collect();
        Self { ranges }
    }

    fn role(&self, address: u64) -> Option<Role> {
        // A return address points just past the call, which may be the function's last byte.
        let address = address.wrapping_sub(1);
        self.ranges
            .iter()
            .find(|(range, _)| range.contains(&address))
            .map(|&(_, role)| role)
    }

    /// Reads a stack recorded at `mark_victim`, innermost frame first.
    pub fn read(&self, stack: &[u64]) -> StackReading {
        let roles: Vec<Option<Role>> = stack.iter().map(|&a| self.role(a)).collect();
        read_roles(&roles)
    }
}

/// The pure part of [`Symbols::read`]: the roles of the frames, innermost first.
fn read_roles(roles: &[Option<Role>]) -> StackReading {
    let Some(killer) = roles.iter().position(|r| *r == Some(Role::OomKiller)) else {
        return StackReading::default();
    };
    // Group members are killed from inside oom_kill_process, so their frame is inside it.
    let group_member = Some(roles[..killer].contains(&Some(Role::GroupMember)));
    let memcg = roles[killer..].iter().find_map(|role| match role {
        Some(Role::Memcg) => Some(true),
        Some(Role::Global) => Some(false),
        _ => None,
    });
    StackReading {
        memcg,
        group_member,
    }
}

fn parse_address(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok().filter(|&a| a != 0)
}

/// First pass: where each wanted text symbol starts.
fn find_starts(lines: impl Iterator<Item = String>) -> Vec<(u64, Role)> {
    let mut starts = Vec::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(address), Some(kind), Some(name)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let base = name.split('.').next().unwrap_or(name);
        if let Some(&(_, role)) = FUNCTIONS.iter().find(|(wanted, _)| *wanted == base)
            && let Some(address) = parse_address(address)
        {
            starts.push((address, role));
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81597b90 t mark_oom_victim
ffffffff81598eb0 t __oom_kill_process
ffffffff81599310 t oom_kill_process
ffffffff815994b0 t oom_kill_memcg_member
ffffffff81599500 t oom_something_after
ffffffff81599ce0 T out_of_memory
ffffffff8159a1f0 T pagefault_out_of_memory
ffffffff8159a300 t next_one
ffffffff816207e0 t __alloc_pages_slowpath.constprop.0
ffffffff81621000 t after_slowpath
ffffffff8168dc30 t mem_cgroup_out_of_memory
ffffffff8168dd00 t after_memcg_oom
ffffffff81690cd0 T mem_cgroup_scan_tasks
ffffffff81691a90 t try_charge_memcg
ffffffff81692000 t after_charge
ffffffff8121240a t out_of_memory.cold
ffffffff81212482 t pagefault_out_of_memory.cold
0000000000000000 t hidden_by_kptr_restrict
";

    fn symbols() -> Kallsyms {
        let lines = || KALLSYMS.lines().map(str::to_owned);
        Kallsyms::from_starts(find_starts(lines()), lines())
    }

    #[test]
    fn reads_whose_oom_it_was_from_the_stack() {
        let s = symbols();
        // Return addresses a little way into each function.
        let memcg_kill = [
            0xffffffff81597c00, // mark_oom_victim
            0xffffffff81599000, // __oom_kill_process
            0xffffffff81599400, // oom_kill_process
            0xffffffff81599d00, // out_of_memory
            0xffffffff8168dc80, // mem_cgroup_out_of_memory
            0xffffffff81691b00, // try_charge_memcg
        ];
        assert_eq!(
            s.read(&memcg_kill),
            StackReading {
                memcg: Some(true),
                group_member: Some(false),
            }
        );
        let member = [
            0xffffffff81597c00,
            0xffffffff81599000,
            0xffffffff815994c0, // oom_kill_memcg_member
            0xffffffff81690d00, // mem_cgroup_scan_tasks
            0xffffffff81599400, // oom_kill_process
            0xffffffff81599d00,
            0xffffffff8168dc80,
        ];
        assert_eq!(
            s.read(&member),
            StackReading {
                memcg: Some(true),
                group_member: Some(true),
            }
        );
        let global = [
            0xffffffff81599400,
            0xffffffff81599d00,
            0xffffffff81620900, // __alloc_pages_slowpath.constprop.0
        ];
        assert_eq!(s.read(&global).memcg, Some(false));
        let sysrq_unknown = [0xffffffff81599400, 0xffffffff81599d00, 0xffffffff80000000];
        assert_eq!(
            s.read(&sysrq_unknown),
            StackReading {
                memcg: None,
                group_member: Some(false),
            }
        );
        assert_eq!(s.read(&[]), StackReading::default());
        assert_eq!(s.read(&[0xffffffff80000000]), StackReading::default());
    }

    #[test]
    fn a_return_address_at_a_function_s_end_belongs_to_it() {
        let s = symbols();
        // The call is the last instruction of oom_kill_memcg_member: the return address is
        // the first byte of the next symbol.
        assert_eq!(s.role(0xffffffff81599500), Some(Role::GroupMember));
        // Its start, as a return address, is the end of oom_kill_process before it.
        assert_eq!(s.role(0xffffffff815994b0), Some(Role::OomKiller));
        assert_eq!(
            s.role(0xffffffff81000000),
            None,
            "before every function read"
        );
    }

    #[test]
    fn hidden_addresses_give_no_symbols() {
        let hidden = "0000000000000000 T out_of_memory\n0000000000000000 t oom_kill_process\n";
        assert!(find_starts(hidden.lines().map(str::to_owned)).is_empty());
    }

    #[test]
    fn the_host_has_the_functions_it_needs() {
        let Some(symbols) = Kallsyms::load() else {
            // Without CAP_SYSLOG kallsyms shows zeros; the privileged tests cover the host.
            return;
        };
        let roles: Vec<Role> = symbols.ranges.iter().map(|(_, r)| *r).collect();
        for role in [
            Role::OomKiller,
            Role::GroupMember,
            Role::Memcg,
            Role::Global,
        ] {
            assert!(
                roles.contains(&role),
                "no {role:?} function in /proc/kallsyms"
            );
        }
    }
}
