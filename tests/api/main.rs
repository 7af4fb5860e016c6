//! Integration tests: the real server, store, scheduler and outbox, with
//! only Slack's Web API and an IAM webhook faked over loopback.

mod admin;
mod approvals;
mod aws;
mod backend;
mod browser;
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
mod openapi;
mod operations;
mod pg;
mod postgres;
mod process;
mod promises;
mod requests;
mod slack_ingress;
mod sweeps;
mod teams;
mod tickets;
mod unused;
mod usergroups;
