//! Microsoft Teams: the Bot Framework's activities and their authentication
//! (JWT), outgoing webhooks (HMAC), Adaptive Cards, and the Bot Connector
//! client. The engine sees Teams users by AAD object id and Teams
//! conversations as channels.

pub mod activity;
pub mod auth;
pub mod cards;
pub mod client;
pub mod text;
pub mod webhook;

pub use client::TeamsClient;
