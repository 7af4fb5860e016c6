//! Assembling and running the bot: store, engine, scheduler, outbox worker
//! and HTTP server, with a graceful shutdown that stops taking requests,
//! lets in-flight work finish, and flushes the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::chat::directory::CachedDirectory;
use crate::chat::slack::socket::{OpenError, SocketMode};
use crate::chat::slack::{verify, SlackClient};
use crate::chat::teams::auth::BotAuthenticator;
use crate::chat::teams::TeamsClient;
use crate::chat::ChatPlatform;
use crate::clock::Clock;
use crate::config::email::EmailSettings;
use crate::config::ingress::IngressSettings;
use crate::config::settings::{ApiTokenSpec, SlackSettings, TeamsSettings};
use crate::config::Secret;
use crate::domain::audit::{AuditKey, AuditRecord, Link};
use crate::domain::ids::Platform;
use crate::domain::policy::Policy;
use crate::domain::quota::FilingLimits;
use crate::email::token::TokenKey;
use crate::email::Mailer;
use crate::engine::{Engine, StoreContactBook, Wakers};
use crate::http::api::ApiAuth;
use crate::http::{
    self, Admission, AppState, ApprovalPages, Intake, ServeLimits, SlackIngress, SocketIngress,
    TeamsIngress,
};
use crate::outbox::{OutboxParts, OutboxWorker};
use crate::providers::Providers;
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError, StoreLocation};

/// Start the background workers every way of running the engine needs:
/// the scheduler, the outbox worker (delivering through `platforms`), the
/// replay-cache pruning and the sweeps. They stop when `cancel` fires; wait
/// on the returned tracker for them to finish.
pub fn spawn_workers(
    engine: &Arc<Engine>,
    policy: Arc<Policy>,
    platforms: HashMap<Platform, Arc<dyn ChatPlatform>>,
    mailer: Option<Arc<Mailer>>,
    wakers: &Wakers,
    cancel: &CancellationToken,
) -> tokio_util::task::TaskTracker {
    let store = engine.store().clone();
    let workers = tokio_util::task::TaskTracker::new();
    let scheduler = Scheduler::new(engine.clone(), store.clone(), wakers.scheduler.clone());
    workers.spawn(scheduler.run(cancel.clone()));
    let outbox = OutboxWorker::new(OutboxParts {
        store: store.clone(),
        homes: Some(engine.clone()),
        policy,
        platforms,
        mailer,
        directories: engine.directories().clone(),
        clock: engine.clock().clone(),
        wake: wakers.outbox.clone(),
        metrics: engine.metrics().clone(),
        health: engine.health().clone(),
    });
    workers.spawn(outbox.run(cancel.clone()));
    workers.spawn(prune_replays(store, cancel.clone()));
    workers.spawn(crate::scheduler::sweeps::run(
        engine.clone(),
        wakers.sweeps.clone(),
        cancel.clone(),
    ));
    workers.spawn(crate::scheduler::activity::run(
        engine.clone(),
        wakers.activity.clone(),
        cancel.clone(),
    ));
    workers.close();
    workers
}

/// How often the replay cache drops signatures that are past the window.
const REPLAY_PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long the start waits for Slack to accept the app token.
const SOCKET_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up the chat connection: {0}")]
    Slack(String),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot set up email: {0}")]
    Email(String),
    #[error("a background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("refusing to start: {0}")]
    LiveGrants(#[from] crate::engine::LiveGrantsError),
    #[error("{0}")]
    Audit(String),
}

/// Everything the server is built from.
pub struct ServerParts {
    /// Where the store lives: a sled directory or a shared database.
    pub store: StoreLocation,
    pub policy: Policy,
    pub providers: Providers,
    pub slack: Option<SlackSettings>,
    pub teams: Option<TeamsSettings>,
    pub teams_webhook_secret: Option<Secret>,
    pub api_tokens: Vec<ApiTokenSpec>,
    pub user_limits: FilingLimits,
    /// Chat and API requests worked on at once; more wait briefly, then
    /// are answered busy.
    pub max_in_flight: usize,
    /// Connections one peer (an IPv4 address, an IPv6 /64) may hold at once.
    pub max_connections_per_peer: usize,
    /// Which Teams tenants and services, Slack workspaces and metrics
    /// scrapers are taken.
    pub ingress: IngressSettings,
    /// Where "now" comes from: the wall clock, or one a test moves.
    pub clock: Arc<dyn Clock>,
    /// Email approvals and notices, when `JITBOT_SMTP_URL` is set.
    pub email: EmailSettings,
    /// Paging services asked who is on call.
    pub paging: crate::config::paging::PagingSettings,
    /// The audit chain's HMAC key (`JITBOT_AUDIT_KEY`), if set.
    pub audit_key: Option<AuditKey>,
}

