//! Operator commands that talk to the running server through its HTTP API
//! (`JITBOT_API_URL`, `JITBOT_API_TOKEN`): human-readable tables by default,
//! the API's JSON with `--json`.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{EXIT_BAD_SETUP, EXIT_FAILED, EXIT_OK};
use crate::config::{EnvSource, Secret, Settings};
use crate::domain::audit::ChainHead;
use crate::http::api::views::{MappingJson, RequestJson, SweepJson};

/// How long the CLI waits for the server (an audit export may stream longer).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct Remote {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

/// A failed call: what to print, and the exit code.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) code: i32,
}

impl Failure {
    fn setup(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: EXIT_BAD_SETUP,
        }
    }
}

impl Remote {
    /// The server from `JITBOT_API_URL` (default: the address the server
    /// listens on) and the token from `JITBOT_API_TOKEN`.
    pub(super) fn from_env(env: &EnvSource, settings: &Settings) -> Result<Remote, Failure> {
        let token = env.get("JITBOT_API_TOKEN").ok_or_else(|| {
            Failure::setup("JITBOT_API_TOKEN is not set: the API needs one of the tokens in the server's JITBOT_API_TOKENS")
        })?;
        let base = env
            .get("JITBOT_API_URL")
            .unwrap_or_else(|| format!("http://{}", settings.listen))
            .trim_end_matches('/')
            .to_string();
        let http = crate::outbound::client_builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| Failure::setup(e.to_string()))?;
        Ok(Remote {
            base,
            token: Secret::new(token),
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                Failure::setup(format!(
                    "cannot reach the jitbot server at {} ({}); is it running, and is JITBOT_API_URL right?",
                    self.base,
                    if e.is_timeout() { "timed out" } else { "connection failed" }
                ))
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let reason = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| status.to_string());
        Err(Failure {
            message: format!("{reason} (HTTP {})", status.as_u16()),
            code: EXIT_FAILED,
        })
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let response = self.send(method, path, body).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response.json().await.map_err(|e| Failure {
            message: format!("the server's answer is not JSON: {e}"),
            code: EXIT_FAILED,
        })
    }
}

/// Run one remote command and turn its outcome into an exit code.
pub(super) async fn run(
    outcome: impl std::future::Future<Output = Result<String, Failure>>,
) -> i32 {
    match outcome.await {
        Ok(text) => {
            print!("{text}");
            EXIT_OK
        }
        Err(failure) => {
            eprintln!("jitbot: {}", failure.message);
            failure.code
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// The API's answer read as its own view type (`--json` prints it as sent).
fn read<T: DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| Failure {
        message: format!("the server's answer is not what this jitbot expects ({e}); are the CLI and the server the same version?"),
        code: EXIT_FAILED,
    })
}

/// A table cell: the text, or `-` when there is none.
fn cell(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A time as the API writes it (RFC 3339, UTC, `Z`).
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `jitbot grants`: active grants, soonest expiry first.
pub(super) async fn grants(remote: &Remote, json: bool) -> Result<String, Failure> {
    let answer = remote
        .json(reqwest::Method::GET, "/api/v1/grants", None)
        .await?;
    if json {
        return Ok(pretty(&answer));
    }
    let grants: Vec<RequestJson> = read(answer)?;
    if grants.is_empty() {
        return Ok("no active grants\n".into());
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|grant| {
            vec![
                grant.grant_id.clone(),
                grant.group.clone(),
                grant.requester.user.to_string(),
                cell(grant.expires_at.map(timestamp)),
                grant.reason.clone(),
            ]
        })
        .collect();
    Ok(table(
        &["GRANT", "GROUP", "USER", "EXPIRES", "REASON"],
        &rows,
    ))
}

/// `jitbot unused [group]`: watched access and its last seen use.
pub(super) async fn unused(
    remote: &Remote,
    group: Option<&str>,
    json: bool,
) -> Result<String, Failure> {
    let path = match group {
        Some(group) => format!(
            "/api/v1/unused?{}",
            serde_urlencoded::to_string([("group", group)]).unwrap_or_default()
        ),
        None => "/api/v1/unused".to_string(),
    };
    let answer = remote.json(reqwest::Method::GET, &path, None).await?;
    if json {
        return Ok(pretty(&answer));
    }
    let entries: Vec<crate::engine::UnusedEntry> = read(answer)?;
    if entries.is_empty() {
        return Ok("nothing watched\n".into());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                entry.group.clone(),
                entry.principal.clone(),
                entry
                    .grant_id
                    .clone()
                    .unwrap_or_else(|| "(standing)".into()),
                entry
                    .last_used
                    .map(timestamp)
                    .unwrap_or_else(|| "never seen".into()),
            ]
        })
        .collect();
    Ok(table(&["GROUP", "PRINCIPAL", "GRANT", "LAST USED"], &rows))
}

/// `jitbot revoke <grant> <reason>` (admin token).
pub(super) async fn revoke(
    remote: &Remote,
    grant: &str,
    reason: &str,
    json: bool,
) -> Result<String, Failure> {
    let path = format!("/api/v1/grants/{grant}/revoke");
    let body = serde_json::json!({ "reason": reason });
    let answer = remote
        .json(reqwest::Method::POST, &path, Some(body))
        .await?;
    if json {
        return Ok(pretty(&answer));
    }
    let revoked: RequestJson = read(answer)?;
    Ok(format!(
        "revoking {} ({} for {}); the holder is told why\n",
        revoked.grant_id, revoked.group, revoked.requester.user
    ))
}

