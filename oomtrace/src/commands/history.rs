//! `oomtrace history`: past OOM kills, oldest first: the journal a watch kept merged with
//! the kernel log, one entry per kill, including the ones from before any watch ran. Docker
//! is asked about the containers it still knows, as a watch would; a container long removed
//! keeps the name the journal recorded.

use std::{io::Write as _, process::ExitCode, time::SystemTime};

use crate::{
    attribution::{cgroup_path, docker, enrich},
    cli::Args,
    commands::watch::journal_path,
    output::{filter::Filter, human::HumanView, json},
    report::Report,
    source::past,
};

pub fn run(args: &Args) -> ExitCode {
    let now = SystemTime::now();
    let since = args.since.map(|since| since.moment(now));
    let journal = journal_path(args);
    let past = past::gather(journal.as_deref(), since);
    let mut kills = past.kills;
    ask_docker(args, &mut kills);

    let filter = Filter {
        containers: args.containers.clone(),
        pids: args.pids.clone(),
        comms: args.comms.clone(),
    };
    let total = kills.len();
    kills.retain(|report| filter.accepts(report));

    let mut out = Vec::with_capacity(kills.len() * 512);
    let mut human = HumanView::new(args.verbose);
    let mut line = String::new();
    for report in &kills {
        if args.json {
            json::write_line(report, &mut out);
        } else {
            line.clear();
            human.kill(report, now, &mut line);
            out.extend_from_slice(line.as_bytes());
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            crate::say!("cannot write to stdout: {err}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    for gap in &past.gaps {
        crate::say!("{gap}");
    }
    let shown = kills.len();
    let filtered = if filter.is_active() {
        format!(", {} filtered out", total - shown)
    } else {
        String::new()
    };
    let sources = if past.journal.is_read() {
        "the journal and the kernel log"
    } else {
        "the kernel log"
    };
    crate::say!(
        "{shown} OOM kill{} in {sources}{filtered}",
        crate::output::human::plural(shown as u64)
    );
    ExitCode::SUCCESS
}

/// What Docker says about the containers it still knows, for reports without names; and
/// for `--container NAME`, which container that name is now.
pub fn ask_docker(args: &Args, kills: &mut [Report]) {
    if args.no_enrich {
        return;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let Ok(socket) = docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref())
    else {
        return;
    };
    let mut ids: Vec<String> = kills
        .iter()
        .filter_map(|r| match &r.container {
            Some(c) => (c.runtime == "docker").then(|| c.id.clone()),
            // `--cgroup-parent`: Docker's if Docker says so.
            None => r
                .cgroup
                .path
                .as_deref()
                .and_then(cgroup_path::unclaimed_id)
                .map(str::to_owned),
        })
        .collect();
    ids.sort();
    ids.dedup();
    let Some(cache) = docker_answer(&socket, &ids, &args.containers) else {
        return;
    };
    for report in kills.iter_mut() {
        enrich::fill_missing(report, &cache);
    }
}

/// Docker's answer, within a few seconds; `None` (said once) if it does not answer.
pub fn docker_answer(
    socket: &std::path::Path,
    ids: &[String],
    names: &[String],
) -> Option<docker::Cache> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let answer = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            docker::inspect_now(socket, ids, names),
        )
        .await
        .unwrap_or_else(|_| Err(format!("{} did not answer within 10 s", socket.display())))
    });
    match answer {
        Ok(cache) => Some(cache),
        Err(why) => {
            crate::say!(
                "Docker does not answer ({why}): containers are named from the journal only"
            );
            None
        }
    }
}
