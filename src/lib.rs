//! jitbot: just-in-time access, requested and approved in chat, granted
//! through a provider, and revoked on time — across restarts and outages.
//!
//! # Layout
//! - [`domain`]: pure logic — ids, durations, the command grammar, the
//!   request lifecycle, policy decisions, the audit hash chain. No I/O.
//! - [`config`]: environment settings (secrets) and the policy file, with
//!   line-precise errors.
//! - [`store`]: the [`store::Store`] trait and its sled implementation:
//!   requests, due-index, outbox, audit chain, mappings, replay cache.
//! - [`engine`]: use cases — submit, decide, activate, expire, end, extend,
//!   sweep, admin views, commands — turning lifecycle steps into one
//!   transaction each.
//! - [`scheduler`]: the single task that runs due jobs from the due-index,
//!   and the periodic standing-access sweeps.
//! - [`chat`]: the [`chat::ChatPlatform`] trait, the card model, the outbox
//!   worker, and the Slack and Teams implementations.
//! - [`providers`]: the [`providers::Provider`] trait and the `webhook`,
//!   `exec`, `postgres` and `slack_usergroup` providers.
//! - [`http`]: axum routes → engine: Slack, Teams, the `/api/v1` API, health,
//!   readiness and metrics.
//! - [`console`]: the terminal as a chat platform (`jitbot console`).
//! - [`telemetry`]: Prometheus metrics and worker heartbeats.
//! - [`server`]: assembling and running all of it; graceful shutdown.
//! - [`cli`]: the `jitbot` command line, offline and over the API.
//! - [`clock`]: where "now" comes from (real, or tokio's for tests).

pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod engine;
pub mod http;
pub mod outbound;
pub mod outbox;
pub mod providers;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
