//! oomtrace's metrics as a real Prometheus scrapes them: a real OOM kill in a workload, and a
//! PromQL query through Prometheus' HTTP API that finds it under that workload's labels. The
//! alerting rules of deploy/prometheus-rules.yaml are loaded beside it and evaluated against
//! the real series: they must evaluate without error, and name only metrics and labels
//! oomtrace exposes.

use std::{collections::BTreeSet, path::Path, time::Duration};

use oomtrace_tests::{
    Containerd, IMAGE_REF, Pod, Qos, Sample, Tracer, containerd_ready,
    docker::{DD_SH, IDLE_MAIN, KILLED, MIB, about},
    http_get, metrics_addr, privileged,
    prometheus::{Prometheus, prometheus_bin},
    samples, serial,
};
use yaml_rust2::YamlLoader;

/// Scraped every second, evaluated every second, the first time 5 s after Prometheus starts: a
/// few seconds bound a sample's arrival.
const SCRAPE_WAIT: Duration = Duration::from_secs(30);
/// A kill is reported well within this once `docker exec` has returned.
const REPORT_WAIT: Duration = Duration::from_secs(10);

/// The workload the test OOM-kills, and the labels oomtrace must count its kill under: a
/// process in a Kubernetes-shaped containerd task (a pod in kubelet's cgroups, with the labels
/// kubelet and the CRI plugin set), in a containerd of the test's own that oomtrace is pointed
/// at, so that the series carries the pod's namespace and name and the container's name.
struct Workload {
    containerd: Containerd,
}

const NAMESPACE: &str = "metrics";
const POD: &str = "scraped";
const CONTAINER: &str = "app";

impl Workload {
    /// `None` where the runtime cannot run here (a skip, which fails under CI).
    fn ready(test: &str) -> Option<Self> {
        if !containerd_ready(test) {
            return None;
        }
        Some(Self {
            containerd: Containerd::start(),
        })
    }

    /// What oomtrace needs to be told to name the workload.
    fn tracer_args(&self) -> Vec<String> {
        vec![
            "--containerd-socket".to_owned(),
            self.containerd.socket().to_owned(),
        ]
    }

    /// A process of the workload OOM-killed, and oomtrace's report of it, named, seen. The
    /// pod and its task are removed once the kill is reported; its series stays.
    fn kill(&self, tracer: &Tracer) {
        let pod = Pod::build(Qos::Burstable, NAMESPACE, POD).create(&self.containerd);
        let task = pod.run_container(CONTAINER, Some(64 * MIB), IDLE_MAIN);
        assert_eq!(
            pod.exec(&task, DD_SH).code(),
            Some(KILLED),
            "dd in {CONTAINER} must be OOM-killed"
        );
        let seen = tracer.wait_for(1, REPORT_WAIT, |r| about(r, &task.id));
        assert_eq!(seen.len(), 1, "no report of the kill in {}", task.id);
        assert_eq!(seen[0]["container"]["name"], CONTAINER, "{}", seen[0]);
    }

    /// The labels of its kill's `oomtrace_oom_kills_total` series that are not empty: what
    /// Prometheus stores. `kind` aside. A pod's container is named by the pod's labels, never
    /// by `container`.
    fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("scope", "container".to_owned()),
            ("image", IMAGE_REF.to_owned()),
            ("k8s_namespace", NAMESPACE.to_owned()),
            ("k8s_pod", POD.to_owned()),
            ("k8s_container", CONTAINER.to_owned()),
        ]
    }
}

/// The names a rule file uses: `oomtrace_*` metrics, and the labels its expressions match and
/// group on and its annotations print, but the target's own (`job`, `instance`).
fn names_in_rules(rules: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(rules).expect("read the rules");
    let docs = YamlLoader::load_from_str(&text).expect("the rules are YAML");
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for group in docs[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let expr = rule["expr"].as_str().expect("an expression");
            for (at, _) in expr.match_indices("oomtrace_") {
                metrics.insert(ident(&expr[at..]));
            }
            // Matchers: `{a="x", b!~"y"}`.
            for selector in expr.split('{').skip(1) {
                let inside = selector.split('}').next().unwrap_or_default();
                labels.extend(inside.split(',').map(|m| ident(m.trim())));
            }
            // Grouping and matching: `without (kind)`, `on (job, instance)`.
            for word in ["by", "without", "on"] {
                for part in expr.split(&format!("{word} (")).skip(1) {
                    let inside = part.split(')').next().unwrap_or_default();
                    labels.extend(inside.split(',').map(|l| ident(l.trim())));
                }
            }
            if let Some(annotations) = rule["annotations"].as_hash() {
                for value in annotations.values().filter_map(|v| v.as_str()) {
                    for part in value.split("$labels.").skip(1) {
                        labels.insert(ident(part));
                    }
                }
            }
        }
    }
    labels.retain(|l| !l.is_empty() && l != "job" && l != "instance");
    (metrics, labels)
}

