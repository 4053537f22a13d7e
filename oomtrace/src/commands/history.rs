//! `oomtrace history`: the OOM kills still in the kernel's log buffer, including the ones
//! from before oomtrace started, which is what an on-call engineer needs first.

use std::process::ExitCode;

use crate::{
    attribution::enrich,
    kernel::cgroups::CgroupMode,
    output::{human, json},
    report::Report,
    source::kmsg::device as kmsg_source,
};

pub fn run(args: &crate::cli::Args) -> ExitCode {
    let json = args.json;
    let (kills, lost) = match kmsg_source::logged_kills() {
        Ok(found) => found,
        Err(err) => {
            crate::say!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let clock = kmsg_source::log_clock();
    let cgroups = CgroupMode::of_host();
    let oldest = args.since.map(|since| since.moment(clock.realtime));
    let reports: Vec<Report> = kills
        .iter()
        .map(|kill| {
            let mut report = kmsg_source::report_from_kill(kill, &clock, cgroups);
            // Containers in the log may be long gone: the path alone names them.
            enrich::annotate(&mut report, None);
            report
        })
        .filter(|report| oldest.is_none_or(|oldest| report.time.is_some_and(|t| t >= oldest)))
        .collect();

    let mut out = Vec::with_capacity(reports.len() * 512);
    let mut line = String::new();
    let mut human = human::HumanView::new(false);
    let now = std::time::SystemTime::now();
    for report in &reports {
        if json {
            json::json_line(report, &mut out);
        } else {
            line.clear();
            human.kill(report, now, &mut line);
            out.extend_from_slice(line.as_bytes());
        }
    }
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            crate::say!("cannot write to stdout: {err}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if lost > 0 {
        crate::say!(
            "{lost} log records were overwritten while being read; kills among them are missing"
        );
    }
    crate::say!("{} OOM kills in the kernel log", reports.len());
    ExitCode::SUCCESS
}
