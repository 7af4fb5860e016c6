//! The HTTP server loop under the router: HTTP/1 connections driven by
//! hyper directly (axum's own `serve` cannot set these limits). A client
//! that does not send its request headers within [`HEADER_READ_TIMEOUT`]
//! is cut off — the same holds for a kept-alive connection that sends no
//! next request — so slow clients cannot hold connections open; at most
//! [`MAX_CONNECTIONS`] are served at once (fewer when the process may not
//! open that many files), at most [`ServeLimits::per_peer`] from one peer;
//! on shutdown, no new connection is accepted and the requests in flight
//! finish (for at most [`DRAIN_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::peers::PeerLimit;

/// Chat platforms send a request's headers at once; a client that takes
/// longer than this is stalling on purpose (or broken).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more wait in the kernel's accept queue.
/// Each costs a task, buffers and a file descriptor: the cap bounds memory
/// under a flood.
pub const MAX_CONNECTIONS: usize = 4096;

/// Connections one peer may hold at once, unless
/// `JITBOT_MAX_CONNECTIONS_PER_PEER` says otherwise. An eighth of
/// [`MAX_CONNECTIONS`]: it takes eight addresses to fill the server. Far
/// more than chat platforms, a pipeline or a test suite keep open (Slack
/// and the Bot Framework reuse a handful of connections), and enough for a
/// reverse proxy or load balancer on one address that pools its
/// connections; one that does not should raise it.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 512;

/// File descriptors kept for everything but client connections: the
/// store's files or database connections, calls to chat APIs and
/// providers, the Socket Mode connection, logs.
const RESERVED_FILES: u64 = 256;

/// How long a graceful shutdown waits for the requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What a refused connection is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

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
/// first (accepting would then fail for every client alike).
fn connection_cap() -> usize {
    let soft = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .unwrap_or(u64::MAX);
    let usable = soft.saturating_sub(RESERVED_FILES).max(64);
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
    let graceful = GracefulShutdown::new();
    let cap = connection_cap();
    if cap < MAX_CONNECTIONS {
        tracing::warn!(
            connections = cap,
            "the open-file limit allows only this many connections at once; raise it (ulimit -n) for more"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let peers = PeerLimit::new(limits.per_peer);
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
        let Some(peer_slot) = peers.open(address.ip()) else {
            // Said without waiting (the socket's buffer takes it), then
            // closed: a refused connection holds nothing.
            let _ = stream.try_write(REFUSED);
            continue;
        };
        // Answers are small and written at once; do not wait to batch them.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(peer_slot);
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
    Ok(())
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
