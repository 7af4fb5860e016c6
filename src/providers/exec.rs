//! The `exec` provider: runs a program with an argument vector (never through
//! a shell), with a timeout. Exit status 0 is success. The optional
//! `holders` command prints the target's holders, one principal per line;
//! the optional `activity` command prints `in_use`, the RFC 3339 time of
//! the last use, or `never` / `unused` (or nothing) when it was not used.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use super::{Access, Activity, Provider, ProviderError};

/// How much of the program's stderr goes into the error message.
const STDERR_EXCERPT_CHARS: usize = 300;

/// A holders listing longer than this is refused rather than half-read.
const MAX_HOLDERS_OUTPUT: usize = 4 * 1024 * 1024;

/// The program runs with a cleared environment (jitbot's own secrets must
/// not leak into it) plus this PATH and the `JITBOT_*` variables.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argument vectors, with `{placeholders}`, from the policy.
pub struct Commands {
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
    pub holders: Option<Vec<String>>,
    pub activity: Option<Vec<String>>,
}

pub struct ExecProvider {
    name: String,
    commands: Commands,
    timeout: Duration,
}

impl ExecProvider {
    pub fn new(name: &str, commands: Commands, timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            commands,
            timeout,
        }
    }

    async fn run(
        &self,
        action: &str,
        template: &[String],
        access: &Access,
    ) -> Result<(), ProviderError> {
        let argv: Vec<String> = template.iter().map(|arg| substitute(arg, access)).collect();
        self.execute(action, &argv, access, Stdio::null())
            .await
            .map(drop)
    }

    /// Run `argv` to completion within the timeout; its stdout if `stdout`
    /// is piped, and a failure (with a stderr excerpt) on a non-zero exit.
    async fn execute(
        &self,
        action: &str,
        argv: &[String],
        access: &Access,
        stdout: Stdio,
    ) -> Result<Vec<u8>, ProviderError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ProviderError::new(
                &self.name,
                format!("no {action} command configured"),
            ));
        };
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("JITBOT_ACTION", action)
            .env("JITBOT_PRINCIPAL", &access.principal)
            .env("JITBOT_TARGET", &access.target)
            .env("JITBOT_GROUP", &access.group)
            .env(
                "JITBOT_REQUEST_ID",
                access.request_id.as_deref().unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            // If the timeout fires, dropping the child kills it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ProviderError::new(&self.name, format!("{action}: cannot run {program}: {e}"))
            })?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(result) => result
                .map_err(|e| ProviderError::new(&self.name, format!("{action}: {program}: {e}")))?,
            Err(_) => {
                return Err(ProviderError::new(
                    &self.name,
                    format!(
                        "{action}: {program} did not finish within {:?} and was killed",
                        self.timeout
                    ),
                ))
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let excerpt: String = stderr.trim().chars().take(STDERR_EXCERPT_CHARS).collect();
        let status = match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_string(),
        };
        Err(ProviderError::new(
            &self.name,
            if excerpt.is_empty() {
                format!("{action}: {program} failed with {status}")
            } else {
                format!("{action}: {program} failed with {status}: {excerpt}")
            },
        ))
    }
}

/// Fill the `{placeholders}` of one argument, in one pass (values are
/// never scanned again). Each argument stays one argument whatever the
/// values contain: there is no shell to split it.
fn substitute(arg: &str, access: &Access) -> String {
    let filled = crate::domain::template::fill::<std::convert::Infallible>(arg, |name| {
        Ok(Some(match name {
            "principal" => access.principal.clone(),
            "target" => access.target.clone(),
            "group" => access.group.clone(),
            "request_id" => access.request_id.clone().unwrap_or_default(),
            "grant_id" => access.grant_id.clone().unwrap_or_default(),
            "user_id" => access
                .user
                .as_ref()
                .map(|user| user.id.clone())
                .unwrap_or_default(),
            "expires_at" => access
                .expires_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            _ => return Ok(None),
        }))
    });
    match filled {
        Ok(text) => text,
        Err(never) => match never {},
    }
}

