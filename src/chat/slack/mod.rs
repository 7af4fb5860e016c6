//! Slack: request verification, incoming payloads, Block Kit rendering,
//! the Web API client, and Socket Mode's connection.

pub mod blocks;
pub mod client;
pub mod payloads;
pub mod socket;
pub mod verify;

pub use client::SlackClient;
