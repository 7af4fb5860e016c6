//! Slack Socket Mode: jitbot dials out to Slack over a WebSocket instead of
//! taking Slack's HTTPS requests, so it needs no public URL.
//!
//! `apps.connections.open` (with the app-level token) answers a one-time
//! URL; Slack greets with `hello`, then sends envelopes (`slash_commands`,
//! `interactive`, `events_api`), each acknowledged by its `envelope_id` —
//! with the answer as `payload` where the HTTP route answers with a body.
//! On `disconnect` (Slack refreshes connections every few hours, or warns
//! before it does) a new connection is opened, and only once it is greeted
//! is the old one closed, so nothing falls between them; a dropped socket
//! is reopened with backoff, and so is one that went silent (jitbot pings;
//! a link that died without closing would otherwise look open forever).
//! What an envelope means is not decided here:
//! an [`EnvelopeHandler`] (the Slack ingress) takes it through the same
//! code as the HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::slack_api::{SlackApi, SlackApiError};
use crate::telemetry::Metrics;

/// Reconnecting waits 1 s, 2 s, 4 s… doubling at most this many times.
const RECONNECT_BACKOFF_STEPS: u32 = 5;

/// How long a new connection may take to be greeted with `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing a connection may take before it is let go.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a connection is known to be alive: jitbot pings every `ping_every`,
/// and a connection that says nothing at all (no pong, ping or envelope)
/// for `silence_limit` is taken as dropped.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub ping_every: Duration,
    pub silence_limit: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            ping_every: Duration::from_secs(15),
            silence_limit: Duration::from_secs(60),
        }
    }
}

/// One message from Slack on the socket.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    /// What to acknowledge (absent on `hello` and `disconnect`).
    #[serde(default)]
    pub envelope_id: Option<String>,
    #[serde(default)]
    pub payload: Value,
    /// Set when Slack delivers the envelope again (no ack came in time).
    #[serde(default)]
    pub retry_attempt: Option<u32>,
    /// Why Slack closes the connection (`disconnect`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// How an envelope is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    /// Acknowledged, without an answer.
    Bare,
    /// Acknowledged with the answer as `payload`.
    With(Value),
    /// Not acknowledged: jitbot is too busy to take it now, and Slack will
    /// deliver it again shortly.
    Withheld,
}

/// Takes the envelopes that carry work, and says how each is answered.
#[async_trait]
pub trait EnvelopeHandler: Send + Sync + 'static {
    async fn handle(&self, envelope: Envelope) -> Ack;
}

/// Why no connection could be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Slack refused the app token: retrying will not help.
    #[error("Slack refused SLACK_APP_TOKEN ({0}); check that it is the app-level token (xapp-…) of this app, with the connections:write scope")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Slack's answers to `apps.connections.open` that mean the token is wrong.
const REFUSED_TOKEN: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
    "missing_scope",
];

/// Keeps one Socket Mode connection to Slack open.
pub struct SocketMode {
    api: SlackApi,
    metrics: Arc<Metrics>,
    keepalive: Keepalive,
}

/// What a connection tells the one keeping it.
enum Event {
    /// Slack will close it (`disconnect`): open the next one now.
    Refresh { connection: u64, reason: String },
    /// It closed or broke.
    Dropped { connection: u64, why: String },
}

/// A connection that is open and greeted.
struct Live {
    id: u64,
    close: CancellationToken,
}

impl SocketMode {
    pub fn new(
        api_url: &str,
        app_token: Secret,
        metrics: Arc<Metrics>,
    ) -> Result<SocketMode, SlackApiError> {
        Ok(SocketMode {
            api: SlackApi::new(api_url, app_token)?,
            metrics,
            keepalive: Keepalive::default(),
        })
    }