/// One principal per non-empty line; surrounding blanks are not part of it.
fn parse_holders(stdout: &[u8]) -> Result<Vec<String>, String> {
    if stdout.len() > MAX_HOLDERS_OUTPUT {
        return Err(format!(
            "holders: the listing is over {MAX_HOLDERS_OUTPUT} bytes"
        ));
    }
    let text = std::str::from_utf8(stdout).map_err(|_| "holders: output is not UTF-8")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// What the activity command printed: `in_use`, a last-used time, or
/// `never`/nothing. Anything else is not an answer.
fn parse_activity(stdout: &[u8]) -> Result<Activity, String> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| "activity: output is not UTF-8".to_string())?
        .trim();
    match text {
        "in_use" => Ok(Activity {
            in_use: true,
            last_used: None,
        }),
        "" | "never" | "unused" | "not_in_use" => Ok(Activity {
            in_use: false,
            last_used: None,
        }),
        other => chrono::DateTime::parse_from_rfc3339(other)
            .map(|at| Activity {
                in_use: false,
                last_used: Some(at.with_timezone(&chrono::Utc)),
            })
            .map_err(|_| {
                let shown: String = other.chars().take(80).collect();
                format!("activity: expected `in_use`, an RFC 3339 time or `never`, got {shown:?}")
            }),
    }
}

