//! A real Prometheus for the end-to-end tests: Debian's `prometheus`, started on a free
//! loopback port with a configuration and storage of its own, scraping the one target a test
//! names every second, and killed when dropped; PromQL instant queries through its HTTP API,
//! polled until they give what the test waits for. Also where promtool and prometheus are
//! found, as `cargo xtask test` installs them.
//!
//! The Prometheus a package installation may have started (on :9090) is never used.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    metrics::Sample,
    preconditions::skip,
    process::KillOnDrop,
    scratch::{TempDir, temp_dir},
};

/// Prometheus answers `/-/ready` a second or two after it starts; this bounds a hung start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Any one request to its API.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts on a port another process took between our choosing it and Prometheus binding it.
const PORT_ATTEMPTS: usize = 5;
/// Between two polls of a query: a scrape and a rule evaluation each take a second.
const POLL_PACE: Duration = Duration::from_millis(100);

/// `program` on PATH, or in the directories Debian installs programs in.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `program` from Debian's `prometheus` package; `None` when it is missing, which [`skip`]s
/// `test` (and fails it under CI): `cargo xtask test` installs the package when missing.
fn from_the_package(test: &str, program: &str) -> Option<PathBuf> {
    let found = find_program(program);
    if found.is_none() {
        skip(
            test,
            &format!(
                "{program} is not installed: `cargo xtask test` installs Debian's prometheus, or `apt-get install prometheus`"
            ),
        );
    }
    found
}

/// promtool, or `None` with `test` skipped; see [`from_the_package`].
pub fn promtool(test: &str) -> Option<PathBuf> {
    from_the_package(test, "promtool")
}

/// The prometheus server, or `None` with `test` skipped; see [`from_the_package`].
pub fn prometheus_bin(test: &str) -> Option<PathBuf> {
    from_the_package(test, "prometheus")
}

/// A Prometheus of the test's own, killed and its storage removed when dropped.
pub struct Prometheus {
    // Dropped first: the process ends before its directory goes.
    _child: KillOnDrop,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts `bin` scraping `target`'s `/metrics` every second, with `rule_files` evaluated
    /// every second, and waits until it is ready.
    pub fn start(bin: &Path, target: SocketAddr, rule_files: &[&Path]) -> Self {
        let dir = temp_dir("prometheus", 0o700);
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {:?}\n", p.display().to_string()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: oomtrace\n    static_configs:\n      - targets: [\"{target}\"]\n",
            if rules.is_empty() {
                "  []\n".to_owned()
            } else {
                rules.concat()
            }
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let log_file = dir.path().join("prometheus.log");
        for _ in 0..PORT_ATTEMPTS {
            let addr = free_port();
            // A file, not a pipe: nothing has to read it for Prometheus to go on logging.
            let log = File::create(&log_file).expect("create the log");
            let child = Command::new(bin)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut child = KillOnDrop(child);
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok((200, _)) = get(addr, "/-/ready") {
                    return Self {
                        _child: child,
                        addr,
                        dir,
                    };
                }
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("prometheus exited ({status}) before it was ready:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus was not ready within {READY_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
                std::thread::sleep(POLL_PACE);
            }
        }
        panic!("prometheus found no free port in {PORT_ATTEMPTS} attempts")
    }

    /// What Prometheus logged so far, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/PATH`: its `data`. Fails the test on an answer that is not a success.
    pub fn api(&self, path: &str) -> Value {
        let path = format!("/api/v1/{path}");
        let (status, body) = get(self.addr, &path)
            .unwrap_or_else(|e| panic!("GET {path} from prometheus: {e}\n{}", self.log()));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        assert!(
            status == 200 && answer["status"] == "success",
            "GET {path}: {status} {answer}"
        );
        answer["data"].clone()
    }

    /// The instant vector `promql` gives now: each sample's labels (`__name__` among them,
    /// where the expression keeps it) and value.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let data = self.api(&format!("query?query={}", percent_encoded(promql)));
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        let samples = data["result"].as_array().cloned().unwrap_or_default();
        samples
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_else(BTreeMap::new);
                // [time, "value"]: Prometheus writes values as strings, for NaN and Inf.
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{promql}: a sample without a value: {s}"));
                Sample { labels, value }
            })
            .collect()
    }

    /// Runs `promql` until `enough` holds for what it gives, or fails the test after
    /// `timeout`, naming the last answer and how Prometheus' scrapes went.
    pub fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        enough: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql);
            if enough(&samples) {
                return samples;
            }
            if Instant::now() >= deadline {
                let targets = self.api("targets");
                panic!(
                    "after {timeout:?}, `{promql}` gives {samples:#?}\ntargets: {targets}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_PACE);
        }
    }
}

/// A loopback port nothing listens on now. Another process may take it before Prometheus
/// binds it: [`Prometheus::start`] tries another then.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// `GET PATH` as HTTP/1.0, so Go's server sends the body whole, not chunked, and closes the
/// connection at its end: the status and body, or why there were none.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::other(format!("not an HTTP answer: {response:?}"));
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// `text` as a URL's query value: every byte but the unreserved ones as `%XX`.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_encoded;

    #[test]
    fn promql_is_encoded_whole() {
        assert_eq!(
            percent_encoded(r#"up{job="a b"} > 0"#),
            "up%7Bjob%3D%22a%20b%22%7D%20%3E%200"
        );
    }
}
