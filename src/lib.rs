//! jitbot: just-in-time access, requested and approved in chat, granted
//! through a provider, and revoked on time — across restarts and outages.
//!
//! # Layout
//! Arrows point inward: `http`, `chat`, `console` and `cli` call the
//! engine; only the engine and the two workers (`scheduler`, `outbox`)
//! touch the store; `domain` depends on nothing.
//! - [`domain`]: pure logic — ids, durations, the command grammar, the
//!   request lifecycle, policy decisions, routing, backoff, quotas, the
//!   sweep report, the audit hash chain, literal text. No I/O.
//! - [`config`]: environment settings (secrets) and the policy file, with
//!   line-precise errors (`config/policy/`: reader, problems, providers,
//!   groups).
//! - [`store`]: durable state — capability traits
//!   ([`store::RequestStore`], [`store::JobStore`], [`store::OutboxStore`],
//!   [`store::AuditStore`], [`store::RecordStore`]) and their two
//!   implementations, one file per capability: `store/sled/` (embedded, the
//!   default) and `store/postgres/` (shared by replicas, with leases).
//! - [`postgres`]: the PostgreSQL connection pool and TLS, shared by the
//!   store and the `postgres` provider.
//! - [`engine`]: the use cases — submit, click ([`engine::Click`], the one
//!   path every platform's Approve/Deny takes), decide, grant, end, extend,
//!   sweep, admin — each step one transaction (`engine/steps.rs`); who may
//!   act (`rights.rs`); what HTTP may ask of the store (`ingress.rs`,
//!   `views.rs`).
//! - [`scheduler`]: runs due jobs from the due-index, and the periodic
//!   standing-access sweeps.
//! - [`outbox`]: delivers owed messages, one queue per conversation, so one
//!   slow or throttled destination never delays another.
//! - [`chat`]: the [`chat::ChatPlatform`] trait, the card model and the
//!   platform wording; Slack and Teams adapters (stateless: Teams contacts
//!   go through a [`chat::teams::ContactBook`] the server wires in).
//! - [`email`]: the third way to approve — the SMTP mailer the outbox
//!   sends through, the approval email and notices (plain text and HTML),
//!   and the signed link tokens with the page's CSRF field.
//! - [`on_call`]: who is on call now, asked of PagerDuty or Opsgenie
//!   (for `auto_approve.on_call` and on-call approvers), cached briefly.
//! - [`slack_api`]: the Slack Web API calls shared by the chat adapter and
//!   the `slack_usergroup` provider.
//! - [`providers`]: the [`providers::Provider`] trait and the `webhook`,
//!   `exec`, `postgres`, `mysql`, `slack_usergroup`, `kubernetes`,
//!   `aws_identity_center`, `okta` and `entra` providers (the REST ones
//!   share `providers/rest.rs`).
//! - [`http`]: routes → engine: Slack, Teams, the `/api/v1` API (its view
//!   types shared with the CLI), the email approval page (`/approve/…`),
//!   health, readiness and metrics; admission
//!   control and timeouts for every connection.
//! - [`console`]: the terminal as a chat platform (`jitbot console`).
//! - [`telemetry`]: Prometheus metrics and worker heartbeats.
//! - [`outbound`]: describing outbound HTTP failures without leaking URLs.
//! - [`server`]: assembling and running all of it; graceful shutdown.
//! - [`cli`]: the `jitbot` command line: arguments, `serve`/`console`,
//!   offline commands, and the API client.
//! - [`clock`]: where "now" comes from (real, or moved by tests).

pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod email;
pub mod engine;
pub mod http;
pub mod on_call;
pub mod outbound;
pub mod outbox;
pub mod postgres;
pub mod providers;
pub mod scheduler;
pub mod server;
pub mod slack_api;
pub mod store;
pub mod telemetry;
