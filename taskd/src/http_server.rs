//! The HTTP server loop: axum's router on hyper, with the limits a public service needs. A
//! client may hold a connection only while it makes progress: headers must arrive within the
//! header-read timeout (which also bounds a keep-alive connection's wait for its next request),
//! a connection with no bytes moving either way for the idle timeout is closed, and at most
//! `max_connections` are served at once (the rest wait in the listen backlog). Body reads have
//! their own timeout in the API ([`task_http::ServiceConfig::body_read_timeout`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The connection limits of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers, counted from when the connection
    /// waits for them (so also the longest idle wait between keep-alive requests).
    pub header_read_timeout: Duration,
    /// How long a connection may go without a byte read or written.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long in-flight requests get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // Above the longest long-poll (60 s by default) and SSE's keep-alive interval.
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets
/// open connections finish their requests (up to the grace period).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let activity = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let io = TokioIo::new(Watched {
            inner: stream,
            started,
            activity: activity.clone(),
            replacement: None,
        });
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(io, service));
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = connection => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                }
                () = idle_watch(started, &activity, idle) => {
                    tracing::debug!(%peer, ?idle, "idle connection closed");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the grace period");
    }
}

/// Completes once no byte has moved for `idle`.
async fn idle_watch(started: Instant, activity: &AtomicU64, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let quiet = started.elapsed().saturating_sub(last);
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// A stream that records when bytes last moved, in milliseconds since `started`, and gives
/// hyper's own error answers the API's `{"detail"}` body (see [`with_detail`]).
struct Watched<T> {
    inner: T,
    started: Instant,
    activity: Arc<AtomicU64>,
    /// A rewritten answer still being sent, and the length of hyper's original to report.
    replacement: Option<(Vec<u8>, usize, usize)>,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none()
            && let Some(answer) = with_detail(data)
        {
            self.replacement = Some((answer, 0, data.len()));
        }
        if let Some((answer, sent, original)) = self.replacement.take() {
            let this = &mut *self;
            let mut sent = sent;
            while sent < answer.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &answer[sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        this.touch();
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => {
                        this.replacement = Some((answer, sent, original));
                        return Poll::Pending;
                    }
                }
            }
            // hyper closes the connection after its error answer: nothing follows it.
            return Poll::Ready(Ok(original));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper answers a request it cannot parse by itself, with an empty body (400 for a bad request
/// line or header, 414 for a URI over its limit, 431 for headers over the buffer): the same
/// answer with the API's `{"detail"}` body, or None for any other write.
fn with_detail(head: &[u8]) -> Option<Vec<u8>> {
    const STATUSES: [(&str, &str); 3] = [
        (
            "HTTP/1.1 400 Bad Request\r\n",
            "Bad request: the request line or a header could not be parsed",
        ),
        (
            "HTTP/1.1 414 URI Too Long\r\n",
            "URI too long: the request line is over the server's limit",
        ),
        (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            "Request header fields too large: the headers are over the server's limit",
        ),
    ];
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, detail) = STATUSES.iter().find(|(line, _)| text.starts_with(line))?;
    let headers = text.strip_prefix(status_line)?.strip_suffix("\r\n")?;
    // Only hyper's own answer: headers alone, ending the message, with an empty body.
    let lines: Vec<&str> = headers.split("\r\n").filter(|l| !l.is_empty()).collect();
    if !lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
        || !headers.ends_with("\r\n")
    {
        return None;
    }
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut answer = String::from(*status_line);
    for line in lines {
        let name = line.to_ascii_lowercase();
        if !name.starts_with("content-length:") && !name.starts_with("connection:") {
            answer.push_str(line);
            answer.push_str("\r\n");
        }
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::with_detail;

    #[test]
    fn hypers_own_error_answers_get_a_detail_body_and_nothing_else_changes() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 18:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(with_detail(head).expect("rewritten")).expect("utf-8");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("date: Mon, 30 Nov 2026"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(!head.contains("content-length: 0"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("URI too long")
        );

        // The API's own answers pass untouched: a 400 with a body, a 200, a body chunk.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"{\"detail\":\"x\"}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(
                with_detail(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
