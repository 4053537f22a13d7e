//! The kernel log's view of OOM kills, for the `/dev/kmsg` fallback backend.
//!
//! Four parts, one file each, and [`kill`], the [`KmsgKill`] they make and what a report takes
//! from it:
//!
//! * [`record`]: [`parse_record`] splits one `/dev/kmsg` record,
//!   `prio,seq,usec,flags[,more];message`, and recognises the ` KEY=VALUE` dictionary lines
//!   that follow a record (they are not records).
//! * [`lines`]: the parsers of single OOM lines, `Killed process` and the `oom-kill:` summary.
//! * [`context`]: what the invocation's report prints before the kill, the OOM cgroup's
//!   counters and stats and the task dump, parsed and kept per invocation.
//! * `group`: the `Tasks in <cgroup> are going to be killed due to memory.oom.group set` line,
//!   which names the cgroup a group kill's members are killed for.
//! * [`assembler`]: [`KillAssembler`] reads the messages of consecutive records and turns the lines the OOM
//!   killer prints into one [`KmsgKill`] per killed process:
//!
//!   ```text
//!   memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
//!   ...
//!   oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/group,task_memcg=/group,task=memhog,pid=94,uid=0
//!   Memory cgroup out of memory: Killed process 94 (memhog) total-vm:33876kB, anon-rss:32412kB, file-rss:4kB, shmem-rss:648kB, UID:0 pgtables:112kB oom_score_adj:0
//!   Tasks in /group are going to be killed due to memory.oom.group set
//!   Memory cgroup out of memory: Killed process 91 (sleep) total-vm:2260kB, ...
//!   ```
//!
//! The `Killed process` line is the authority: it is printed for every kill and is not
//! rate-limited. The `invoked oom-killer` header and the `oom-kill:` summary are printed by
//! `dump_header()`, which is rate-limited, so they may be missing; the fields that come only
//! from them are then `None`. So is the report `dump_header()` prints between them (the OOM
//! cgroup's counters and stats, the task dump), which is read only after its header.
//!
//! The kernel builds the summary, and the `Tasks in ...` and (before 5.0) `Task in ...` lines,
//! out of several `pr_cont()` pieces; when another CPU prints in between, one logical line
//! arrives as several records. The assembler joins such pieces when they are recognisably the
//! rest of a line, and it never guesses: a value that is cut off is left `None`, and a
//! `Killed process` line whose pid or comm cannot be read yields no kill.
//!
//! Messages are taken as `/dev/kmsg` escapes them (bytes below 0x20, above 0x7e and `\` itself
//! become `\xNN`); comms and cgroup paths are unescaped into the [`KmsgKill`].
//!
//! Reading `/dev/kmsg` itself, and following it, is oomtrace's (`oomtrace::source::kmsg`).

pub mod assembler;
pub mod context;
mod group;
pub mod kill;
pub mod lines;
pub mod record;

pub use assembler::{KillAssembler, kills_in};
pub use context::{DEFAULT_PAGE_SIZE, LoggedStats, LoggedTask, MAX_TASKS};
pub use kill::KmsgKill;
pub use record::{
    LogText, MalformedRecord, Record, RecordHeader, parse_record, parse_record_full, unescape,
};
