//! Reports and container exits made from fuzz bytes for the renderers' target. Every string
//! that comes from outside oomtrace (comms, cgroup paths, container names, images, labels,
//! commands, pod names) is arbitrary; the rest stays within what oomtrace itself can produce,
//! so a crash is the renderers' and not the generator's.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use jiff::tz::{Offset, TimeZone};
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};

use oomtrace_core::report::{
    Cgroup, Container, ContainerExit, EarlierSignal, Host, KNOWN_WORDS, KillSummary, KilledBy, MemcgStat, OomContext, Pod, Report, Sender, SenderContainer, SenderParent,
    TopTask, Trigger, Victim, kernel_text,
};

/// The last second humantime writes (9999-12-31T23:59:59Z). Past it its `Display` fails and
/// serde_json panics on that; before the epoch humantime panics. oomtrace's times are wall-
/// clock readings and `ClockPair::wall_time` drops any before the epoch, so neither end is
/// reachable and the generator stays inside.
const LAST_SECOND: u64 = 253_402_300_799;

/// 2^57 bytes, the whole of x86-64's 5-level virtual address space. The human view adds the
/// three RSS counters, which the kernel's page counts keep far from overflowing a u64.
const MAX_RSS: u64 = 1 << 57;

/// A few ids, so kills in one input often share a container and the "2nd kill in" count runs.
const IDS: [&str; 3] = [
    "28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604",
    "a1568a0834f3bccc3acdc361a22ef5c8c5d482028fbd6210dc7a88f7e0baabea",
    "web",
];

fn word(u: &mut Unstructured) -> Result<&'static str> {
    u.choose(KNOWN_WORDS).copied()
}

fn maybe<T>(
    u: &mut Unstructured,
    make: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary()? { Some(make(u)?) } else { None })
}

fn text(u: &mut Unstructured) -> Result<String> {
    String::arbitrary(u)
}

/// A wall-clock time as oomtrace stamps one, to the microsecond the JSON keeps.
pub fn time(u: &mut Unstructured) -> Result<SystemTime> {
    let secs = u.int_in_range(0..=LAST_SECOND)?;
    let micros = u.int_in_range(0..=999_999u64)?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// "Now" for the human view: anything the clock can read, before the epoch included.
pub fn now(u: &mut Unstructured) -> Result<SystemTime> {
    let offset = Duration::from_nanos(u.arbitrary()?);
    let now = if u.arbitrary()? {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    Ok(now.unwrap_or(SystemTime::UNIX_EPOCH))
}

/// UTC, a fixed offset, or a zone with DST, whose repeated hour makes the view add the zone.
/// Not the host's: a crash must reproduce anywhere.
pub fn zone(u: &mut Unstructured) -> Result<TimeZone> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => TimeZone::UTC,
        1 => {
            let seconds = u.int_in_range(-93_599..=93_599)?;
            TimeZone::fixed(Offset::from_seconds(seconds).unwrap_or(Offset::UTC))
        }
        2 => TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").expect("a valid POSIX zone"),
        _ => TimeZone::posix("NZST-12NZDT,M9.5.0,M4.1.0/3").expect("a valid POSIX zone"),
    })
}

/// A string the kernel gave: valid UTF-8, or bytes decoded as the sources decode them, with
/// the bytes kept when they were not UTF-8.
fn kernel(u: &mut Unstructured) -> Result<(Option<String>, Option<Vec<u8>>)> {
    if !u.arbitrary()? {
        return Ok((None, None));
    }
    if u.arbitrary()? {
        return Ok((Some(text(u)?), None));
    }
    let bytes = Vec::<u8>::arbitrary(u)?;
    let (text, raw) = kernel_text(&bytes);
    Ok((Some(text), raw))
}

fn byte_count(u: &mut Unstructured) -> Result<Option<u64>> {
    maybe(u, |u| u.int_in_range(0..=MAX_RSS))
}

/// Labels as Docker returns them, with the compose pair the human view shows often present.
fn labels(u: &mut Unstructured) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    if u.arbitrary()? {
        labels.insert("com.docker.compose.project".into(), text(u)?);
        labels.insert("com.docker.compose.service".into(), text(u)?);
    }
    for _ in 0..u.int_in_range(0..=3u8)? {
        labels.insert(text(u)?, text(u)?);
    }
    Ok(labels)
}

