//! The line for a kill by a userspace OOM killer: who killed whom, with what signal.

use std::{fmt::Write as _, time::SystemTime};

use super::HumanView;
use crate::{
    attribution::{acted_on::ActedOn, userspace_killer::UserspaceOomKill},
    output::{
        escape::{visible, visible_bytes},
        format::{bytes, short_id},
    },
    report::exact,
};

impl HumanView {
    /// `22:00:36  userspace OOM kill: earlyoom (pid 300) sent SIGTERM to hog (pid 900) in
    /// container api; not in the kernel's count`
    pub fn userspace_kill(&mut self, kill: &UserspaceOomKill, now: SystemTime, out: &mut String) {
        self.time(kill.time, now, out);
        let _ = write!(
            out,
            "  userspace OOM kill: {} (pid {}) ",
            visible(&kill.killer.name),
            kill.killer.pid
        );
        if kill.killer.via_cgroup_kill {
            out.push_str("wrote cgroup.kill");
            if let Some(cgroup) = &kill.victim.cgroup_name {
                let _ = write!(out, " of {}", visible(cgroup));
            }
            out.push_str(", which sent ");
        } else {
            out.push_str("sent ");
        }
        out.push_str(kill.signal.unwrap_or("a signal"));
        out.push_str(" to ");
        let victim = &kill.victim;
        match &victim.comm {
            Some(comm) => {
                let comm = exact(comm, victim.comm_bytes.as_deref());
                let _ = write!(out, "{} (pid ", visible_bytes(comm));
            }
            None => out.push_str("pid ("),
        }
        let _ = write!(out, "{})", victim.pid.unwrap_or(victim.tid));
        if let Some(container) = &kill.container {
            let name = match &container.name {
                Some(name) => visible(name),
                None => visible(short_id(&container.id)),
            };
            let _ = write!(out, " in container {name}");
        }
        if let Some(acted_on) = &kill.acted_on {
            acted(acted_on, out);
        }
        out.push_str("; not in the kernel's count\n");
    }
}

