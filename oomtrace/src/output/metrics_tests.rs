use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime},
};

use super::*;
use oomtrace_core::report::{Container, OomContext, Pod};

fn metrics() -> Metrics {
    Metrics::new(
        BuildInfo {
            version: "9.9.9",
            backend: "ebpf",
            attach: "tp_btf",
        },
        Vec::new(),
        || Some(42),
    )
}

fn kill_in(name: Option<&str>, id: &str, labels: &[(&str, &str)]) -> Report {
    let mut report = oomtrace_core::testing::report();
    report.container = Some(Container {
        runtime: "docker",
        id: id.to_owned(),
        name: name.map(str::to_owned),
        image: Some("shop/web:1.2".into()),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        }),
        ..Container::default()
    });
    report
}

fn kinded(mut report: Report, kind: &'static str) -> Report {
    report.oom.get_or_insert_with(OomContext::default).kind = Some(kind);
    report
}

/// The sample lines of the exposition (no comments), for exact comparison.
fn samples(metrics: &Metrics) -> Vec<String> {
    metrics
        .render(false)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

const WEB: &str = r#"scope="container",container="shop-web-1",image="shop/web:1.2",compose_project="shop",compose_service="web",k8s_namespace="",k8s_pod="",k8s_container="""#;

#[test]
fn a_recreated_container_keeps_its_series() {
    let metrics = metrics();
    let compose = [
        ("com.docker.compose.project", "shop"),
        ("com.docker.compose.service", "web"),
    ];
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut first = kinded(kill_in(Some("shop-web-1"), "aaaa", &compose), "killed");
    first.time = Some(at);
    metrics.record_kill(&first, SystemTime::now());
    // Same name, new id: `docker compose up` recreated it.
    let mut second = kinded(kill_in(Some("shop-web-1"), "bbbb", &compose), "killed");
    second.time = Some(at + Duration::from_secs(60));
    metrics.record_kill(&second, SystemTime::now());
    let mut host = kinded(oomtrace_core::testing::report(), "marked");
    host.container = None;
    host.time = Some(at);
    metrics.record_kill(&host, SystemTime::now());

    let samples = samples(&metrics);
    let host_labels = r#"scope="host",container="",image="",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_container="""#;
    for want in [
        format!(r#"oomtrace_oom_kills_total{{{WEB},kind="killed"}} 2"#),
        format!(r#"oomtrace_oom_kills_total{{{host_labels},kind="marked"}} 1"#),
        format!("oomtrace_last_oom_kill_timestamp_seconds{{{WEB}}} 1700000060.0"),
        format!("oomtrace_last_oom_kill_timestamp_seconds{{{host_labels}}} 1700000000.0"),
        r#"oomtrace_events_dropped_total{reason="ring_buffer_full"} 0"#.to_owned(),
        "oomtrace_kernel_oom_kills_total 42".to_owned(),
        r#"oomtrace_build_info{version="9.9.9",backend="ebpf",attach="tp_btf"} 1"#.to_owned(),
    ] {
        assert!(samples.contains(&want), "no {want} in {samples:#?}");
    }
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.starts_with("oomtrace_oom_kills_total"))
            .count(),
        2,
        "{samples:#?}"
    );
    let text = metrics.render(false);
    for id in ["aaaa", "bbbb", "10390", "dd-worker"] {
        assert!(!text.contains(id), "{id} must not be a label: {text}");
    }
}

#[test]
fn openmetrics_when_asked_ends_with_eof() {
    let text = metrics().render(true);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE oomtrace_build info"), "{text}");
}

#[test]
fn pods_are_named_by_their_kubernetes_labels_not_the_kubelet_s_container_name() {
    let metrics = metrics();
    let mut report = kill_in(
        Some("k8s_app_api-7d9f_prod_0b1c-uid_3"),
        "cccc",
        &[("io.kubernetes.container.name", "app")],
    );
    if let Some(container) = report.container.as_mut() {
        container.pod = Some(Pod {
            uid: "0b1c-uid".into(),
            namespace: Some("prod".into()),
            name: Some("api-7d9f".into()),
            qos: Some("burstable"),
        });
    }
    metrics.record_kill(&report, SystemTime::now());
    let want = r#"oomtrace_oom_kills_total{scope="container",container="",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="prod",k8s_pod="api-7d9f",k8s_container="app",kind="killed"} 1"#;
    assert!(
        samples(&metrics).contains(&want.to_owned()),
        "{:#?}",
        samples(&metrics)
    );
}

#[test]
fn hostile_names_cannot_break_the_exposition() {
    let metrics = metrics();
    let evil = "x\"} 1\nevil_metric{a=\"b\\\r";
    metrics.record_kill(&kill_in(Some(evil), "dddd", &[]), SystemTime::now());
    for openmetrics in [false, true] {
        let text = metrics.render(openmetrics);
        assert!(
            text.contains(r#"container="x\"} 1\nevil_metric{a=\"b\\"#),
            "{text}"
        );
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("oomtrace_"),
                "a line not oomtrace's: {line:?}"
            );
        }
    }
}