fn container(u: &mut Unstructured) -> Result<Container> {
    Ok(Container {
        runtime: word(u)?,
        id: if u.arbitrary()? {
            u.choose(&IDS)?.to_string()
        } else {
            text(u)?
        },
        name: maybe(u, text)?,
        image: maybe(u, text)?,
        labels: maybe(u, labels)?,
        main_pid: u.arbitrary()?,
        restart_policy: maybe(u, |u| {
            if u.arbitrary()? {
                Ok(u.choose(&["on-failure", "always", "unless-stopped"])?
                    .to_string())
            } else {
                text(u)
            }
        })?,
        restart_max_retries: u.arbitrary()?,
        restart_count: u.arbitrary()?,
        main_command: maybe(u, text)?,
        memory_limit_bytes: u.arbitrary()?,
        pod: maybe(u, |u| {
            Ok(Pod {
                uid: text(u)?,
                namespace: maybe(u, text)?,
                name: maybe(u, text)?,
                qos: maybe(u, word)?,
                containers: u.arbitrary()?,
            })
        })?,
    })
}

fn oom(u: &mut Unstructured) -> Result<OomContext> {
    let (memcg, memcg_bytes) = kernel(u)?;
    let (group_memcg, group_memcg_bytes) = kernel(u)?;
    Ok(OomContext {
        // Few incidents, so group-kill members follow their victim.
        id: maybe(u, |u| u.int_in_range(0..=3u64))?,
        kind: maybe(u, |u| {
            if u.arbitrary()? {
                Ok(*u.choose(&["killed", "marked"])?)
            } else {
                word(u)
            }
        })?,
        constraint: maybe(u, text)?,
        memcg,
        memcg_bytes,
        memcg_limit_bytes: u.arbitrary()?,
        memcg_usage_bytes: u.arbitrary()?,
        global: u.arbitrary()?,
        group_kill: u.arbitrary()?,
        group_memcg,
        group_memcg_bytes,
        memcg_stat: maybe(u, |u| {
            Ok(MemcgStat {
                anon_bytes: u.arbitrary()?,
                file_bytes: u.arbitrary()?,
                kernel_bytes: u.arbitrary()?,
                shmem_bytes: u.arbitrary()?,
                sock_bytes: u.arbitrary()?,
            })
        })?,
        top_tasks: maybe(u, |u| {
            (0..u.int_in_range(0..=5u8)?)
                .map(|_| {
                    let (comm, comm_bytes) = kernel(u)?;
                    Ok(TopTask {
                        pid: u.arbitrary()?,
                        comm: comm.unwrap_or_default(),
                        comm_bytes,
                        rss_bytes: u.arbitrary()?,
                    })
                })
                .collect()
        })?,
    })
}

/// The node and boot an event happened on.
fn host(u: &mut Unstructured) -> Result<Host> {
    Ok(Host {
        name: maybe(u, text)?,
        name_from: maybe(u, word)?,
        boot_id: maybe(u, text)?,
    })
}

/// A kill report. `facts` stays empty: no renderer reads it.
pub fn report(u: &mut Unstructured) -> Result<Report> {
    let (comm, raw_comm) = kernel(u)?;
    let (thread_comm, raw_thread_comm) = kernel(u)?;
    let (trigger_comm, raw_trigger_comm) = kernel(u)?;
    let (path, raw_path) = kernel(u)?;
    Ok(Report {
        schema: u.arbitrary()?,
        event: word(u)?,
        time: maybe(u, time)?,
        boot_ns: u.arbitrary()?,
        victim: Victim {
            pid: u.arbitrary()?,
            tid: u.arbitrary()?,
            ns_pid: u.arbitrary()?,
            comm,
            comm_bytes: raw_comm,
            thread_comm,
            thread_comm_bytes: raw_thread_comm,
            uid: u.arbitrary()?,
            oom_score_adj: u.arbitrary()?,
            rss_anon_bytes: byte_count(u)?,
            rss_file_bytes: byte_count(u)?,
            rss_shmem_bytes: byte_count(u)?,
            swap_bytes: u.arbitrary()?,
            total_vm_bytes: u.arbitrary()?,
            pgtables_bytes: u.arbitrary()?,
            is_container_init: u.arbitrary()?,
            ppid: u.arbitrary()?,
            parent_in_container: u.arbitrary()?,
            is_container_main: u.arbitrary()?,
        },
        trigger: Trigger {
            pid: u.arbitrary()?,
            tid: u.arbitrary()?,
            comm: trigger_comm,
            comm_bytes: raw_trigger_comm,
            cgroup_id: u.arbitrary()?,
        },
        cgroup: Cgroup {
            id: u.arbitrary()?,
            path,
            path_bytes: raw_path,
            mode: maybe(u, word)?,
        },
        container: maybe(u, container)?,
        oom: maybe(u, oom)?,
        source: word(u)?,
        past: u.arbitrary()?,
        host: maybe(u, host)?,
        facts: None,
    })
}