/// `jitbot mappings [list|add|remove]`.
pub(super) async fn mappings(
    remote: &Remote,
    change: Option<(bool, String, String, String)>,
    json: bool,
) -> Result<String, Failure> {
    if let Some((add, group, platform, channel)) = change {
        let path = format!("/api/v1/mappings/{group}/{platform}/{channel}");
        let method = if add {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        let answer = remote.json(method, &path, None).await?;
        if json {
            return Ok(pretty(&answer));
        }
        return Ok(if add {
            format!("{group}: approval cards go to {platform} channel {channel}\n")
        } else {
            format!("{group}: approval cards no longer go to {platform} channel {channel}\n")
        });
    }
    let answer = remote
        .json(reqwest::Method::GET, "/api/v1/mappings", None)
        .await?;
    if json {
        return Ok(pretty(&answer));
    }
    let mappings: Vec<MappingJson> = read(answer)?;
    if mappings.is_empty() {
        return Ok("no approval channels\n".into());
    }
    let rows: Vec<Vec<String>> = mappings
        .iter()
        .map(|mapping| {
            vec![
                mapping.group.clone(),
                mapping.platform.to_string(),
                mapping.channel.clone(),
                mapping.source.clone(),
                cell(mapping.mapped_by.as_ref().map(|by| &by.user)),
                cell(mapping.mapped_at.map(timestamp)),
            ]
        })
        .collect();
    Ok(table(
        &[
            "GROUP",
            "PLATFORM",
            "CHANNEL",
            "SOURCE",
            "MAPPED BY",
            "MAPPED AT",
        ],
        &rows,
    ))
}

/// `jitbot sweep --group G [--dry-run]` against the running server.
pub(super) async fn sweep(
    remote: &Remote,
    group: &str,
    dry_run: bool,
    json: bool,
) -> Result<String, Failure> {
    let path = format!("/api/v1/sweeps/{group}?dry_run={dry_run}");
    let answer = remote.json(reqwest::Method::POST, &path, None).await?;
    if json {
        return Ok(pretty(&answer));
    }
    let report: SweepJson = read(answer)?;
    let head = format!(
        "{} ({} via {}, sweep = {}{})",
        report.group,
        report.target,
        report.provider,
        report.mode,
        if dry_run { ", dry run" } else { "" }
    );
    if let Some(error) = &report.error {
        return Err(Failure {
            message: format!("{head}: could not list holders: {error}"),
            code: EXIT_FAILED,
        });
    }
    let mut out = format!(
        "{head}: {} holder(s), {} allowed standing, {} without a grant\n",
        cell(report.holders),
        report.allowed.len(),
        report.findings.len()
    );
    let mut failed = false;
    for finding in &report.findings {
        let owner = match &finding.owner {
            Some(owner) => format!(" ({}:{})", owner.platform, owner.user),
            None => String::new(),
        };
        let action = match finding.action.as_str() {
            "would_revoke" => "would be revoked".to_string(),
            "revoke_failed" => {
                failed = true;
                format!("revoke failed: {}", cell(finding.error.as_ref()))
            }
            "now_granted" => "granted meanwhile; left alone".to_string(),
            other => other.to_string(),
        };
        out.push_str(&format!("  {}{owner}: {action}\n", finding.principal));
    }
    if let Some(why) = &report.held_back {
        out.push_str(&format!("  nothing revoked: {why}\n"));
    }
    if failed {
        return Err(Failure {
            message: out,
            code: EXIT_FAILED,
        });
    }
    Ok(out)
}

/// `jitbot audit export`: the audit log as JSON lines on stdout, streamed.
pub(super) async fn audit_export(
    remote: &Remote,
    since: Option<&str>,
    after: Option<u64>,
) -> Result<String, Failure> {
    let mut query = Vec::new();
    if let Some(since) = since {
        query.push(format!("since={}", url_encode(since)));
    }
    if let Some(after) = after {
        query.push(format!("after={after}"));
    }
    let path = if query.is_empty() {
        "/api/v1/audit".to_string()
    } else {
        format!("/api/v1/audit?{}", query.join("&"))
    };
    let mut response = remote.send(reqwest::Method::GET, &path, None).await?;
    let mut stdout = std::io::stdout().lock();
    let broken = |e: &dyn std::fmt::Display| Failure {
        message: format!("the export stopped: {e}"),
        code: EXIT_FAILED,
    };
    let head = response
        .headers()
        .get(crate::http::api::AUDIT_HEAD_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(ChainHead::parse)
        .transpose()
        .map_err(|e| broken(&e))?;
    while let Some(chunk) = response.chunk().await.map_err(|e| broken(&e))? {
        stdout.write_all(&chunk).map_err(|e| broken(&e))?;
    }
    stdout.flush().map_err(|e| broken(&e))?;
    // Last, on stderr so stdout stays one event a line: the head the
    // export stopped at, what to ship and what `audit verify --head` takes.
    if let Some(head) = head {
        eprintln!("audit head: {}", head.shown());
    }
    Ok(String::new())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["G-7K3Q9X".to_string(), "prod-db".to_string()],
            vec!["G-1".to_string(), "a".to_string()],
        ];
        assert_eq!(
            table(&["GRANT", "GROUP"], &rows),
            "GRANT     GROUP\nG-7K3Q9X  prod-db\nG-1       a\n"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            url_encode("2026-11-23T10:00:00+01:00"),
            "2026-11-23T10%3A00%3A00%2B01%3A00"
        );
    }
}