/// What the killer's log said it acted on: earlyoom's `, with 45 of 481 MiB available (9.48%)
/// and 0 of 0 MiB swap free (0.00%), at or below its SIGTERM limits (memory 10.00%, swap
/// 10.00%)`; systemd-oomd's `, killing /system.slice/press.service for memory pressure 62.11%
/// over 50.00% on /system.slice for over 20 s`.
fn acted(acted_on: &ActedOn, out: &mut String) {
    if let Some(m) = &acted_on.memory {
        let _ = write!(
            out,
            ", with {} of {} MiB available ({:.2}%) and {} of {} MiB swap free ({:.2}%)",
            m.mem_avail_mib,
            m.mem_total_mib,
            m.mem_avail_percent,
            m.swap_free_mib,
            m.swap_total_mib,
            m.swap_free_percent
        );
    }
    if let Some(l) = &acted_on.limits {
        let _ = write!(
            out,
            ", at or below its {} limits (memory {:.2}%, swap {:.2}%)",
            visible(&l.signal),
            l.mem_percent,
            l.swap_percent
        );
    }
    if let Some(cgroup) = &acted_on.cgroup {
        let _ = write!(out, ", killing {}", visible(cgroup));
    }
    if let Some(s) = &acted_on.swap_used {
        let _ = write!(
            out,
            " for memory {} of {} and swap {} of {} used, both over {:.2}%",
            bytes(s.mem_used_bytes),
            bytes(s.mem_total_bytes),
            bytes(s.swap_used_bytes),
            bytes(s.swap_total_bytes),
            s.limit_percent
        );
    }
    if let Some(p) = &acted_on.pressure {
        let _ = write!(
            out,
            " for memory pressure {:.2}% over {:.2}% on {}",
            p.pressure_percent,
            p.limit_percent,
            visible(&p.monitored)
        );
        if let Some(seconds) = p.for_seconds {
            let _ = write!(out, " for over {seconds} s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{today, utc};
    use crate::attribution::{
        acted_on::{ActedOn, LimitsCrossed, MemoryFound, PressureFound, SwapUsed},
        killer::SenderContainer,
        userspace_killer::{UserspaceKiller, UserspaceOomKill, UserspaceVictim},
    };

    #[test]
    fn a_userspace_kill_says_who_killed_whom() {
        let kill =
            |via_cgroup_kill, container: Option<SenderContainer>, comm: &str| UserspaceOomKill {
                schema: 1,
                event: "userspace_oom_kill",
                time: Some(today() - std::time::Duration::from_secs(30)),
                boot_ns: Some(1),
                killer: UserspaceKiller {
                    name: "earlyoom".into(),
                    pid: 300,
                    uid: Some(0),
                    via_cgroup_kill,
                },
                signal: Some("SIGTERM"),
                victim: UserspaceVictim {
                    pid: Some(900),
                    tid: 900,
                    comm: Some(comm.into()),
                    comm_bytes: None,
                    cgroup_id: Some(7),
                    cgroup_name: Some("app.service".into()),
                },
                container,
                acted_on: None,
                host: None,
            };
        let api = SenderContainer {
            id: "ab".repeat(32),
            name: Some("api".into()),
        };
        let cases = [
            (
                kill(false, Some(api), "hog"),
                "userspace OOM kill: earlyoom (pid 300) sent SIGTERM to hog (pid 900) in container api; not in the kernel's count",
            ),
            (
                kill(true, None, "h\u{1b}[2Jog"),
                "userspace OOM kill: earlyoom (pid 300) wrote cgroup.kill of app.service, which sent SIGTERM to h\\x1b[2Jog (pid 900); not in the kernel's count",
            ),
        ];
        let mut acted = kill(false, None, "hog");
        acted.acted_on = Some(ActedOn {
            source: "earlyoom_log".into(),
            memory: Some(MemoryFound {
                mem_avail_mib: 45,
                mem_total_mib: 481,
                mem_avail_percent: 9.48,
                swap_free_mib: 0,
                swap_total_mib: 0,
                swap_free_percent: 0.0,
            }),
            limits: Some(LimitsCrossed {
                signal: "SIGTERM".into(),
                mem_percent: 10.0,
                swap_percent: 10.0,
            }),
            ..ActedOn::default()
        });
        let mut memory_only = acted.clone();
        memory_only.acted_on.as_mut().unwrap().limits = None;
        let oomd = |swap_used, pressure| {
            let mut kill = kill(true, None, "java");
            kill.killer.name = "systemd-oomd".into();
            kill.signal = Some("SIGKILL");
            kill.acted_on = Some(ActedOn {
                source: "systemd_oomd_log".into(),
                cgroup: Some("/system.slice/app.service".into()),
                swap_used,
                pressure,
                ..ActedOn::default()
            });
            kill
        };
        let pressure = oomd(
            None,
            Some(PressureFound {
                monitored: "/system.slice".into(),
                pressure_percent: 62.11,
                limit_percent: 50.0,
                for_seconds: Some(20.0),
            }),
        );
        let swap = oomd(
            Some(SwapUsed {
                mem_used_bytes: 8 << 30,
                mem_total_bytes: 8 << 30,
                swap_used_bytes: 1 << 30,
                swap_total_bytes: 2 << 30,
                limit_percent: 90.0,
            }),
            None,
        );
        let cases = cases.into_iter().chain([
            (
                acted,
                "userspace OOM kill: earlyoom (pid 300) sent SIGTERM to hog (pid 900), with 45 of 481 MiB available (9.48%) and 0 of 0 MiB swap free (0.00%), at or below its SIGTERM limits (memory 10.00%, swap 10.00%); not in the kernel's count",
            ),
            (
                memory_only,
                "userspace OOM kill: earlyoom (pid 300) sent SIGTERM to hog (pid 900), with 45 of 481 MiB available (9.48%) and 0 of 0 MiB swap free (0.00%); not in the kernel's count",
            ),
            (
                pressure,
                "userspace OOM kill: systemd-oomd (pid 300) wrote cgroup.kill of app.service, which sent SIGKILL to java (pid 900), killing /system.slice/app.service for memory pressure 62.11% over 50.00% on /system.slice for over 20 s; not in the kernel's count",
            ),
            (
                swap,
                "userspace OOM kill: systemd-oomd (pid 300) wrote cgroup.kill of app.service, which sent SIGKILL to java (pid 900), killing /system.slice/app.service for memory 8.0 GiB of 8.0 GiB and swap 1.0 GiB of 2.0 GiB used, both over 90.00%; not in the kernel's count",
            ),
        ]);
        for (kill, want) in cases {
            let mut out = String::new();
            utc().userspace_kill(&kill, today(), &mut out);
            assert_eq!(out, format!("04:48:00  {want}\n"));
        }
    }
}
