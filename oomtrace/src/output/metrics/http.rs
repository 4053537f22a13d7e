//! The smallest HTTP/1.1 server Prometheus can scrape: `GET /metrics` (or `HEAD`), one
//! request per connection, nothing else. A web framework would outweigh the rest of oomtrace.
//!
//! Whoever can reach the port is untrusted: a request's head is capped in size and time, and
//! the connections open at once are capped. Past the cap, the connection that has waited
//! longest without sending its whole request is dropped to make room, so clients that connect
//! and stall, however many and however often renewed, cannot keep a scrape out; and neither
//! they nor a flood can hold more than a bounded amount of memory.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
    time::timeout,
};

use super::Metrics;

/// A request head (request line and headers) larger than this is refused: Prometheus sends
/// a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request head, which Prometheus sends at once, and to
/// take the response.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once. A scrape takes milliseconds; the rest is room for clients that
/// stall, each holding a few KiB at most (its task, its head so far): about 1.5 MiB in all.
pub const MAX_CONNECTIONS: usize = 512;
/// After a failed accept (out of file descriptors), how long to wait before the next: the
/// kernel gives no notification of a descriptor coming free.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound socket, ready to serve once the metrics exist.
pub struct Listener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// Binds `addr` (port 0: any free port), or says in one sentence why it cannot.
pub async fn bind(addr: SocketAddr) -> Result<Listener, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve metrics at {addr}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot serve metrics at {addr}: {e}"))?;
    Ok(Listener { listener, addr })
}

impl Listener {
    /// Serves `metrics` until the event loop ends, saying where; the event loop keeps the
    /// handle it returns to record into.
    pub fn serve(self, metrics: Metrics) -> Arc<Metrics> {
        let metrics = Arc::new(metrics);
        crate::say!("serving Prometheus metrics at http://{}/metrics", self.addr);
        tokio::spawn(accept_loop(self.listener, Arc::clone(&metrics)));
        metrics
    }
}

/// The connections being served, for the accept loop to keep under [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    /// Those still sending their request head, oldest first, by id: the ones to drop when
    /// the server is full. A connection leaves it once its head is read, so an answer being
    /// written is never cut off.
    reading: Mutex<VecDeque<(u64, AbortHandle)>>,
}

impl Connections {
    fn reading(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, AbortHandle)>> {
        // A panic while holding it cannot leave the queue half-changed: recover it.
        self.reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for one more: true if there is room, or the longest-stalled connection was
    /// dropped for it; false when every connection is being answered.
    fn make_room(&self) -> bool {
        if self.open.load(Ordering::Acquire) < MAX_CONNECTIONS {
            return true;
        }
        let longest_stalled = self.reading().pop_front();
        match longest_stalled {
            Some((_, stalled)) => {
                stalled.abort();
                true
            }
            None => false,
        }
    }

    fn head_read(&self, id: u64) {
        self.reading().retain(|(queued, _)| *queued != id);
    }
}

/// One open connection's share of [`Connections`], given back however its task ends,
/// aborted included.
struct Open {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.connections.head_read(self.id);
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let connections = Arc::new(Connections::default());
    let mut failing = false;
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(err) => {
                if !failing {
                    failing = true;
                    crate::say!("cannot accept a metrics connection: {err}");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Every connection is being answered: dropping the stream closes it, which tells a
        // busy server's client fastest.
        if !connections.make_room() {
            continue;
        }
        connections.open.fetch_add(1, Ordering::AcqRel);
        let id = next_id;
        next_id += 1;
        let open = Open {
            connections: Arc::clone(&connections),
            id,
        };
        let metrics = Arc::clone(&metrics);
        // Queued under the lock the task takes to leave the queue, so it cannot leave first.
        let mut reading = connections.reading();
        let task = tokio::spawn(async move {
            // A client that goes away or stalls is its own problem, never the tracer's.
            let _ = serve_one(stream, &metrics, &open).await;
        });
        reading.push_back((id, task.abort_handle()));
    }
}

async fn serve_one(mut stream: TcpStream, metrics: &Metrics, open: &Open) -> io::Result<()> {
    let head = timeout(READ_TIMEOUT, read_head(&mut stream)).await;
    open.connections.head_read(open.id);
    let response = match head {
        Ok(Ok(Some(head))) => respond(&head, metrics),
        Ok(Ok(None)) => Response::plain(431, "Request Header Fields Too Large"),
        Ok(Err(err)) => return Err(err),
        Err(_) => Response::plain(408, "Request Timeout"),
    };
    let bytes = response.to_bytes();
    match timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads up to the blank line ending a request's head: `None` if it runs past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| {
        // Bare line feeds, as RFC 9112 lets a server accept.
        bytes.windows(2).position(|w| w == b"\n\n")
    })
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    /// `HEAD`: the headers of a `GET`, without its body.
    head_only: bool,
}

