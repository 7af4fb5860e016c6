//! The HTTP server loop under the router: HTTP/1 connections driven by
//! hyper directly (axum's own `serve` cannot set these limits). A client
//! that does not send its request headers within [`HEADER_READ_TIMEOUT`]
//! is cut off — the same holds for a kept-alive connection that sends no
//! next request — so slow clients cannot hold connections open; at most
//! [`MAX_CONNECTIONS`] are served at once (fewer when the process may not
//! open that many files), at most [`ServeLimits::per_peer`] from one peer
//! (its next ones wait their turn, for at most [`PLACE_WAIT`], as many at
//! once as may be served); on shutdown, no new connection is accepted and
//! the requests in flight finish (for at most [`DRAIN_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::admission::{busy_answer, Family};
use super::peers::{PeerLimit, PeerPlace, Turn};

/// Chat platforms send a request's headers at once; a client that takes
/// longer than this is stalling on purpose (or broken).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more wait in the kernel's accept queue.
/// Each costs a task, buffers and a file descriptor: the cap bounds memory
/// under a flood.
pub const MAX_CONNECTIONS: usize = 4096;

/// Connections of one peer served at once, unless
/// `JITBOT_MAX_CONNECTIONS_PER_PEER` says otherwise. An eighth of
/// [`MAX_CONNECTIONS`]: it takes eight addresses to fill the server. Far
/// more than chat platforms, a pipeline or a test suite keep open (Slack
/// and the Bot Framework reuse a handful of connections), and enough for a
/// reverse proxy or load balancer on one address that pools its
/// connections; more from one peer wait their turn (slower, not refused),
/// and a proxy that opens more at once should raise it.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 512;

/// File descriptors kept for everything but client connections: the
/// store's files or database connections, calls to chat APIs and
/// providers, the Socket Mode connection, logs.
const RESERVED_FILES: u64 = 256;

/// How long a graceful shutdown waits for the requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection waits for its peer's turn before its request is
/// answered "busy": past an idle kept-alive connection's life
/// ([`HEADER_READ_TIMEOUT`]; a busy one hands its place on sooner), well
/// within a client's patience.
const PLACE_WAIT: Duration = Duration::from_secs(10);

/// Limits of the server loop that deployments may set.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections one peer may hold at once.
    pub per_peer: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
        }
    }
}

/// Raise this process's soft limit of open files to its hard limit, so
/// that the connection cap — not "too many open files" — is what bounds
/// a flood (many systems start services with a soft limit of 1024). The
/// soft limit in force afterwards.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// [`MAX_CONNECTIONS`], or fewer if the open-file limit would run out
/// first (accepting would then fail for every client alike). As many may
/// wait for their peer's turn besides, so each gets half the files.
fn connection_cap() -> usize {
    let soft = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .unwrap_or(u64::MAX);
    let usable = (soft.saturating_sub(RESERVED_FILES) / 2).max(64);
    usize::try_from(usable).map_or(MAX_CONNECTIONS, |usable| usable.min(MAX_CONNECTIONS))
}

/// Serve `app` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    limits: ServeLimits,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let cap = connection_cap();
    if cap < MAX_CONNECTIONS {
        tracing::warn!(
            connections = cap,
            "the open-file limit allows only this many connections at once; raise it (ulimit -n) for more"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let waiting_room = Arc::new(Semaphore::new(cap));
    let peers = PeerLimit::new(limits.per_peer);
    let connections = TaskTracker::new();
    let mut waiting_room_full = false;
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, address) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers are small and written at once; do not wait to batch them.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            stream,
            http: http.clone(),
            app: app.clone(),
            stop: stop.clone(),
        };
        match peers.open(address.ip()) {
            Turn::Now(place) => {
                connections.spawn(connection.serve(place, slot));
            }
            Turn::Wait(wait) => {
                // A waiting connection holds no place among those served.
                drop(slot);
                let Ok(waiting) = waiting_room.clone().try_acquire_owned() else {
                    // Closed without a word: it has sent nothing to answer.
                    // Said once while the room stays full, not per connection.
                    if !waiting_room_full {
                        waiting_room_full = true;
                        tracing::warn!(
                            "{cap} connections are waiting for their peer's turn; closing the next ones until one is served"
                        );
                    }
                    continue;
                };
                waiting_room_full = false;
                let slots = slots.clone();
                connections.spawn(async move {
                    let place = tokio::select! {
                        _ = connection.stop.cancelled() => return,
                        place = wait.place(PLACE_WAIT) => place,
                    };
                    let Some(place) = place else {
                        connection.answer_busy().await;
                        return;
                    };
                    drop(waiting);
                    let slot = tokio::select! {
                        _ = connection.stop.cancelled() => return,
                        slot = slots.acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => return,
                        },
                    };
                    connection.serve(place, slot).await;
                });
            }
        }
    }
    drop(listener);
    connections.close();
    tokio::select! {
        _ = connections.wait() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
    Ok(())
}

/// An accepted connection, before it is served.
struct Connection {
    stream: TcpStream,
    http: hyper::server::conn::http1::Builder,
    app: Router,
    stop: CancellationToken,
}

impl Connection {
    /// Serve its requests until it closes or the server stops (the
    /// request in flight is finished). While another connection of its
    /// peer waits for its place, its next answer says `Connection: close`.
    async fn serve(self, place: PeerPlace, slot: OwnedSemaphorePermit) {
        let place = Arc::new(place);
        let app = {
            let place = place.clone();
            ServiceExt::<hyper::Request<hyper::body::Incoming>>::map_response(
                self.app,
                move |mut response: Response| {
                    if place.closes_for_a_waiting_one() {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                },
            )
        };
        let connection = self
            .http
            .serve_connection(TokioIo::new(self.stream), TowerToHyperService::new(app));
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended with an error");
        }
        drop(place);
        drop(slot);
    }

    /// Its peer's turn did not come in time: its request is answered
    /// "busy, try again" (never before it is sent — an answer nobody asked
    /// for breaks the client's connection), then it is closed.
    async fn answer_busy(self) {
        let busy = hyper::service::service_fn(
            |request: hyper::Request<hyper::body::Incoming>| async move {
                Ok::<_, std::convert::Infallible>(busy_answer(Family::of(request.uri().path())))
            },
        );
        let mut http = self.http;
        http.keep_alive(false);
        let connection = http.serve_connection(TokioIo::new(self.stream), busy);
        tokio::select! {
            _ = connection => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_to_what_the_system_allows() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let soft = raise_open_file_limit().unwrap();
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap().0, soft);
        assert_eq!(soft, hard);
        assert!(connection_cap() <= MAX_CONNECTIONS);
    }
}
