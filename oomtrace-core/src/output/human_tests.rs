use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;

use super::*;
use crate::{
    kernel::cgroups::CgroupMode,
    report::{ContainerExit, KillSummary, MemcgStat, OomContext, Pod, TopTask},
    source::ebpf::decode,
    testing as fixtures,
};
use oomtrace_common::field;

const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
const MIB: u64 = 1 << 20;

fn utc() -> HumanView {
    HumanView::in_zone(TimeZone::UTC, false)
}

/// The fixture's kill time, `2026-11-22T04:47:30.033410Z`, and the same day for "now".
fn today() -> SystemTime {
    fixtures::report().time.unwrap() + Duration::from_secs(60)
}

fn render(view: &mut HumanView, report: &Report) -> String {
    let mut out = String::new();
    view.kill(report, today(), &mut out);
    out
}

fn seed0(is_main: bool) -> Report {
    let mut report = fixtures::report();
    report.victim.is_container_init = Some(is_main);
    report.victim.is_container_main = Some(is_main);
    report.victim.ppid = Some(20000);
    report.victim.parent_in_container = Some(false);
    report.victim.rss_file_bytes = Some(0);
    report.victim.rss_anon_bytes = Some(63 * MIB);
    report.trigger.pid = report.victim.pid;
    report.trigger.tid = report.victim.tid;
    report.oom = Some(OomContext {
        kind: Some("killed"),
        memcg: Some("/docker/4f2c".into()),
        memcg_limit_bytes: Some(64 * MIB),
        global: Some(false),
        ..OomContext::default()
    });
    report.container = Some(Container {
        runtime: "docker",
        id: ID.into(),
        name: Some("seed0".into()),
        main_pid: Some(10000),
        main_command: Some("sh".into()),
        memory_limit_bytes: Some(64 * MIB),
        ..Container::default()
    });
    report
}

#[test]
fn a_kill_in_a_container_is_facts_then_what_they_mean() {
    let line = render(&mut utc(), &seed0(false));
    assert_eq!(
        line,
        "04:47:30  seed0  dd (pid 10390, thread 10391)  rss 63.0 MiB  limit 64.0 MiB\n    \
         not the container's main process (that is sh, pid 10000); entered the container from \
         outside, as docker exec does\n"
    );
    let first = line.lines().next().unwrap();
    assert!(first.chars().count() <= 120, "{first}");
}

#[test]
fn the_main_process_says_the_restart_policy_as_facts() {
    let mut report = seed0(true);
    let container = report.container.as_mut().unwrap();
    container.restart_policy = Some("on-failure".into());
    container.restart_max_retries = Some(3);
    container.restart_count = Some(3);
    let mut view = utc();
    let line = render(&mut view, &report);
    assert!(
        line.ends_with(
            "    the container's main process (PID 1); restart policy on-failure with at most \
             3 retries, 3 restarts so far\n"
        ),
        "{line}"
    );
    assert!(!line.contains("restarts it"), "no forecast: {line}");
    // Kills repeat in one container: which one this is.
    report.time = report.time.map(|t| t + Duration::from_secs(40));
    let second = render(&mut view, &report);
    assert!(
        second
            .lines()
            .next()
            .unwrap()
            .ends_with("  2nd kill in 40 s"),
        "{second}"
    );
}

#[test]
fn an_init_shim_s_app_is_the_main_process() {
    let mut report = seed0(false);
    report.victim.is_container_main = Some(true);
    report.container.as_mut().unwrap().main_command = Some("docker-init".into());
    let line = render(&mut utc(), &report);
    assert!(
        line.contains("the container's main process, run by docker-init as PID 1"),
        "{line}"
    );
}

#[test]
fn a_parent_s_limit_and_the_trigger_are_said() {
    let mut report = seed0(false);
    report.container = None;
    report.cgroup.path = Some("/parent/child".into());
    let oom = report.oom.as_mut().unwrap();
    oom.memcg = Some("/parent".into());
    oom.memcg_limit_bytes = Some(32 * MIB);
    report.trigger.pid = Some(777);
    report.trigger.tid = Some(777);
    report.trigger.comm = Some("java".into());
    let line = render(&mut utc(), &report);
    assert_eq!(
        line,
        "04:47:30  cgroup /parent/child  dd (pid 10390, thread 10391)  rss 63.0 MiB  limit \
         32.0 MiB\n    limit of /parent hit, the victim lived in /parent/child; triggered by \
         java (pid 777)\n"
    );
}

