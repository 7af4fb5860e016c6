//! The command line's shape (clap): subcommands, their arguments and help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "jitbot",
    version,
    about = "Just-in-time access, requested and approved in chat"
)]
pub struct Cli {
    /// Read settings from this KEY=value file too (the real environment wins).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the bot (the default).
    Serve,
    /// The whole bot with the terminal as its chat: no Slack needed.
    Console {
        /// Who you are at first (switch with `/as U0LEAD`).
        #[arg(long = "as", value_name = "USER_ID", default_value = "U0ALICE")]
        user: String,
        /// A Slack user group the console should know, e.g. S0DBAS=U0DBA,U0LEAD
        /// (repeatable).
        #[arg(long = "group", value_name = "ID=USERS")]
        groups: Vec<String>,
        /// Use the configured store (JITBOT_DATABASE_URL, or the sled
        /// directory: --data-dir, else JITBOT_DATA_DIR) instead of a fresh
        /// one that is discarded at the end. Requests, grants and audit
        /// events of the console then land where a server's do.
        #[arg(long)]
        use_configured_store: bool,
        /// The sled directory to use with --use-configured-store.
        #[arg(long, value_name = "PATH", requires = "use_configured_store")]
        data_dir: Option<PathBuf>,
    },
    /// Validate a policy file and report every problem with its line and column.
    CheckConfig {
        /// Policy file; defaults to $JITBOT_CONFIG.
        path: Option<PathBuf>,
    },
    /// Active grants, soonest expiry first (asks the running server).
    Grants {
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Watched grants and standing holders with the last use jitbot saw
    /// (groups with `idle_release` or `sweep_unused`; admin token).
    Unused {
        /// Only this group.
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant now, telling the holder why (admin token).
    Revoke {
        /// The grant, like G-7K3Q9X.
        grant: String,
        /// Why; the holder is told.
        #[arg(required = true, num_args = 1..)]
        reason: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Where each group's approval cards go; `add` and `remove` change the
    /// run-time mappings (admin token).
    Mappings {
        #[command(subcommand)]
        change: Option<MappingChange>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// The audit log: `verify` its hash chain (offline), `export` it (API).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The store itself: `migrate --from-sled DIR` moves to PostgreSQL.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Look for standing access: holders of a group's target without an
    /// active grant. With JITBOT_API_TOKEN set, the running server sweeps
    /// (admin token, --group needed); otherwise the store is opened directly
    /// (stop the server first).
    Sweep {
        /// Only print what would happen: revoke, send and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Sweep this group only (with --dry-run, even if its sweep is off).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// With the API: its JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped sled store into the empty PostgreSQL database named
    /// by JITBOT_DATABASE_URL (creating its schema), then verify the copied
    /// audit chain. Refuses a database that already holds jitbot data.
    Migrate {
        /// The sled store's directory (the old JITBOT_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        from_sled: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain from the first event to the last
    /// (opens the store directly: a sled store only while the server is
    /// stopped). With JITBOT_AUDIT_KEY set, keyed links are checked under
    /// it and a log never keyed is refused.
    Verify {
        /// A head shipped earlier (`jitbot audit head`, or the last line of
        /// `jitbot audit export`): fail unless the log still reaches it
        /// unchanged (not truncated, not rewritten).
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
    },
    /// Print the audit chain's head as `<seq>:<hash>` (offline, like
    /// verify), to ship somewhere the store's writers cannot reach.
    Head,
    /// Write the audit log as JSON lines to stdout, oldest first (asks the
    /// running server; admin token).
    Export {
        /// Only events since this: an RFC 3339 time or a duration like 24h.
        #[arg(long)]
        since: Option<String>,
        /// Only events after this sequence number (to resume an export).
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingChange {
    /// Send a group's approval cards to a channel too.
    Add {
        group: String,
        /// The channel id (C… on Slack).
        channel: String,
        #[arg(long, default_value = "slack")]
        platform: String,
    },
    /// Stop sending a group's approval cards to a channel.
    Remove {
        group: String,
        channel: String,
        #[arg(long, default_value = "slack")]
        platform: String,
    },
}
