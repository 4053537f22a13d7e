//! How a run a watch recorded the exit of ended, and what Docker's OOMKilled flag meant that
//! time: who sent the signal the main process died of (`killed_by`), and why the flag said
//! what it said (`runtime_oom_killed_reason`), in the exit line's own words. Where the exit
//! says neither, nothing is said: the code and the flag stand alone.

use std::fmt::Write as _;

use super::evidence::Show;
use oomtrace_core::{
    attribution::killer::exit_signal,
    output::human::{OOM_KILLER_DISABLED, named_victim, who_ended},
    report::{ContainerExit, KillSummary, Report},
};

/// The kills the exit names by `oom.id`, among `kills`, oldest first; `None` unless each is
/// found.
fn kills_of<'a>(exit: &ContainerExit, kills: &'a [Report]) -> Option<Vec<&'a Report>> {
    exit.kills
        .iter()
        .map(|id| {
            let id = (*id)?;
            kills
                .iter()
                .find(|r| r.oom.as_ref().and_then(|o| o.id) == Some(id))
        })
        .collect()
}

/// One sentence, or two, ending with a period; empty where the exit tells nothing more than
/// its code and flag. `kills`: the container's kills, where the exit's are looked up.
pub fn told(exit: &ContainerExit, kills: &[Report], show: Show) -> String {
    let killer = exit.killed_by.as_ref();
    let oom_killer = killer.filter(|k| k.kind == Some("oom_killer"));
    let main_killed = oom_killer.map(|k| {
        let mut text = String::from("the OOM killer killed the main process");
        let kill = k.oom_id.and_then(|id| {
            kills
                .iter()
                .find(|r| r.oom.as_ref().and_then(|o| o.id) == Some(id))
        });
        if let Some(kill) = kill {
            text.push_str(", ");
            named_victim(&KillSummary::of(kill), show, &mut text);
        }
        text + ", which ended the container"
    });
    let ended = match (killer, exit.exit_code) {
        (Some(k), _) if oom_killer.is_none() => {
            let mut text = String::from("the container was ended by ");
            who_ended(k, exit.container.runtime, show, &mut text);
            Some(text)
        }
        (None, Some(code)) if exit_signal(code).is_none() => Some(format!(
            "the main process itself exited with code {code}: no signal killed it"
        )),
        _ => None,
    };
    let then = |text: String| match &ended {
        Some(ended) => format!("{text}; {ended}."),
        None => text + ".",
    };
    match (exit.runtime_oom_killed_reason, main_killed) {
        (Some("earlier_oom_kill"), _) => then(format!(
            "Docker said OOMKilled=true because {} OOM-killed earlier in the run",
            earlier(exit, kills, show)
        )),
        (Some("oom_killer_disabled"), _) => then(format!(
            "Docker said OOMKilled=true though nothing was killed: {OOM_KILLER_DISABLED}"
        )),
        (Some("oom_kill_ended_it"), Some(main)) => {
            format!("Docker said OOMKilled=true because {main}.")
        }
        (Some("oom_kill_not_flagged"), Some(main)) => {
            format!("An OOM kill Docker did not flag: {main}, yet Docker said OOMKilled=false.")
        }
        (_, Some(main)) => capitalized(&main) + ".",
        (_, None) => ended.map(|e| capitalized(&e) + ".").unwrap_or_default(),
    }
}

/// `dd (pid 4242) was`, `3 processes, the last dd (pid 4242), were`, `a process was`.
fn earlier(exit: &ContainerExit, kills: &[Report], show: Show) -> String {
    let n = exit.kills.len();
    let last = kills_of(exit, kills).and_then(|k| k.last().copied());
    let mut text = String::new();
    match (n, last) {
        (1, Some(last)) => {
            named_victim(&KillSummary::of(last), show, &mut text);
            text.push_str(" was");
        }
        (_, Some(last)) => {
            let _ = write!(text, "{n} processes, the last ");
            named_victim(&KillSummary::of(last), show, &mut text);
            text.push_str(", were");
        }
        (0 | 1, None) => text.push_str("a process was"),
        (_, None) => {
            let _ = write!(text, "{n} processes were");
        }
    }
    text
}

