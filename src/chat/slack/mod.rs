//! Slack: request verification, incoming payloads, Block Kit rendering, and
//! the Web API client.

pub mod blocks;
pub mod client;
pub mod payloads;
pub mod verify;

pub use client::SlackClient;