    /// Keep connections alive by other timings than the default.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> SocketMode {
        self.keepalive = keepalive;
        self
    }

    /// A fresh WebSocket URL from `apps.connections.open` (each is used
    /// once).
    pub async fn open_url(&self) -> Result<String, OpenError> {
        let answer = self
            .api
            .call_json("apps.connections.open", &json!({}))
            .await
            .map_err(|error| {
                let text = error.to_string();
                let code = text.rsplit(": ").next().unwrap_or_default();
                if REFUSED_TOKEN.contains(&code) {
                    OpenError::Refused(code.to_string())
                } else {
                    OpenError::Failed(text)
                }
            })?;
        answer
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| OpenError::Failed("apps.connections.open: no url in answer".into()))
    }

    /// Keep a connection open until `cancel`, its envelopes taken by
    /// `handler`, starting with `first_url` (already opened, so the caller
    /// could check the token) if given.
    pub async fn run(
        self,
        handler: Arc<dyn EnvelopeHandler>,
        first_url: Option<String>,
        cancel: CancellationToken,
    ) {
        let (events, mut inbox) = mpsc::unbounded_channel();
        let mut next_url = first_url;
        let mut next_id = 0;
        let mut live: Option<Live> = None;
        loop {
            if live.is_none() {
                next_id += 1;
                match self
                    .establish(&handler, next_url.take(), next_id, &events, &cancel)
                    .await
                {
                    Some(fresh) => live = Some(fresh),
                    None => return,
                }
            }
            let event = tokio::select! {
                _ = cancel.cancelled() => {
                    if let Some(old) = live.take() {
                        old.close.cancel();
                    }
                    return;
                }
                event = inbox.recv() => event,
            };
            let current = live.as_ref().map_or(0, |l| l.id);
            match event {
                Some(Event::Refresh { connection, reason }) if connection == current => {
                    tracing::info!(%reason, "Slack asks to reconnect; opening the next connection first");
                    Metrics::count(&self.metrics.socket_connections, "refreshed");
                    next_id += 1;
                    let Some(fresh) = self
                        .establish(&handler, None, next_id, &events, &cancel)
                        .await
                    else {
                        return;
                    };
                    if let Some(old) = live.replace(fresh) {
                        old.close.cancel();
                    }
                }
                Some(Event::Dropped { connection, why }) if connection == current => {
                    tracing::warn!(%why, "the Socket Mode connection dropped; reconnecting");
                    Metrics::count(&self.metrics.socket_connections, "dropped");
                    live = None;
                }
                // From a connection already replaced.
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Open and greet a connection, retrying with backoff until one is up
    /// (`None` when cancelled meanwhile).
    async fn establish(
        &self,
        handler: &Arc<dyn EnvelopeHandler>,
        mut url: Option<String>,
        id: u64,
        events: &mpsc::UnboundedSender<Event>,
        cancel: &CancellationToken,
    ) -> Option<Live> {
        let mut attempt = 0;
        loop {
            let opened = match url.take() {
                Some(url) => Ok(url),
                None => self.open_url().await,
            };
            let outcome = match opened {
                Ok(url) => connect(handler.clone(), &url, id, self.keepalive, events.clone()).await,
                Err(error @ OpenError::Refused(_)) => {
                    tracing::error!(%error, "cannot open a Socket Mode connection");
                    Err(error.to_string())
                }
                Err(OpenError::Failed(error)) => Err(error),
            };
            match outcome {
                Ok(live) => {
                    tracing::info!(connection = id, "Socket Mode connection open");
                    Metrics::count(&self.metrics.socket_connections, "opened");
                    return Some(live);
                }
                Err(error) => {
                    Metrics::count(&self.metrics.socket_connections, "failed");
                    // Chat is down while this waits: never longer than ~30 s.
                    let wait = crate::domain::backoff::backoff(
                        attempt.min(RECONNECT_BACKOFF_STEPS),
                        rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2),
                    );
                    tracing::warn!(%error, ?wait, "Socket Mode connection failed; trying again");
                    attempt += 1;
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// Connect to `url`, wait for `hello`, then serve the connection in the
/// background until it drops or is closed.
async fn connect(
    handler: Arc<dyn EnvelopeHandler>,
    url: &str,
    id: u64,
    keepalive: Keepalive,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Live, String> {
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(tls_config())),
    )
    .await
    .map_err(|e| format!("connecting to Slack's WebSocket: {e}"))?;
    let (mut sink, mut stream) = socket.split();
    // Slack says hello first; an envelope that comes before it is taken as
    // the greeting and handled, never dropped unacknowledged.
    let greeted = tokio::time::timeout(HELLO_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) => match envelope_kind(&text).as_deref() {
                    Some("hello") => return Ok(None),
                    Some("disconnect") => {}
                    _ => return Ok(Some(text.to_string())),
                },
                Ok(Message::Ping(data)) => {
                    let _ = sink.send(Message::Pong(data)).await;
                }
                Ok(Message::Close(_)) => return Err("closed before hello".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("closed before hello".to_string())
    })
    .await
    .map_err(|_| "Slack did not say hello".to_string())?;
    let before_hello = greeted?;

    let close = CancellationToken::new();
    let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
    let writer_close = close.clone();
    tokio::spawn(async move {
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive.ping_every,
            keepalive.ping_every,
        );
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    if let Err(error) = sink.send(Message::Ping(Vec::new().into())).await {
                        tracing::debug!(%error, "could not ping the Socket Mode connection");
                    }
                }
                _ = writer_close.cancelled() => {
                    // A link that went silent may never take the close.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        let _ = sink.send(Message::Close(None)).await;
                        let _ = sink.close().await;
                    })
                    .await;
                    return;
                }
                message = to_send.recv() => {
                    let Some(message) = message else { return };
                    if let Err(error) = sink.send(message).await {
                        tracing::warn!(%error, "could not write to the Socket Mode connection");
                    }
                }
            }
        }
    });
    if let Some(text) = before_hello {
        // An envelope with work, never a `disconnect` (kept out above).
        receive(&text, &handler, &outgoing);
    }
    let reader_close = close.clone();
    tokio::spawn(async move {
        let mut last_heard = tokio::time::Instant::now();
        let why = loop {
            let message = tokio::select! {
                _ = reader_close.cancelled() => return,
                _ = tokio::time::sleep_until(last_heard + keepalive.silence_limit) => {
                    break format!("nothing heard from Slack for {:?}", keepalive.silence_limit);
                }
                message = stream.next() => message,
            };
            last_heard = tokio::time::Instant::now();
            match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reason) = receive(&text, &handler, &outgoing) {
                        let _ = events.send(Event::Refresh {
                            connection: id,
                            reason,
                        });
                    }
                }
                Some(Ok(Message::Ping(data))) => {
                    let _ = outgoing.send(Message::Pong(data));
                }
                Some(Ok(Message::Close(frame))) => {
                    break format!("closed by Slack ({frame:?})");
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break error.to_string(),
                None => break "the connection ended".to_string(),
            }
        };
        // Closed on this side too (a silent link may still be half open).
        reader_close.cancel();
        let _ = events.send(Event::Dropped {
            connection: id,
            why,
        });
    });
    Ok(Live { id, close })
}