#[test]
fn workloads_past_the_cap_fold_into_overflow() {
    let metrics = metrics();
    for n in 0..MAX_WORKLOADS + 10 {
        let name = format!("c{n}");
        metrics.record_kill(&kill_in(Some(&name), &name, &[]), SystemTime::now());
    }
    // A workload counted before the cap keeps counting in its own series.
    metrics.record_kill(&kill_in(Some("c0"), "c0-new", &[]), SystemTime::now());
    let long = "n".repeat(MAX_LABEL_BYTES + 1);
    metrics.record_kill(&kill_in(Some(&long), "long", &[]), SystemTime::now());
    let samples = samples(&metrics);
    let count = |name: &str| samples.iter().filter(|s| s.starts_with(name)).count();
    assert_eq!(count("oomtrace_oom_kills_total{"), MAX_WORKLOADS + 1);
    assert_eq!(
        count("oomtrace_last_oom_kill_timestamp_seconds{"),
        MAX_WORKLOADS + 1
    );
    let overflow = r#"oomtrace_oom_kills_total{scope="overflow",container="",image="",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_container="",kind="killed"} 11"#;
    assert!(samples.contains(&overflow.to_owned()), "no overflow line");
    let c0 = r#"oomtrace_oom_kills_total{scope="container",container="c0",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_container="",kind="killed"} 2"#;
    assert!(samples.contains(&c0.to_owned()), "c0 lost its series");
}

#[test]
fn drops_match_the_summary_s_reasons_and_the_kernel_count_may_be_absent() {
    let stdout = Arc::new(AtomicU64::new(3));
    let file_a = Arc::new(AtomicU64::new(1));
    let file_b = Arc::new(AtomicU64::new(2));
    let metrics = Metrics::new(
        BuildInfo {
            version: "0",
            backend: "kmsg",
            attach: "",
        },
        vec![("output", file_a), ("output", file_b), ("stdout", stdout)],
        || None,
    );
    metrics.set_ring_buffer_full(5);
    metrics.set_unreadable(7);
    let samples = samples(&metrics);
    for (reason, n) in [
        ("ring_buffer_full", 5),
        ("unreadable", 7),
        ("not_written_stdout", 3),
        ("not_written_output", 3),
        ("not_written_journal", 0),
    ] {
        let want = format!(r#"oomtrace_events_dropped_total{{reason="{reason}"}} {n}"#);
        assert!(samples.contains(&want), "no {want} in {samples:#?}");
    }
    assert!(
        !samples.iter().any(|s| s.contains("kernel_oom_kills")),
        "no /proc/vmstat, no count: {samples:#?}"
    );
}

#[test]
fn only_get_and_head_of_slash_metrics_are_served() {
    let metrics = metrics();
    let cases = [
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n", 200),
        ("GET /metrics?x=1 HTTP/1.0", 200),
        ("HEAD /metrics HTTP/1.1", 200),
        ("GET / HTTP/1.1", 404),
        ("GET /metricsx HTTP/1.1", 404),
        ("POST /metrics HTTP/1.1", 405),
        ("GET /metrics", 400),
        ("GET /metrics HTTP/2.0", 505),
        ("\u{1}\u{2}", 400),
    ];
    for (head, status) in cases {
        let (got, _, _) = http::respond_for_test(head, &metrics);
        assert_eq!(got, status, "{head:?}");
    }
    let (_, content_type, response) = http::respond_for_test(
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        &metrics,
    );
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(response.ends_with("# EOF\n"), "{response}");
    let (_, content_type, response) = http::respond_for_test("HEAD /metrics HTTP/1.1", &metrics);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert!(
        response.ends_with("\r\n\r\n"),
        "HEAD has no body: {response}"
    );
}

#[test]
fn a_socket_is_served_and_an_oversized_head_refused() {
    use std::io::{Read as _, Write as _};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let addr = runtime.block_on(async {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let addr = listener.addr;
        listener.serve(metrics());
        addr
    });
    // Blocking, on the runtime's blocking pool: block_on drives the server meanwhile.
    let client = runtime.spawn_blocking(move || {
        let exchange = |request: &[u8]| {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(request).expect("send");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            response
        };
        let ok = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        // Exactly the cap, so the server reads it all: closing on unread bytes would reset
        // the connection and could discard the answer.
        huge.resize(http::MAX_HEAD, b'a');
        (ok, exchange(&huge))
    });
    let (ok, huge) = runtime.block_on(client).expect("the client");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("oomtrace_build_info{"), "{ok}");
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
}