/// A started server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
    wakers: Wakers,
}

impl RunningServer {
    /// Make the scheduler, the outbox and the sweeps look again now — after
    /// a test moved the server's clock.
    pub fn wake_workers(&self) {
        self.wakers.wake_all();
    }

    /// Stop accepting, finish in-flight requests and jobs, flush the store.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.cancel.cancel();
        self.task.await?
    }

    /// Run until `signal` resolves, then shut down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Make sure the audit chain goes on as its key says. With a key, a log
/// ending in a plain event gets a `chain_keyed` event now, so the log is
/// keyed from here even if nothing else happens before it is verified.
/// Without one, a keyed log is refused (its next events could not be
/// chained), and a plain chain is said not to resist a rewrite.
async fn prepare_audit_chain(
    store: &dyn Store,
    keyed: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ServerError> {
    let head = store.audit_head().await?;
    let last = match head.seq {
        0 => None,
        seq => store.audit_events_before(seq + 1, 1).await?.pop(),
    };
    let last_keyed = last.as_ref().is_some_and(|e| e.chain == Link::Keyed);
    match (keyed, last_keyed) {
        (true, true) => {}
        (true, false) => {
            if last.is_some() {
                let record = AuditRecord::chain_keyed(now, &head);
                store
                    .record(&crate::store::Effects {
                        audit: vec![record],
                        ..Default::default()
                    })
                    .await?;
                tracing::info!(after = head.seq, "audit chain: keyed from now on (HMAC-SHA256)");
            }
        }
        (false, true) => {
            return Err(ServerError::Audit(format!(
                "the audit chain is keyed (event {} is HMAC-SHA256 under JITBOT_AUDIT_KEY): set JITBOT_AUDIT_KEY to the same key",
                head.seq
            )))
        }
        (false, false) => tracing::warn!(
            "JITBOT_AUDIT_KEY is not set: the audit chain is plain SHA-256, which shows edits but not a rewrite of the whole log by whoever can write the store; set a key of 32+ bytes kept outside the store"
        ),
    }
    Ok(())
}

pub async fn start(
    parts: ServerParts,
    listener: TcpListener,
) -> Result<RunningServer, ServerError> {
    let store: Arc<dyn Store> =
        crate::store::open_keyed(&parts.store, parts.clock.clone(), parts.audit_key.clone())
            .await?;
    prepare_audit_chain(&*store, parts.audit_key.is_some(), parts.clock.now()).await?;
    let policy = Arc::new(parts.policy);
    let wakers = Wakers::default();

    let mut platforms: HashMap<Platform, Arc<dyn ChatPlatform>> = HashMap::new();
    let mut directories = HashMap::new();
    let slack_ingress = match &parts.slack {
        Some(settings) => {
            let client = Arc::new(
                SlackClient::new(&settings.api_url, settings.bot_token.clone())
                    .map_err(|e| ServerError::Slack(e.to_string()))?,
            );
            platforms.insert(Platform::Slack, client.clone());
            directories.insert(
                Platform::Slack,
                Arc::new(CachedDirectory::new(client.clone())),
            );
            Some(SlackIngress {
                signing_secret: settings.signing_secret.clone(),
                client,
            })
        }
        None => {
            tracing::warn!(
                "SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are not set: the Slack routes answer 404"
            );
            None
        }
    };

    let teams_reachable = parts.teams.is_some() || parts.teams_webhook_secret.is_some();
    if teams_reachable && parts.ingress.teams_tenants.is_none() {
        tracing::warn!(
            "TEAMS_ALLOWED_TENANTS is not set: a Teams user of any tenant can reach jitbot; set it to your tenant id"
        );
    }
    let teams_ingress = match &parts.teams {
        Some(settings) => {
            let client = Arc::new(
                TeamsClient::new(settings, Arc::new(StoreContactBook::new(store.clone())))
                    .map_err(|e| ServerError::Slack(e.to_string()))?,
            );
            platforms.insert(Platform::Teams, client.clone());
            directories.insert(
                Platform::Teams,
                Arc::new(CachedDirectory::new(client.clone())),
            );
            Some(TeamsIngress {
                auth: BotAuthenticator::new(&settings.app_id, &settings.openid_metadata_url),
                client,
            })
        }
        None => None,
    };
    let mailer = Mailer::new(&parts.email)
        .map_err(ServerError::Email)?
        .map(Arc::new);
    let mut engine = Engine::new(
        parts.clock.clone(),
        store.clone(),
        policy.clone(),
        parts.providers,
        directories,
        wakers.clone(),
    )
    .with_chat(platforms.clone())
    .with_limits(parts.user_limits)
    .with_paging(parts.paging.clone());
    for variable in crate::on_call::missing_credentials(&policy, &parts.paging) {
        tracing::error!(
            variable,
            "the policy names on-call schedules but {variable} is not set; nobody counts as on call for them"
        );
    }
    if mailer.is_some() {
        engine = engine.with_email();
    }
    let engine = Arc::new(engine);
    // Every live grant must still be revocable as it was granted.
    engine.check_live_grants().await?;
    // Socket Mode: a token Slack refuses stops the start, with the reason;
    // Slack out of reach does not (the connection is retried).
    let socket_mode = match parts
        .slack
        .as_ref()
        .and_then(|s| s.app_token.clone().map(|token| (s.api_url.clone(), token)))
    {
        Some((api_url, app_token)) => {
            let socket = SocketMode::new(&api_url, app_token, engine.metrics().clone())
                .map_err(|e| ServerError::Slack(e.to_string()))?;
            let first_url = match tokio::time::timeout(SOCKET_CHECK_TIMEOUT, socket.open_url())
                .await
            {
                Ok(Ok(url)) => Some(url),
                Ok(Err(refused @ OpenError::Refused(_))) => {
                    return Err(ServerError::Slack(refused.to_string()))
                }
                Ok(Err(OpenError::Failed(error))) => {
                    tracing::warn!(%error, "cannot open a Socket Mode connection yet; retrying in the background");
                    None
                }
                Err(_) => {
                    tracing::warn!("Slack did not answer apps.connections.open in time; retrying in the background");
                    None
                }
            };
            Some((socket, first_url))
        }
        None => None,
    };
    let cancel = CancellationToken::new();
    let workers = spawn_workers(&engine, policy, platforms, mailer, &wakers, &cancel);
    let approval_pages = parts
        .email
        .token_key
        .clone()
        .map(|key| ApprovalPages::new(TokenKey::new(key)));

    let state = Arc::new(AppState {
        engine,
        slack: slack_ingress,
        teams: teams_ingress,
        teams_webhook_secret: parts.teams_webhook_secret.clone(),
        api: ApiAuth::new(&parts.api_tokens),
        admission: Admission::new(parts.max_in_flight),
        intake: Intake::default(),
        ingress: parts.ingress.clone(),
        approval_pages,
    });
    let app = http::router(state.clone());
    let addr = listener.local_addr()?;
    let http_cancel = CancellationToken::new();
    let http_stop = http_cancel.clone();
    let socket = socket_mode.map(|(socket, first_url)| {
        tokio::spawn(socket.run(
            Arc::new(SocketIngress::new(state)),
            first_url,
            http_cancel.clone(),
        ))
    });
    let limits = ServeLimits {
        per_peer: parts.max_connections_per_peer,
    };
    let server = tokio::spawn(http::serve(listener, app, http_stop, limits));
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        task_cancel.cancelled().await;
        // 1. Stop taking requests; let the ones in flight finish.
        http_cancel.cancel();
        server.await??;
        if let Some(socket) = socket {
            socket.await?;
        }
        // 2. Stop the workers after their current job or delivery.
        workers.wait().await;
        // 3. Make everything durable.
        store.sync().await?;
        tracing::info!("stopped cleanly");
        Ok(())
    });
    tracing::info!(%addr, "jitbot listening");
    Ok(RunningServer {
        addr,
        cancel,
        task,
        wakers,
    })
}

async fn prune_replays(store: Arc<dyn Store>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(REPLAY_PRUNE_EVERY) => {}
        }
        let cutoff = chrono::Utc::now().timestamp() - verify::MAX_AGE_SECS - 1;
        if let Err(error) = store.forget_deliveries_before(cutoff).await {
            tracing::warn!(%error, "could not prune the replay cache");
        }
    }
}