/// Take one text frame: a `disconnect` answers its reason (the caller
/// reconnects); an envelope with work is handed to `handler` and
/// acknowledged; anything else is acknowledged if it can be, and ignored.
fn receive(
    text: &str,
    handler: &Arc<dyn EnvelopeHandler>,
    outgoing: &mpsc::UnboundedSender<Message>,
) -> Option<String> {
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(error) => {
            // Acknowledged all the same, or Slack would send it forever.
            tracing::warn!(%error, "malformed Socket Mode envelope; acknowledged and ignored");
            if let Some(id) = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("envelope_id")?.as_str().map(str::to_string))
            {
                let _ = outgoing.send(ack(&id, None));
            }
            return None;
        }
    };
    match envelope.kind.as_str() {
        "disconnect" => {
            return Some(envelope.reason.unwrap_or_else(|| "unknown".into()));
        }
        "hello" => {}
        _ => {
            let Some(id) = envelope.envelope_id.clone() else {
                tracing::debug!(kind = %envelope.kind, "Socket Mode message without an envelope id");
                return None;
            };
            let handler = handler.clone();
            let outgoing = outgoing.clone();
            tokio::spawn(async move {
                let payload = match handler.handle(envelope).await {
                    Ack::Bare => None,
                    Ack::With(payload) => Some(payload),
                    Ack::Withheld => return,
                };
                let _ = outgoing.send(ack(&id, payload));
            });
        }
    }
    None
}

