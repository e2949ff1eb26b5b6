//! The connection loop: accepts up to [`ServerLimits::connections_max`] connections and serves
//! each with hyper, bounding how long a client may take to send its headers, to send its body
//! and to sit idle between requests, so slow or silent clients cannot hold sockets, tasks or
//! memory (risk S6 at the protocol level). Shutdown stops accepting, lets requests in flight
//! finish within [`DRAIN_MAX`], and closes idle connections at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::HttpState;

/// The protocol limits, each configurable (`KASSA_HEADER_READ_TIMEOUT_SECS`,
/// `KASSA_BODY_READ_TIMEOUT_SECS`, `KASSA_KEEP_ALIVE_IDLE_SECS`, `KASSA_CONNECTIONS_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From the first byte of a request to the end of its headers; then the connection closes.
    pub header_read_timeout: Duration,
    /// From the handler asking for the body to its last byte; then 408 `request_timeout`.
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request; then it closes.
    pub keep_alive_idle_timeout: Duration,
    /// Open connections at most; one more is answered 503 `service_unavailable` and closed.
    pub connections_max: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(20),
            keep_alive_idle_timeout: Duration::from_secs(30),
            connections_max: 1_000,
        }
    }
}

/// Longest wait for requests in flight at shutdown before their connections are dropped.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Connections over the limit being answered 503 at once; beyond this they are closed unanswered.
const REFUSALS_MAX: usize = 64;
/// How long a refusal may take to write its answer and see the client's close.
const REFUSAL_MAX: Duration = Duration::from_secs(1);
/// Bounds of how often a connection's time limits are checked.
const WATCH_PERIOD_MIN: Duration = Duration::from_millis(10);
const WATCH_PERIOD_MAX: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the API on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = state.limits;
    let router = crate::router(state);
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            let connection = Connection {
                router: router.clone(),
                limits,
                peer,
                stopping: stopping.clone(),
                _permit: permit,
            };
            tasks.spawn(connection.run(stream));
        } else if let Ok(permit) = refusals.clone().try_acquire_owned() {
            tasks.spawn(refuse(stream, permit));
        }
    }
    // New clients get a refused connection at once rather than waiting in the backlog.
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_MAX, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN_MAX:?}; closing their connections");
        tasks.shutdown().await;
    }
    Ok(())
}

/// One accepted connection and what it needs.
struct Connection {
    router: Router,
    limits: ServerLimits,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
    /// Held for the connection's life: its slot under `connections_max`.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let (router, peer, served) = (self.router.clone(), self.peer, activity.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let (router, activity) = (router.clone(), served.clone());
            async move {
                activity.request_started();
                let response = router.oneshot(request.map(Body::new)).await;
                activity.request_finished();
                response
            }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = activity.went_quiet(self.limits) => {
                tracing::debug!(peer = %self.peer, "closing a connection that went quiet");
                return;
            }
            _ = self.stopping.changed() => connection.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            _ = connection.as_mut() => {}
            () = activity.went_quiet(self.limits) => {}
        }
    }
}

/// Where a connection is between requests, to know which time limit applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of the next request (keep-alive idle limit).
    Idle { since: Instant },
    /// Some bytes of a request head arrived; the handler has not been called (header limit).
    ReadingHead { since: Instant },
    /// A handler is running; its body read is bounded by the extractor, its work by its own
    /// timeouts.
    InRequest,
}

struct Activity {
    phase: Mutex<Phase>,
}

impl Activity {
    /// A new connection is on the header clock from the start: a client that connects and
    /// says nothing is a slow header, not an idle keep-alive.
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::ReadingHead {
                since: Instant::now(),
            }),
        }
    }

    fn phase(&self) -> Phase {
        *self
            .phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self
            .phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = phase;
    }

    fn bytes_read(&self) {
        let mut phase = self
            .phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::ReadingHead {
                since: Instant::now(),
            };
        }
    }

    fn request_started(&self) {
        self.set(Phase::InRequest);
    }

    fn request_finished(&self) {
        self.set(Phase::Idle {
            since: Instant::now(),
        });
    }

    /// Completes when the connection has been idle, or reading one request head, for longer
    /// than its limit allows. Checked a few times per limit, so a limit is enforced within a
    /// quarter of itself (and at most [`WATCH_PERIOD_MAX`] late).
    async fn went_quiet(&self, limits: ServerLimits) {
        let shortest = limits
            .header_read_timeout
            .min(limits.keep_alive_idle_timeout);
        let period = (shortest / 4).clamp(WATCH_PERIOD_MIN, WATCH_PERIOD_MAX);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let overdue = match self.phase() {
                Phase::Idle { since } => since.elapsed() >= limits.keep_alive_idle_timeout,
                Phase::ReadingHead { since } => since.elapsed() >= limits.header_read_timeout,
                Phase::InRequest => false,
            };
            if overdue {
                return;
            }
        }
    }
}

/// The socket, telling [`Activity`] when request bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Answers a connection over the limit with 503 in the API's shape and closes it, reading what
/// the client sent meanwhile so the close does not reset the answer away.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let body = r#"{"error":{"code":"service_unavailable","message":"too many open connections; retry later"}}"#;
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_MAX, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