impl Response {
    fn plain(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{reason}\n"),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// The answer to one request head.
fn respond(head: &[u8], metrics: &Metrics) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::plain(400, "Bad Request");
    };
    let mut lines = head.lines();
    let mut words = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Response::plain(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::plain(505, "HTTP Version Not Supported");
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" {
        return Response::plain(404, "Not Found");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::plain(405, "Method Not Allowed"),
    };
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    Response {
        status: 200,
        reason: "OK",
        content_type: if openmetrics {
            OPENMETRICS
        } else {
            PROMETHEUS_TEXT
        },
        body: metrics.render(openmetrics),
        head_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::metrics::tests::metrics;

    fn respond_for_test(head: &str, metrics: &Metrics) -> (u16, String, String) {
        let response = respond(head.as_bytes(), metrics);
        let bytes = String::from_utf8(response.to_bytes()).expect("UTF-8");
        (response.status, response.content_type.to_owned(), bytes)
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
            let (got, _, _) = respond_for_test(head, &metrics);
            assert_eq!(got, status, "{head:?}");
        }
        let (_, content_type, response) = respond_for_test(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
            &metrics,
        );
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(response.ends_with("# EOF\n"), "{response}");
        let (_, content_type, response) = respond_for_test("HEAD /metrics HTTP/1.1", &metrics);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(
            response.ends_with("\r\n\r\n"),
            "HEAD has no body: {response}"
        );
    }

    /// A server on a free loopback port, run by the returned runtime whenever it blocks on
    /// something (the test's clients, spawned on its blocking pool).
    fn serving() -> (tokio::runtime::Runtime, SocketAddr) {
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
        (runtime, addr)
    }

    #[test]
    fn a_socket_is_served_and_an_oversized_head_refused() {
        use std::io::{Read as _, Write as _};
        let (runtime, addr) = serving();
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
            huge.resize(MAX_HEAD, b'a');
            (ok, exchange(&huge))
        });
        let (ok, huge) = runtime.block_on(client).expect("the client");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("oomtrace_build_info{"), "{ok}");
        assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
    }

    /// Clients that connect and send half a request, more of them than the server holds,
    /// cannot keep a scrape out: 50 scrapes at once are each answered whole within a second.
    #[test]
    fn stalled_clients_past_the_cap_cannot_keep_scrapes_out() {
        use std::io::{Read as _, Write as _};
        use std::time::Instant;
        const STALLED: usize = MAX_CONNECTIONS + 50;
        const SCRAPES: usize = 50;
        let (runtime, addr) = serving();
        let clients = runtime.spawn_blocking(move || {
            let stalled: Vec<std::net::TcpStream> = (0..STALLED)
                .map(|_| {
                    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                    stream.write_all(b"GET /metr").expect("send half a request");
                    stream
                })
                .collect();
            let scrapes: Vec<_> = (0..SCRAPES)
                .map(|_| {
                    std::thread::spawn(move || {
                        let started = Instant::now();
                        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                        stream
                            .set_read_timeout(Some(Duration::from_secs(1)))
                            .unwrap();
                        stream
                            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                            .expect("send");
                        let mut response = String::new();
                        let _ = stream.read_to_string(&mut response);
                        (started.elapsed(), response)
                    })
                })
                .collect();
            let answers: Vec<_> = scrapes
                .into_iter()
                .map(|scrape| scrape.join().expect("a scrape"))
                .collect();
            drop(stalled);
            answers
        });
        let answers = runtime.block_on(clients).expect("the clients");
        assert_eq!(answers.len(), SCRAPES);
        for (took, response) in answers {
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");
            assert!(response.contains("oomtrace_build_info{"), "{response}");
            assert!(took < Duration::from_secs(1), "answered in {took:?}");
        }
    }
}