/// The acknowledgement of envelope `id`, with the answer if there is one.
fn ack(id: &str, payload: Option<Value>) -> Message {
    let body = match payload {
        Some(payload) => json!({ "envelope_id": id, "payload": payload }),
        None => json!({ "envelope_id": id }),
    };
    Message::Text(body.to_string().into())
}

fn envelope_kind(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("type")?
        .as_str()
        .map(str::to_string)
}

/// TLS for `wss://` with the public web roots, by the same rustls (ring) as
/// every other outbound connection.
fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    /// Patience for a busy machine.
    const PATIENCE: Duration = Duration::from_secs(30);

    struct NoWork;

    #[async_trait]
    impl EnvelopeHandler for NoWork {
        async fn handle(&self, _: Envelope) -> Ack {
            Ack::Bare
        }
    }

    /// A Slack whose every connection is greeted, then either read (so
    /// pings are answered, and counted in `pings`) or left unread (silent).
    async fn fake_slack(
        answers_pings: bool,
        pings: Arc<AtomicUsize>,
    ) -> (MockServer, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/link", listener.local_addr().unwrap());
        let (accepted, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let hello = json!({ "type": "hello" }).to_string();
                socket.send(Message::Text(hello.into())).await.unwrap();
                let _ = accepted.send(());
                let pings = pings.clone();
                tokio::spawn(async move {
                    if !answers_pings {
                        // Held open and never read: a link that died.
                        std::future::pending::<()>().await;
                    }
                    while let Some(Ok(message)) = socket.next().await {
                        if matches!(message, Message::Ping(_)) {
                            pings.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let slack = MockServer::start().await;
        Mock::given(path("/apps.connections.open"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({ "ok": true, "url": url })),
            )
            .mount(&slack)
            .await;
        (slack, connections)
    }

    fn keep_connected(slack: &MockServer) -> CancellationToken {
        let socket_mode = SocketMode::new(
            &slack.uri(),
            Secret::new("xapp-test"),
            Arc::new(Metrics::new()),
        )
        .unwrap()
        .with_keepalive(Keepalive {
            ping_every: Duration::from_millis(100),
            // Far above the ping interval: a busy machine's hiccup is not
            // silence.
            silence_limit: Duration::from_millis(2500),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(socket_mode.run(Arc::new(NoWork), None, cancel.clone()));
        cancel
    }

    #[tokio::test]
    async fn a_connection_that_goes_silent_is_replaced() {
        let (slack, mut connections) = fake_slack(false, Arc::default()).await;
        let cancel = keep_connected(&slack);
        for which in ["the first connection", "a new one once it is silent"] {
            tokio::time::timeout(PATIENCE, connections.recv())
                .await
                .unwrap_or_else(|_| panic!("{which}"));
        }
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_connection_that_answers_pings_is_kept() {
        let pings = Arc::new(AtomicUsize::new(0));
        let (slack, mut connections) = fake_slack(true, pings.clone()).await;
        let cancel = keep_connected(&slack);
        tokio::time::timeout(PATIENCE, connections.recv())
            .await
            .expect("the first connection");
        // Pinged for well over the silence limit (at 100 ms apart, 50 pings
        // take 5 s against 2.5 s), answered, and never replaced.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while pings.load(Ordering::SeqCst) < 50 {
            assert!(tokio::time::Instant::now() < deadline, "jitbot pings");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(connections.try_recv().is_err(), "the connection was kept");
        cancel.cancel();
    }
}