/// Every sentence here begins with a word of ours, never a process's name.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, exit, kill};
    use super::*;
    use oomtrace_core::{
        output::escape::visible_bytes,
        report::{EarlierSignal, KilledBy, Sender},
    };

    fn by(kind: Option<&'static str>, signal: &'static str, comm: &str) -> KilledBy {
        KilledBy {
            kind,
            signal: Some(signal),
            time: at(5),
            oom_id: None,
            sender: Some(Sender {
                pid: 5120,
                tid: 5120,
                comm: comm.into(),
                uid: Some(0),
                host_process: Some(true),
                ..Sender::default()
            }),
            after: None,
        }
    }

    fn oom_killer(oom_id: u64) -> KilledBy {
        KilledBy {
            kind: Some("oom_killer"),
            signal: Some("SIGKILL"),
            time: at(0),
            oom_id: Some(oom_id),
            sender: None,
            after: None,
        }
    }

    #[test]
    fn each_exit_says_who_ended_it_and_what_docker_s_flag_meant() {
        let mut child = kill(4242, 0, Some(false));
        child.oom.as_mut().unwrap().id = Some(7);
        let mut child_b = kill(4243, 1, Some(false));
        child_b.oom.as_mut().unwrap().id = Some(8);
        let mut main = kill(4100, 2, Some(true));
        main.oom.as_mut().unwrap().id = Some(9);
        main.victim.comm = Some("java\x1b[2J".into());
        let kills = vec![child, child_b, main];
        let stop = KilledBy {
            after: Some(EarlierSignal {
                signal: Some("SIGTERM"),
                seconds_before: 10.0,
                ignored: true,
            }),
            ..by(Some("runtime"), "SIGKILL", "runc")
        };
        // (what, exit code, flag, oom ids, killed_by, reason, the sentences)
        type Row = (
            &'static str,
            i64,
            Option<bool>,
            Vec<Option<u64>>,
            Option<KilledBy>,
            Option<&'static str>,
            &'static str,
        );
        let rows: Vec<Row> = vec![
            (
                "a child killed, then docker kill",
                137,
                Some(true),
                vec![Some(7)],
                Some(by(Some("runtime"), "SIGKILL", "runc")),
                Some("earlier_oom_kill"),
                "Docker said OOMKilled=true because dd (pid 4242) was OOM-killed earlier in the run; the container was ended by SIGKILL from the runtime (runc, pid 5120), as docker kill does.",
            ),
            (
                "seed 000: a child killed, the main process exits 0",
                0,
                Some(true),
                vec![Some(7), Some(8)],
                None,
                Some("earlier_oom_kill"),
                "Docker said OOMKilled=true because 2 processes, the last dd (pid 4243), were OOM-killed earlier in the run; the main process itself exited with code 0: no signal killed it.",
            ),
            (
                "a kill the journal no longer holds",
                0,
                Some(true),
                vec![Some(99)],
                None,
                Some("earlier_oom_kill"),
                "Docker said OOMKilled=true because a process was OOM-killed earlier in the run; the main process itself exited with code 0: no signal killed it.",
            ),
            (
                "the OOM killer disabled, then docker stop",
                137,
                Some(true),
                vec![],
                Some(stop.clone()),
                Some("oom_killer_disabled"),
                "Docker said OOMKilled=true though nothing was killed: the container hit its memory limit with the OOM killer disabled; the container was ended by SIGKILL from the runtime (runc, pid 5120) 10.0 s after its SIGTERM, which PID 1 ignored, as docker stop does when its timeout runs out.",
            ),
            (
                "the main process OOM-killed",
                137,
                Some(true),
                vec![Some(9)],
                Some(oom_killer(9)),
                Some("oom_kill_ended_it"),
                "Docker said OOMKilled=true because the OOM killer killed the main process, java\\x1b[2J (pid 4100), which ended the container.",
            ),
            (
                "an OOM kill Docker did not flag",
                137,
                Some(false),
                vec![Some(9)],
                Some(oom_killer(9)),
                Some("oom_kill_not_flagged"),
                "An OOM kill Docker did not flag: the OOM killer killed the main process, java\\x1b[2J (pid 4100), which ended the container, yet Docker said OOMKilled=false.",
            ),
            (
                "containerd: no flag, the main process OOM-killed, its kill not found",
                137,
                None,
                vec![Some(10)],
                Some(oom_killer(10)),
                None,
                "The OOM killer killed the main process, which ended the container.",
            ),
            (
                "docker stop, no OOM at all",
                137,
                Some(false),
                vec![],
                Some(stop),
                None,
                "The container was ended by SIGKILL from the runtime (runc, pid 5120) 10.0 s after its SIGTERM, which PID 1 ignored, as docker stop does when its timeout runs out.",
            ),
            (
                "a userspace OOM killer",
                137,
                Some(false),
                vec![],
                Some(by(Some("userspace_oom_killer"), "SIGKILL", "earlyoom")),
                None,
                "The container was ended by SIGKILL from the userspace OOM killer earlyoom (pid 5120, uid 0).",
            ),
            (
                "a sender whose kind is not told, its name hostile",
                137,
                Some(false),
                vec![],
                Some(by(None, "SIGKILL", "ru\nnc")),
                None,
                "The container was ended by SIGKILL from ru\\x0anc (pid 5120, uid 0), a process on the host.",
            ),
            (
                "a plain exit",
                1,
                Some(false),
                vec![],
                None,
                None,
                "The main process itself exited with code 1: no signal killed it.",
            ),
            // A signal's code, its sender not recorded: nothing is guessed.
            (
                "137 from nobody known",
                137,
                Some(true),
                vec![],
                None,
                None,
                "",
            ),
        ];
        for (what, code, flag, ids, killer, reason, want) in rows {
            let mut exit = exit(5, code, 0, 0);
            exit.runtime_oom_killed = flag;
            exit.kills = ids;
            exit.killed_by = killer;
            exit.runtime_oom_killed_reason = reason;
            assert_eq!(told(&exit, &kills, visible_bytes), want, "{what}");
        }
    }
}