/// Who ended a container, with an untrusted sender and container name.
fn killed_by(u: &mut Unstructured) -> Result<KilledBy> {
    Ok(KilledBy {
        kind: maybe(u, word)?,
        signal: maybe(u, word)?,
        time: maybe(u, time)?,
        oom_id: u.arbitrary()?,
        sender: maybe(u, |u| {
            let (comm, comm_bytes) = kernel(u)?;
            Ok(Sender {
                pid: u.arbitrary()?,
                tid: u.arbitrary()?,
                comm: comm.unwrap_or_default(),
                comm_bytes,
                uid: u.arbitrary()?,
                host_process: u.arbitrary()?,
                container: maybe(u, |u| {
                    Ok(SenderContainer {
                        id: u.arbitrary()?,
                        name: u.arbitrary()?,
                    })
                })?,
                parent: maybe(u, |u| {
                    Ok(SenderParent {
                        pid: u.arbitrary()?,
                        comm: u.arbitrary()?,
                    })
                })?,
            })
        })?,
        after: maybe(u, |u| {
            Ok(EarlierSignal {
                signal: maybe(u, word)?,
                seconds_before: f64::from(u.arbitrary::<u32>()?) / 1000.0,
                ignored: u.arbitrary()?,
            })
        })?,
    })
}

/// A container exit, with the kill before it as the human line tells it.
pub fn exit(u: &mut Unstructured) -> Result<ContainerExit> {
    Ok(ContainerExit {
        schema: u.arbitrary()?,
        event: word(u)?,
        time: maybe(u, time)?,
        container: container(u)?,
        exit_code: u.arbitrary()?,
        runtime_oom_killed: u.arbitrary()?,
        restart_count: u.arbitrary()?,
        restarting: u.arbitrary()?,
        kills: (0..u.int_in_range(0..=8u8)?)
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?,
        killed_by: maybe(u, killed_by)?,
        runtime_oom_killed_reason: maybe(u, word)?,
        host: maybe(u, host)?,
        last_kill: maybe(u, |u| {
            let (comm, comm_bytes) = kernel(u)?;
            Ok(KillSummary {
                comm: comm.unwrap_or_default(),
                comm_bytes,
                pid: u.arbitrary()?,
                time: maybe(u, time)?,
                is_container_main: u.arbitrary()?,
            })
        })?,
    })
}

/// Every untrusted string in a report, for the escaping checks.
pub fn strings(report: &Report) -> Vec<&str> {
    let mut all = Vec::new();
    let v = &report.victim;
    all.extend(
        [
            &v.comm,
            &v.thread_comm,
            &report.trigger.comm,
            &report.cgroup.path,
        ]
        .into_iter()
        .flatten(),
    );
    if let Some(c) = &report.container {
        container_strings(c, &mut all);
    }
    if let Some(oom) = &report.oom {
        all.extend(
            [&oom.constraint, &oom.memcg, &oom.group_memcg]
                .into_iter()
                .flatten(),
        );
        all.extend(oom.top_tasks.iter().flatten().map(|t| &t.comm));
    }
    all.into_iter().map(String::as_str).collect()
}

pub fn container_strings<'a>(c: &'a Container, all: &mut Vec<&'a String>) {
    all.push(&c.id);
    all.extend(
        [&c.name, &c.image, &c.restart_policy, &c.main_command]
            .into_iter()
            .flatten(),
    );
    for (key, value) in c.labels.iter().flatten() {
        all.extend([key, value]);
    }
    if let Some(pod) = &c.pod {
        all.push(&pod.uid);
        all.extend([&pod.namespace, &pod.name].into_iter().flatten());
    }
}
