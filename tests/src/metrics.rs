//! oomtrace's Prometheus endpoint as a scraper sees it: its address, a plain HTTP GET with
//! deadlines, and the samples of its text exposition.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::SocketAddr,
    time::Duration,
};

/// The address `oomtrace --metrics-addr` serves, from its `serving Prometheus metrics at
/// http://ADDR/metrics` line on stderr (written before the ready line).
pub fn metrics_addr(stderr: &[String]) -> SocketAddr {
    stderr
        .iter()
        .find_map(|line| {
            line.strip_prefix("oomtrace: serving Prometheus metrics at http://")?
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("oomtrace named no metrics address: {stderr:?}"))
}

/// `GET PATH` over a plain TCP connection, which the server closes after its answer: the
/// status and the body. Every step has a deadline, so a stuck server fails the test.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::net::TcpStream;
    const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("send to {addr}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("read from {addr}{path}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/1.1 status: {head:?}"));
    (status, body.to_owned())
}

/// One sample of a Prometheus text exposition: its labels, unescaped, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of metric `name` in a Prometheus text exposition. Fails the test on a line it
/// cannot parse: a broken exposition is a bug.
pub fn samples(exposition: &str, name: &str) -> Vec<Sample> {
    let mut found = Vec::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let sample = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
        if sample.0 == name {
            found.push(sample.1);
        }
    }
    found
}

fn parse_sample(line: &str) -> Option<(&str, Sample)> {
    let end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(end);
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = after[close + 1..].trim_start_matches(',');
        }
    }
    let value = rest.trim().split(' ').next()?.parse().ok()?;
    Some((name, Sample { labels, value }))
}