#[test]
fn compose_and_pods_name_the_workload() {
    let mut report = seed0(false);
    let container = report.container.as_mut().unwrap();
    container.labels = Some(
        [
            ("com.docker.compose.project", "shop"),
            ("com.docker.compose.service", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    let line = render(&mut utc(), &report);
    assert!(
        line.starts_with("04:47:30  seed0 (compose shop/web)  dd"),
        "{line}"
    );
    report.container.as_mut().unwrap().pod = Some(Pod {
        uid: "0c6a".into(),
        namespace: Some("prod".into()),
        name: Some("web-7f9".into()),
        qos: Some("burstable"),
    });
    let line = render(&mut utc(), &report);
    assert!(
        line.starts_with("04:47:30  seed0 (pod prod/web-7f9)  dd"),
        "{line}"
    );
}

#[test]
fn a_group_kill_s_members_are_one_incident() {
    let mut chosen = seed0(true);
    let oom = chosen.oom.as_mut().unwrap();
    oom.id = Some(5);
    oom.group_kill = Some(false);
    let mut member = chosen.clone();
    member.victim.comm = Some("sleep".into());
    member.victim.pid = Some(10400);
    member.victim.tid = Some(10400);
    member.oom.as_mut().unwrap().group_kill = Some(true);
    let mut view = utc();
    render(&mut view, &chosen);
    assert_eq!(
        render(&mut view, &member),
        "  + sleep (pid 10400)  rss 63.0 MiB  killed with the rest of its memory.oom.group\n"
    );
}

#[test]
fn verbose_adds_the_breakdown_and_the_biggest_processes() {
    let mut report = seed0(false);
    let oom = report.oom.as_mut().unwrap();
    oom.memcg_stat = Some(MemcgStat {
        anon_bytes: Some(60 * MIB),
        file_bytes: Some(2 * MIB),
        kernel_bytes: Some(MIB),
        shmem_bytes: Some(0),
        sock_bytes: None,
    });
    oom.top_tasks = Some(vec![
        TopTask {
            pid: 10390,
            comm: "dd".into(),
            comm_bytes: None,
            rss_bytes: 63 * MIB,
        },
        TopTask {
            pid: 10000,
            comm: "sh".into(),
            comm_bytes: None,
            rss_bytes: 68 << 10,
        },
    ]);
    let mut view = HumanView::in_zone(TimeZone::UTC, true);
    let line = render(&mut view, &report);
    assert!(
        line.ends_with(
            "    memory: anon 60.0 MiB, file 2.0 MiB, kernel 1.0 MiB, shmem 0 B; biggest: dd \
             63.0 MiB (pid 10390), sh 68.0 KiB (pid 10000)\n"
        ),
        "{line}"
    );
    assert!(!render(&mut utc(), &report).contains("biggest"));
}

#[test]
fn a_marked_victim_and_a_global_oom_are_said() {
    let mut report = seed0(true);
    let oom = report.oom.as_mut().unwrap();
    oom.kind = Some("marked");
    oom.global = Some(true);
    oom.memcg = None;
    let line = render(&mut utc(), &report);
    assert!(line.contains("  system out of memory\n"), "{line}");
    assert!(line.contains("the kernel only marked it"), "{line}");
}

#[test]
fn what_is_not_known_is_left_out() {
    let mut event = fixtures::raw_event();
    event.fields = field::TID | field::THREAD_COMM | field::CGROUP_ID;
    let report = decode(&event, &fixtures::decoding(CgroupMode::V1)).unwrap();
    assert_eq!(
        render(&mut utc(), &report),
        "04:47:30  cgroup id 4242  dd-worker (tid 10391)\n"
    );
}

#[test]
fn a_container_exit_is_told_from_docker_s_facts() {
    let report = seed0(false);
    let killed = report.time.unwrap();
    let exit = ContainerExit {
        schema: 1,
        event: "container_exit",
        time: Some(killed + Duration::from_millis(4200)),
        container: report.container.clone().unwrap(),
        exit_code: Some(0),
        runtime_oom_killed: Some(true),
        restart_count: Some(0),
        restarting: Some(false),
        kills: vec![Some(5)],
        host: None,
        last_kill: Some(KillSummary::of(&report)),
    };
    let mut out = String::new();
    utc().exit(&exit, today(), &mut out);
    assert_eq!(
        out,
        "04:47:34  container seed0 exited 0 (Docker: OOMKilled=true) 4.2 s after dd (pid \
         10390) was OOM-killed; its main process survived the kill; 0 restarts so far\n"
    );
}

#[test]
fn a_restart_is_told_as_docker_states_it() {
    let report = seed0(true);
    let exit = |restarting, restart_count| ContainerExit {
        schema: 1,
        event: "container_exit",
        time: report.time,
        container: report.container.clone().unwrap(),
        exit_code: Some(137),
        runtime_oom_killed: Some(true),
        restart_count,
        restarting,
        kills: vec![Some(5)],
        host: None,
        last_kill: None,
    };
    let cases = [
        (
            Some(true),
            Some(2),
            "; Docker is restarting it (restart 2)\n",
        ),
        (Some(true), None, "; Docker is restarting it\n"),
        (Some(false), Some(3), "; 3 restarts so far\n"),
        (None, Some(1), "; 1 restart so far\n"),
        (None, None, "(Docker: OOMKilled=true)\n"),
    ];
    for (restarting, count, tail) in cases {
        let mut out = String::new();
        utc().exit(&exit(restarting, count), today(), &mut out);
        assert!(out.ends_with(tail), "{restarting:?} {count:?}: {out}");
    }
}

#[test]
fn a_restart_loop_s_end_is_docker_s_own_fact_and_only_when_its_state_says_so() {
    let report = seed0(true);
    let exit = |policy: Option<&str>, max, count, restarting, code| {
        let mut container = report.container.clone().unwrap();
        container.restart_policy = policy.map(str::to_owned);
        container.restart_max_retries = max;
        ContainerExit {
            schema: 1,
            event: "container_exit",
            time: report.time,
            container,
            exit_code: code,
            runtime_oom_killed: Some(true),
            restart_count: count,
            restarting,
            kills: vec![Some(5)],
            host: None,
            last_kill: None,
        }
    };
    let gave_up = "; Docker stopped restarting it: on-failure:3 used all 3 retries\n";
    let on_failure = Some("on-failure");
    let cases = [
        // Docker's state: not restarting, every retry used, after a failed run.
        (
            on_failure,
            Some(3),
            Some(3),
            Some(false),
            Some(137),
            gave_up,
        ),
        (on_failure, Some(3), Some(4), Some(false), Some(1), gave_up),
        (
            on_failure,
            Some(1),
            Some(1),
            Some(false),
            Some(137),
            "; Docker stopped restarting it: on-failure:1 used its 1 retry\n",
        ),
        // Retries left: a count, never what Docker will do.
        (
            on_failure,
            Some(3),
            Some(2),
            Some(false),
            Some(137),
            "; 2 restarts so far\n",
        ),
        // The last retry under way.
        (
            on_failure,
            Some(3),
            Some(3),
            Some(true),
            Some(137),
            "; Docker is restarting it (restart 3)\n",
        ),
        // Whether it restarts is not known, or exit 0 stops on-failure whatever the count.
        (
            on_failure,
            Some(3),
            Some(3),
            None,
            Some(137),
            "; 3 restarts so far\n",
        ),
        (
            on_failure,
            Some(3),
            Some(3),
            Some(false),
            Some(0),
            "; 3 restarts so far\n",
        ),
        (
            on_failure,
            Some(3),
            Some(3),
            Some(false),
            None,
            "; 3 restarts so far\n",
        ),
        // No maximum, or another policy: nothing is used up.
        (
            on_failure,
            Some(0),
            Some(3),
            Some(false),
            Some(137),
            "; 3 restarts so far\n",
        ),
        (
            Some("always"),
            Some(3),
            Some(3),
            Some(false),
            Some(137),
            "; 3 restarts so far\n",
        ),
        (
            None,
            None,
            Some(3),
            Some(false),
            Some(137),
            "; 3 restarts so far\n",
        ),
    ];
    for (policy, max, count, restarting, code, tail) in cases {
        let mut out = String::new();
        utc().exit(
            &exit(policy, max, count, restarting, code),
            today(),
            &mut out,
        );
        assert!(
            out.ends_with(tail),
            "{policy:?}:{max:?} count {count:?} restarting {restarting:?} exit {code:?}: {out}"
        );
        assert!(!out.contains("will"), "no forecast: {out}");
    }
}

#[test]
fn untrusted_strings_reach_the_terminal_escaped() {
    let mut report = seed0(false);
    report.victim.comm = Some("\x1b]0;pwned\x07evil".into());
    let container = report.container.as_mut().unwrap();
    container.name = Some("web\x1b[2Jx".into());
    container.main_command = Some("/bin/\u{202e}sh".into());
    let line = render(&mut utc(), &report);
    assert!(
        !line.chars().any(|c| c != '\n' && c.is_control()),
        "{line:?}"
    );
    assert!(line.contains("\\x1b]0;pwned\\x07evil"), "{line}");
    assert!(line.contains("web\\x1b[2Jx"), "{line}");
    assert!(line.contains("\\u{202e}sh"), "{line}");

    let mut report = fixtures::report();
    report.cgroup.path = Some("/a\u{fffd}b".into());
    report.cgroup.path_bytes = Some(b"/a\xffb".to_vec());
    let line = render(&mut utc(), &report);
    assert!(line.contains("cgroup /a\\xffb"), "{line}");
}

#[test]
fn ordinals() {
    for (n, want) in [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (102, "102nd"),
    ] {
        assert_eq!(ordinal(n), want);
    }
}

/// Issue 16: the kill line escaped a name's bytes that are not UTF-8, the "biggest" part
/// showed U+FFFD. Every line shows the same bytes the same way, live and read back from JSON.
#[test]
fn names_that_are_not_utf8_are_escaped_alike_on_every_line() {
    let mut report = fixtures::report();
    report.container = None;
    let name: &[u8] = b"\x1b[31mEV\xffIL";
    let lossy = String::from_utf8_lossy(name).into_owned();
    report.victim.comm = Some(lossy.clone());
    report.victim.comm_bytes = Some(name.to_vec());
    report.trigger.pid = Some(7);
    report.trigger.tid = Some(7);
    report.trigger.comm = Some("tr\u{fffd}g".into());
    report.trigger.comm_bytes = Some(b"tr\xfeg".to_vec());
    report.cgroup.path = Some("/a\u{fffd}/b".into());
    report.cgroup.path_bytes = Some(b"/a\xff/b".to_vec());
    report.oom = Some(OomContext {
        memcg: Some("/a\u{fffd}".into()),
        memcg_bytes: Some(b"/a\xfe".to_vec()),
        top_tasks: Some(vec![TopTask {
            pid: 10390,
            comm: lossy,
            comm_bytes: Some(name.to_vec()),
            rss_bytes: 63 * MIB,
        }]),
        ..OomContext::default()
    });
    let mut line = Vec::new();
    crate::output::json::write_line(&report, &mut line);
    let back: Report = serde_json::from_slice(&line).unwrap();

    for report in [&report, &back] {
        let shown = render(&mut HumanView::in_zone(TimeZone::UTC, true), report);
        let want = [
            "cgroup /a\\xff/b  \\x1b[31mEV\\xffIL (pid 10390, thread 10391)",
            // `/a\xfe` and `/a\xff` read alike as strings; as bytes they are two cgroups.
            "limit of /a\\xfe hit, the victim lived in /a\\xff/b",
            "triggered by tr\\xfeg (pid 7)",
            "biggest: \\x1b[31mEV\\xffIL 63.0 MiB (pid 10390)",
        ];
        for part in want {
            assert!(shown.contains(part), "no {part:?} in {shown}");
        }
        assert!(
            !shown
                .chars()
                .any(|c| (c != '\n' && c.is_control()) || c == '\u{fffd}'),
            "{shown:?}"
        );
    }

    let exit = ContainerExit {
        schema: 1,
        event: "container_exit",
        time: report.time,
        container: Container::default(),
        exit_code: Some(137),
        runtime_oom_killed: Some(true),
        restart_count: None,
        restarting: None,
        kills: vec![None],
        host: None,
        last_kill: Some(KillSummary::of(&back)),
    };
    let mut out = String::new();
    utc().exit(&exit, today(), &mut out);
    assert!(
        out.contains(" \\x1b[31mEV\\xffIL (pid 10390) was OOM-killed"),
        "{out}"
    );
}
