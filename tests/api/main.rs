//! Integration tests: the real server, store, scheduler and outbox, with
//! only Slack's Web API and an IAM webhook faked over loopback.

// The tests' own clients talk to the server under test and its fakes;
// the no-redirect constructor (clippy.toml) is for jitbot's outbound calls.
#![allow(clippy::disallowed_methods)]

mod admin;
mod app_home;
mod approvals;
mod audit_chain;
mod aws;
mod backend;
mod break_glass;
mod browser;
mod bundles;
mod chains;
mod cli;
mod console;
mod delivery;
mod durability;
mod email;
mod ending;
mod extensions;
mod hardening;
mod helpers;
mod http_api;
mod identity;
mod idp;
mod kubernetes;
mod mailbox;
mod manifests;
mod mariadb;
mod mysql;
mod on_call;
mod openapi;
mod operations;
mod pg;
mod postgres;
mod process;
mod promises;
mod redirects;
mod requests;
mod security;
mod slack_ingress;
mod socket_mode;
mod sweeps;
mod teams;
mod tickets;
mod unused;
mod usergroups;
