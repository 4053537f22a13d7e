//! The smallest HTTP/1.1 server Prometheus can scrape: `GET /metrics` (or `HEAD`), one
//! request per connection, nothing else. A web framework would outweigh the rest of oomtrace.
//!
//! Whoever can reach the port is untrusted: a request's head is capped in size and time, a
//! few connections are served at once and the rest are closed at once, so neither a slow
//! client nor a flood can hold memory or the event loop.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::timeout,
};

use super::Metrics;

/// A request head (request line and headers) larger than this is refused: Prometheus sends
/// a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request head, and to take the response.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once: a Prometheus pair and a curl, with room to spare.
const MAX_CONNECTIONS: usize = 4;
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

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failing = false;
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
        // Dropping the stream closes it: a busy server says so fastest by not answering.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _slot = slot;
            // A client that goes away or stalls is its own problem, never the tracer's.
            let _ = serve_one(stream, &metrics).await;
        });
    }
}

async fn serve_one(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let response = match timeout(READ_TIMEOUT, read_head(&mut stream)).await {
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
            huge.resize(MAX_HEAD, b'a');
            (ok, exchange(&huge))
        });
        let (ok, huge) = runtime.block_on(client).expect("the client");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("oomtrace_build_info{"), "{ok}");
        assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
    }
}