/// oomtrace scraped by Prometheus: the kill's series, queried with PromQL, has the workload's
/// labels and counts 1; the alerting rules, evaluated against the real series, are healthy
/// and use only what oomtrace exposes.
#[test]
fn prometheus_scrapes_a_kill_under_its_workload_s_labels() {
    let test = "prometheus_scrapes_a_kill_under_its_workload_s_labels";
    if !privileged(test) {
        return;
    }
    let Some(bin) = prometheus_bin(test) else {
        return;
    };
    let Some(workload) = Workload::ready(test) else {
        return;
    };
    let _serial = serial();
    let mut args = vec!["--metrics-addr".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(workload.tracer_args());
    let tracer = Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let target = metrics_addr(&tracer.stderr_so_far());
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus-rules.yaml");
    let prometheus = Prometheus::start(&bin, target, &[rules.as_path()]);
    // Prometheus scrapes its targets first about 5 s after it starts (its scrape manager takes
    // new targets every 5 s): the kill, which oomtrace counts until it ends, is made meanwhile.
    workload.kill(&tracer);
    let wanted = workload.labels();
    let matchers: Vec<String> = wanted
        .iter()
        .map(|(label, value)| format!("{label}={value:?}"))
        .collect();
    let selector = format!(
        "oomtrace_oom_kills_total{{{},kind=\"killed\"}}",
        matchers.join(",")
    );
    let found = prometheus.wait_for(&selector, SCRAPE_WAIT, |s| !s.is_empty());
    assert_eq!(found.len(), 1, "one series for the kill: {found:#?}");
    let Sample { labels, value } = &found[0];
    assert_eq!(*value, 1.0, "{labels:?}");
    // The workload's labels and the target's, nothing else: an empty label is no label.
    let mut expected: BTreeSet<(&str, &str)> = wanted
        .iter()
        .map(|(label, value)| (*label, value.as_str()))
        .collect();
    let instance = target.to_string();
    expected.extend([
        ("__name__", "oomtrace_oom_kills_total"),
        ("kind", "killed"),
        ("job", "oomtrace"),
        ("instance", instance.as_str()),
    ]);
    let got: BTreeSet<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, expected);

    // The rules ran against these series: every one healthy, none in error (a many-to-many
    // match, a label set twice). Evaluated every second; wait for one evaluation after the kill.
    let healthy = |prometheus: &Prometheus| {
        let data = prometheus.api("rules");
        let rules: Vec<serde_json::Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (
            rules.len() == 4 && rules.iter().all(|r| r["health"] == "ok"),
            data,
        )
    };
    let deadline = std::time::Instant::now() + SCRAPE_WAIT;
    loop {
        let (ok, data) = healthy(&prometheus);
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rules are not all healthy: {data}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The kill in a pod fires the pod alert in this real Prometheus, for that pod.
    let firing = prometheus.wait_for(
        &format!(r#"ALERTS{{alertname="OOMKillInPod",k8s_pod="{POD}",alertstate="firing"}}"#),
        SCRAPE_WAIT,
        |s| !s.is_empty(),
    );
    assert_eq!(firing.len(), 1, "OOMKillInPod for {POD}: {firing:#?}");
    assert_eq!(
        firing[0].labels.get("k8s_namespace").map(String::as_str),
        Some(NAMESPACE)
    );

    // What the rules use, oomtrace exposes: each metric is in Prometheus now, each label in
    // oomtrace's own exposition (where empty ones are still written).
    let (metrics, labels) = names_in_rules(&rules);
    let stored: BTreeSet<String> = prometheus
        .query(r#"count by (__name__) ({__name__=~"oomtrace_.+"})"#)
        .into_iter()
        .filter_map(|s| s.labels.get("__name__").cloned())
        .collect();
    assert!(
        metrics.is_subset(&stored),
        "the rules use {:?}, which oomtrace does not expose",
        metrics.difference(&stored).collect::<Vec<_>>()
    );
    let (status, exposition) = http_get(target, "/metrics");
    assert_eq!(status, 200, "{exposition}");
    let exposed: BTreeSet<String> = metrics
        .iter()
        .flat_map(|m| samples(&exposition, m))
        .flat_map(|s| s.labels.into_keys())
        .collect();
    assert!(
        labels.is_subset(&exposed),
        "the rules use labels {:?}, which no metric they name has",
        labels.difference(&exposed).collect::<Vec<_>>()
    );

    tracer.stop().assert_success();
}