#[async_trait]
impl Provider for ExecProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.run("grant", &self.commands.grant, access).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.run("revoke", &self.commands.revoke, access).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let Some(template) = &self.commands.holders else {
            return Err(ProviderError::new(
                &self.name,
                "no `holders` command is configured",
            ));
        };
        let listing = Access {
            target: target.to_string(),
            ..Access::default()
        };
        let argv: Vec<String> = template
            .iter()
            .map(|arg| substitute(arg, &listing))
            .collect();
        let stdout = self
            .execute("holders", &argv, &listing, Stdio::piped())
            .await?;
        parse_holders(&stdout).map_err(|message| ProviderError::new(&self.name, message))
    }

    async fn activity(&self, principal: &str, target: &str) -> Result<Activity, ProviderError> {
        let Some(template) = &self.commands.activity else {
            return Err(ProviderError::new(
                &self.name,
                "no `activity` command is configured",
            ));
        };
        let asked = Access {
            principal: principal.to_string(),
            target: target.to_string(),
            ..Access::default()
        };
        let argv: Vec<String> = template.iter().map(|arg| substitute(arg, &asked)).collect();
        let stdout = self
            .execute("activity", &argv, &asked, Stdio::piped())
            .await?;
        parse_activity(&stdout).map_err(|message| ProviderError::new(&self.name, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::AccessUser;

    fn access(principal: &str) -> Access {
        Access {
            request_id: Some("R-7K3Q9X".into()),
            grant_id: Some("G-7K3Q9X".into()),
            user: Some(AccessUser {
                platform: "slack".into(),
                id: "U0ALICE".into(),
                name: "alice".into(),
                email: None,
            }),
            principal: principal.into(),
            group: "prod-db".into(),
            target: "prod_rw".into(),
            expires_at: None,
            details: Default::default(),
        }
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn provider(grant: &[&str]) -> ExecProvider {
        ExecProvider::new(
            "shell",
            Commands {
                grant: argv(grant),
                revoke: argv(&["/bin/true"]),
                holders: None,
                activity: None,
            },
            Duration::from_secs(5),
        )
    }

    fn lister(holders: &[&str]) -> ExecProvider {
        ExecProvider::new(
            "shell",
            Commands {
                grant: argv(&["/bin/true"]),
                revoke: argv(&["/bin/true"]),
                holders: Some(argv(holders)),
                activity: None,
            },
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn holders_are_read_one_per_line() {
        // The target arrives as an argument; blank lines and padding are not principals.
        let p = lister(&[
            "/bin/sh",
            "-c",
            "test \"$1\" = prod_rw && printf 'alice\\n\\n  bob \\nsvc_app\\n'",
            "list-role",
            "{target}",
        ]);
        assert_eq!(
            p.holders("prod_rw").await.unwrap(),
            vec!["alice", "bob", "svc_app"]
        );
        let err = p.holders("other").await.unwrap_err();
        assert!(
            err.message
                .contains("holders: /bin/sh failed with exit status 1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_a_holders_command_the_listing_is_refused() {
        let err = provider(&["/bin/true"])
            .holders("prod_rw")
            .await
            .unwrap_err();
        assert!(err.message.contains("no `holders` command"), "{err}");
    }

    #[tokio::test]
    async fn arguments_are_passed_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let script = format!("printf '%s\\n' \"$@\" > {}", out.display());
        // `sh -c SCRIPT NAME ARGS...`: the principal arrives as one argument
        // and is never interpreted.
        let p = provider(&[
            "/bin/sh",
            "-c",
            &script,
            "grant-role",
            "{principal}",
            "{target}",
        ]);
        p.grant(&access("alice; touch /tmp/pwned $(id)"))
            .await
            .unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written, "alice; touch /tmp/pwned $(id)\nprod_rw\n");
    }

    #[test]
    fn a_value_is_never_read_as_a_placeholder() {
        let mut tricky = access("x{target}y");
        tricky.target = "exec_role".into();
        assert_eq!(substitute("{principal}", &tricky), "x{target}y");
        assert_eq!(
            substitute("{target}:{principal}", &tricky),
            "exec_role:x{target}y"
        );
    }

    #[tokio::test]
    async fn non_zero_exit_is_a_failure_with_stderr() {
        let p = provider(&["/bin/sh", "-c", "echo 'role missing' >&2; exit 3"]);
        let err = p.grant(&access("alice")).await.unwrap_err();
        assert_eq!(err.provider, "shell");
        assert!(err.message.contains("exit status 3: role missing"), "{err}");
    }

    #[tokio::test]
    async fn secrets_in_our_environment_do_not_reach_the_program() {
        let p = provider(&[
            "/bin/sh",
            "-c",
            "test -z \"$SLACK_BOT_TOKEN\" && test \"$JITBOT_TARGET\" = prod_rw",
        ]);
        std::env::set_var("SLACK_BOT_TOKEN", "xoxb-leak");
        let result = p.grant(&access("alice")).await;
        std::env::remove_var("SLACK_BOT_TOKEN");
        result.unwrap();
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The shell writes its pid, then becomes `sleep` (same pid).
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let p = ExecProvider::new(
            "shell",
            Commands {
                grant: argv(&["/bin/sh", "-c", &script]),
                revoke: vec![],
                holders: None,
                activity: None,
            },
            Duration::from_millis(500),
        );
        let err = p.grant(&access("alice")).await.unwrap_err();
        assert!(err.message.contains("did not finish"), "{err}");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        // Gone, or a zombie waiting to be reaped: not sleeping on.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim().to_string()))
                .and_then(|rest| rest.chars().next());
            if matches!(state, None | Some('Z') | Some('X')) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hung program {pid} is still running ({state:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_reported() {
        let err = provider(&["/nonexistent/grant"])
            .grant(&access("a"))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("cannot run /nonexistent/grant"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn activity_is_asked_with_the_principal_and_target_and_read_as_documented() {
        let p = ExecProvider::new(
            "shell",
            Commands {
                grant: argv(&["/bin/true"]),
                revoke: argv(&["/bin/true"]),
                holders: None,
                activity: Some(argv(&[
                    "/bin/sh",
                    "-c",
                    "case \"$1:$2\" in alice:prod_rw) echo in_use;; bob:prod_rw) echo 2026-11-01T10:00:00Z;; carol:prod_rw) echo never;; *) echo perhaps;; esac",
                    "activity",
                    "{principal}",
                    "{target}",
                ])),
            },
            Duration::from_secs(5),
        );
        let alice = p.activity("alice", "prod_rw").await.unwrap();
        assert!(alice.in_use);
        let bob = p.activity("bob", "prod_rw").await.unwrap();
        assert!(!bob.in_use);
        assert_eq!(
            bob.last_used.unwrap().to_rfc3339(),
            "2026-11-01T10:00:00+00:00"
        );
        let carol = p.activity("carol", "prod_rw").await.unwrap();
        assert_eq!((carol.in_use, carol.last_used), (false, None));
        // An answer that is none of the three is an error, never "unused".
        let error = p.activity("dave", "prod_rw").await.unwrap_err();
        assert!(error.message.contains("perhaps"), "{error}");
    }
}
