//! `--container`, `--pid` and `--comm`: which reports the operator asked to see. Kinds are
//! ANDed; values of one kind are ORed.

use crate::report::Report;

#[derive(Debug, Default)]
pub struct Filter {
    pub containers: Vec<String>,
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
}

impl Filter {
    pub fn is_active(&self) -> bool {
        !(self.containers.is_empty() && self.pids.is_empty() && self.comms.is_empty())
    }

    pub fn accepts(&self, report: &Report) -> bool {
        let v = &report.victim;
        let container = report.container.as_ref();
        let container_ok = self.containers.is_empty()
            || container.is_some_and(|c| {
                self.containers.iter().any(|wanted| {
                    let wanted = wanted.trim_start_matches('/');
                    c.name.as_deref() == Some(wanted)
                        || (!wanted.is_empty() && c.id.starts_with(wanted))
                })
            });
        let pid_ok = self.pids.is_empty()
            || self
                .pids
                .iter()
                .any(|&p| v.pid == Some(p) || v.tid == Some(p));
        let comm_ok = self.comms.is_empty()
            || self
                .comms
                .iter()
                .any(|c| v.comm.as_deref() == Some(c) || v.thread_comm.as_deref() == Some(c));
        container_ok && pid_ok && comm_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Container;

    fn report(container: Option<(&str, Option<&str>)>) -> Report {
        let mut report = crate::testing::report();
        report.container = container.map(|(id, name)| Container {
            runtime: "docker",
            id: id.to_owned(),
            name: name.map(str::to_owned),
            image: None,
            labels: None,
            main_pid: None,
            restart_policy: None,
            memory_limit_bytes: None,
            pod: None,
        });
        report
    }

    #[test]
    fn filters_by_container_pid_and_comm() {
        let filter = |containers: &[&str], pids: &[u32], comms: &[&str]| Filter {
            containers: containers.iter().map(|s| s.to_string()).collect(),
            pids: pids.to_vec(),
            comms: comms.iter().map(|s| s.to_string()).collect(),
        };
        let web = report(Some(("4f2c5e6a7b8c", Some("web"))));
        let host = report(None);
        let cases = [
            (filter(&[], &[], &[]), &web, true),
            (filter(&["web"], &[], &[]), &web, true),
            (filter(&["/web"], &[], &[]), &web, true),
            (filter(&["4f2c"], &[], &[]), &web, true),
            (filter(&["db", "4f2c"], &[], &[]), &web, true),
            (filter(&["db"], &[], &[]), &web, false),
            (filter(&["web"], &[], &[]), &host, false),
            (filter(&[""], &[], &[]), &web, false),
            (filter(&[], &[10390], &[]), &host, true),
            (filter(&[], &[10391], &[]), &host, true),
            (filter(&[], &[1], &[]), &host, false),
            (filter(&[], &[], &["dd"]), &host, true),
            (filter(&[], &[], &["dd-worker"]), &host, true),
            (filter(&[], &[], &["python3"]), &host, false),
            (filter(&["web"], &[10390], &["python3"]), &web, false),
        ];
        for (i, (filter, report, want)) in cases.iter().enumerate() {
            assert_eq!(filter.accepts(report), *want, "case {i}: {filter:?}");
        }
    }
}
