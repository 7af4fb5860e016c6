//! The chat command grammar, shared by every platform: the text after `/jit`
//! in Slack, or after `jit` in a message to the bot.
//!
//! ```text
//! request <group> [duration] <reason…>   request            list    groups
//! cancel <request-id>    release <grant-id|group>    extend <grant-id> <duration> <reason…>
//! help   admin map|unmap <#channel> <group>   admin mappings   admin grants
//! breakglass <group> <duration> <reason…>
//! admin revoke <grant-id> <reason…>     admin audit [@user|group|break-glass] [since]
//! admin unused [group]
//! ```

use std::fmt;

use super::duration::HumanDuration;
use super::ids::{ChannelId, GrantId, GroupName, Platform, RequestId, UserId};
use super::text::literal;

/// A reason is shown on cards and stored in the audit log; a paragraph is
/// plenty, and the cap keeps a card within Slack's block text limit.
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `request <group>[,<group>…] [duration] <reason…>`; without a
    /// duration each group's `default_duration` applies. Several groups
    /// are one request, granted all together or not at all.
    Request {
        groups: Vec<GroupName>,
        duration: Option<HumanDuration>,
        reason: String,
    },
    /// `breakglass <group> <duration> <reason…>`: access at once, without
    /// approval, reviewed afterwards.
    BreakGlass {
        group: GroupName,
        duration: HumanDuration,
        reason: String,
    },
    /// `request` alone: open the request form.
    OpenRequestForm,
    /// `home`: one's grants, requests and what waits for one's approval,
    /// with buttons.
    Home,
    List,
    Groups,
    Cancel(RequestId),
    Release(ReleaseTarget),
    Extend {
        grant: GrantId,
        duration: HumanDuration,
        reason: String,
    },
    Help,
    Admin(AdminCommand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseTarget {
    Grant(GrantId),
    Group(GroupName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Map {
        channel: ChannelId,
        group: GroupName,
    },
    Unmap {
        channel: ChannelId,
        group: GroupName,
    },
    Mappings,
    /// Active grants; `page` is 1-based.
    Grants {
        page: usize,
    },
    Revoke {
        grant: GrantId,
        reason: String,
    },
    Audit {
        filter: Option<AuditFilter>,
        since: Option<HumanDuration>,
        page: usize,
    },
    /// Watched grants and standing holders with their last seen use.
    Unused {
        group: Option<GroupName>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFilter {
    User(UserId),
    Group(GroupName),
    /// `break-glass`: every break-glass use and its review.
    BreakGlass,
}

/// Why a command could not be understood, and what to type instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub problem: String,
    pub usage: &'static str,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Try `{}`.", self.problem, self.usage)
    }
}

impl std::error::Error for CommandError {}

pub const USAGE_REQUEST: &str =
    "/jit request <group>[,<group>…] <duration> <reason>, e.g. /jit request prod-db 2h fixing INC-123";
pub const USAGE_BREAK_GLASS: &str =
    "/jit breakglass <group> <duration> <reason>, e.g. /jit breakglass prod-db 30m INC-123 outage, paging did not answer";
pub const USAGE_CANCEL: &str = "/jit cancel <request-id>, e.g. /jit cancel R-7K3Q9X";
pub const USAGE_RELEASE: &str = "/jit release <grant-id|group>, e.g. /jit release G-7K3Q9X";
pub const USAGE_EXTEND: &str =
    "/jit extend <grant-id> <duration> <reason>, e.g. /jit extend G-7K3Q9X 1h still on INC-123";
pub const USAGE_ADMIN: &str = "/jit admin map|unmap <#channel> <group>, /jit admin mappings, /jit admin grants [page], /jit admin revoke <grant-id> <reason>, /jit admin audit [@user|group|break-glass] [since] [page], /jit admin unused [group]";
pub const USAGE_HELP: &str = "/jit help";

/// Parse the text after the command word. Leading `jit` (Teams) or `/jit` is
/// tolerated so the same function serves every platform.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let mut words = text.split_whitespace().peekable();
    if matches!(words.peek(), Some(w) if w.eq_ignore_ascii_case("jit") || w.eq_ignore_ascii_case("/jit"))
    {
        words.next();
    }
    let Some(verb) = words.next() else {
        return Ok(Command::Help);
    };
    let rest: Vec<&str> = words.collect();
    match verb.to_ascii_lowercase().as_str() {
        "request" | "req" => parse_request(&rest),
        "breakglass" | "break-glass" => parse_break_glass(&rest),
        "list" | "ls" => no_arguments(&rest, Command::List, "/jit list"),
        "groups" => no_arguments(&rest, Command::Groups, "/jit groups"),
        "home" => no_arguments(&rest, Command::Home, "/jit home"),
        "cancel" => parse_cancel(&rest),
        "release" => parse_release(&rest),
        "extend" => parse_extend(&rest),
        "help" => Ok(Command::Help),
        "admin" => parse_admin(&rest).map(Command::Admin),
        other => Err(CommandError {
            problem: format!("I don't know the command `{}`.", literal(other)),
            usage: USAGE_HELP,
        }),
    }
}

/// A parse error's text with the word it quotes marked as the person's
/// own, so what they typed is shown back literally.
fn echoed(error: &dyn fmt::Display, word: &str) -> String {
    let word = word.trim();
    format!("{error}.").replacen(&format!("`{word}`"), &format!("`{}`", literal(word)), 1)
}

fn no_arguments(
    rest: &[&str],
    command: Command,
    usage: &'static str,
) -> Result<Command, CommandError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(CommandError {
            problem: "This command takes no arguments.".into(),
            usage,
        })
    }
}

fn parse_request(rest: &[&str]) -> Result<Command, CommandError> {
    let Some((group_word, tail)) = rest.split_first() else {
        return Ok(Command::OpenRequestForm);
    };
    let groups = parse_groups(group_word)?;
    // The duration is optional, but a word that starts like a number is
    // meant as one: `2x`, `-1h`, `+1h` or `２h` is a mistake to point out,
    // not the first word of a reason (which would silently get the default).
    let (duration, reason_words) = match tail.split_first() {
        Some((word, after)) if looks_like_duration(word) => {
            let duration = HumanDuration::parse(word).map_err(|e| CommandError {
                problem: echoed(&e, word),
                usage: USAGE_REQUEST,
            })?;
            (Some(duration), after)
        }
        _ => (None, tail),
    };
    let reason = parse_reason(reason_words, USAGE_REQUEST)?;
    Ok(Command::Request {
        groups,
        duration,
        reason,
    })
}

/// `a,b,c`: several groups asked for at once, each named once.
fn parse_groups(word: &str) -> Result<Vec<GroupName>, CommandError> {
    let mut groups: Vec<GroupName> = Vec::new();
    for name in word.split(',') {
        let group = parse_group(name, USAGE_REQUEST)?;
        if groups.contains(&group) {
            return Err(CommandError {
                problem: format!("`{group}` is named twice."),
                usage: USAGE_REQUEST,
            });
        }
        groups.push(group);
    }
    Ok(groups)
}

fn parse_break_glass(rest: &[&str]) -> Result<Command, CommandError> {
    let bad = |problem: String| CommandError {
        problem,
        usage: USAGE_BREAK_GLASS,
    };
    let [group_word, duration_word, reason_words @ ..] = rest else {
        return Err(bad("Name the group, how long, and why.".into()));
    };
    let group = parse_group(group_word, USAGE_BREAK_GLASS)?;
    let duration =
        HumanDuration::parse(duration_word).map_err(|e| bad(echoed(&e, duration_word)))?;
    let reason = parse_reason(reason_words, USAGE_BREAK_GLASS)?;
    if reason.is_empty() {
        return Err(bad("Say why you break the glass.".into()));
    }
    Ok(Command::BreakGlass {
        group,
        duration,
        reason,
    })
}

/// Whether `word` is written as a duration, or as a number meant as one:
/// it starts with a digit of any script, or with a sign before one.
fn looks_like_duration(word: &str) -> bool {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) if c.is_numeric() => true,
        Some('+' | '-' | '\u{2212}') => chars.next().is_some_and(char::is_numeric),
        _ => false,
    }
}

fn parse_cancel(rest: &[&str]) -> Result<Command, CommandError> {
    match rest {
        [id] => RequestId::parse(id)
            .map(Command::Cancel)
            .map_err(|e| CommandError {
                problem: echoed(&e, id),
                usage: USAGE_CANCEL,
            }),
        _ => Err(CommandError {
            problem: "Name the request to cancel.".into(),
            usage: USAGE_CANCEL,
        }),
    }
}

fn parse_release(rest: &[&str]) -> Result<Command, CommandError> {
    let [target] = rest else {
        return Err(CommandError {
            problem: "Name the grant or group to release.".into(),
            usage: USAGE_RELEASE,
        });
    };
    if let Ok(grant) = GrantId::parse(target) {
        return Ok(Command::Release(ReleaseTarget::Grant(grant)));
    }
    parse_group(target, USAGE_RELEASE).map(|g| Command::Release(ReleaseTarget::Group(g)))
}

fn parse_extend(rest: &[&str]) -> Result<Command, CommandError> {
    let bad = |problem: String| CommandError {
        problem,
        usage: USAGE_EXTEND,
    };
    let [grant, duration, reason @ ..] = rest else {
        return Err(bad("Name the grant and how much longer you need it.".into()));
    };
    let grant = GrantId::parse(grant).map_err(|e| bad(echoed(&e, grant)))?;
    let duration = HumanDuration::parse(duration).map_err(|e| bad(echoed(&e, duration)))?;
    let reason = parse_reason(reason, USAGE_EXTEND)?;
    Ok(Command::Extend {
        grant,
        duration,
        reason,
    })
}

fn parse_admin(rest: &[&str]) -> Result<AdminCommand, CommandError> {
    let bad = |problem: &str| CommandError {
        problem: problem.to_string(),
        usage: USAGE_ADMIN,
    };
    let Some((verb, args)) = rest.split_first() else {
        return Err(bad("Which admin command?"));
    };
    match (verb.to_ascii_lowercase().as_str(), args) {
        ("map", [channel, group]) => Ok(AdminCommand::Map {
            channel: parse_channel_ref(channel)
                .ok_or_else(|| bad("That is not a channel; mention it like #approvals."))?,
            group: parse_group(group, USAGE_ADMIN)?,
        }),
        ("unmap", [channel, group]) => Ok(AdminCommand::Unmap {
            channel: parse_channel_ref(channel)
                .ok_or_else(|| bad("That is not a channel; mention it like #approvals."))?,
            group: parse_group(group, USAGE_ADMIN)?,
        }),
        ("map" | "unmap", _) => Err(bad("Name a channel and a group.")),
        ("mappings", []) => Ok(AdminCommand::Mappings),
        ("grants", []) => Ok(AdminCommand::Grants { page: 1 }),
        ("grants", [page]) => Ok(AdminCommand::Grants {
            page: parse_page(page).ok_or_else(|| bad("The page is a number, like 2."))?,
        }),
        ("revoke", [grant, reason @ ..]) => Ok(AdminCommand::Revoke {
            grant: GrantId::parse(grant).map_err(|e| bad(&echoed(&e, grant)))?,
            reason: parse_reason(reason, USAGE_ADMIN)?,
        }),
        ("revoke", []) => Err(bad("Name the grant to revoke and why.")),
        ("audit", args) if args.len() <= 3 => parse_audit(args),
        ("unused", []) => Ok(AdminCommand::Unused { group: None }),
        ("unused", [group]) => Ok(AdminCommand::Unused {
            group: Some(parse_group(group, USAGE_ADMIN)?),
        }),
        _ => Err(bad(&format!(
            "I don't know `admin {}` with those arguments.",
            literal(verb)
        ))),
    }
}

fn parse_audit(args: &[&str]) -> Result<AdminCommand, CommandError> {
    let mut filter = None;
    let mut since = None;
    let mut page = None;
    for word in args {
        if page.is_none() && word.chars().all(|c| c.is_ascii_digit()) {
            page = Some(parse_page(word).ok_or_else(|| CommandError {
                problem: "The page is a number from 1, like 2.".into(),
                usage: USAGE_ADMIN,
            })?);
        } else if since.is_none() && word.starts_with(|c: char| c.is_ascii_digit()) {
            since = Some(HumanDuration::parse(word).map_err(|e| CommandError {
                problem: echoed(&e, word),
                usage: USAGE_ADMIN,
            })?);
        } else if filter.is_none()
            && (word.eq_ignore_ascii_case("break-glass") || word.eq_ignore_ascii_case("breakglass"))
        {
            filter = Some(AuditFilter::BreakGlass);
        } else if filter.is_none() {
            filter = Some(match parse_user_ref(word) {
                Some(user) => AuditFilter::User(user),
                None => AuditFilter::Group(parse_group(word, USAGE_ADMIN)?),
            });
        } else {
            return Err(CommandError {
                problem: format!("Unexpected `{}`.", literal(word)),
                usage: USAGE_ADMIN,
            });
        }
    }
    Ok(AdminCommand::Audit {
        filter,
        since,
        page: page.unwrap_or(1),
    })
}

/// A page number: a whole number from 1.
fn parse_page(word: &str) -> Option<usize> {
    word.parse().ok().filter(|page| *page >= 1)
}

fn parse_group(word: &str, usage: &'static str) -> Result<GroupName, CommandError> {
    GroupName::parse(word).map_err(|e| CommandError {
        problem: echoed(&e, word),
        usage,
    })
}

fn parse_reason(words: &[&str], usage: &'static str) -> Result<String, CommandError> {
    let reason = unescape_entities(&words.join(" "));
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(CommandError {
            problem: format!("The reason is longer than {MAX_REASON_CHARS} characters."),
            usage,
        });
    }
    Ok(reason)
}

/// Slack escapes `&`, `<` and `>` in typed text; undo it so the reason is
/// stored as the person wrote it (renderers escape again for their format).
fn unescape_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A channel reference as Slack sends it (`<#C123|name>`, `<#C123>`), or
/// typed bare (`C123`, `#C123`), or a Teams channel's conversation id.
pub fn parse_channel_ref(word: &str) -> Option<ChannelId> {
    if is_teams_conversation(word) {
        return ChannelId::parse_for(Platform::Teams, word).ok();
    }
    let inner = word
        .strip_prefix("<#")
        .and_then(|w| w.strip_suffix('>'))
        .map(|w| w.split('|').next().unwrap_or(w))
        .unwrap_or_else(|| word.strip_prefix('#').unwrap_or(word));
    ChannelId::parse_for(Platform::Slack, inner).ok()
}

/// A user reference as Slack sends it (`<@U123|name>`, `<@U123>`), or typed
/// bare (`U123`, `@U123`).
pub fn parse_user_ref(word: &str) -> Option<UserId> {
    let inner = word
        .strip_prefix("<@")
        .and_then(|w| w.strip_suffix('>'))
        .map(|w| w.split('|').next().unwrap_or(w))
        .unwrap_or_else(|| word.strip_prefix('@').unwrap_or(word));
    let looks_like_user = inner.starts_with(['U', 'W']) && is_platform_id(inner);
    looks_like_user.then(|| UserId::new(inner))
}

/// The platform a channel reference belongs to: Teams for a Teams
/// conversation id, else the platform the command was typed on.
pub fn channel_platform(channel: &ChannelId, typed_on: Platform) -> Platform {
    if is_teams_conversation(channel.as_str()) {
        Platform::Teams
    } else {
        typed_on
    }
}

/// Whether a word is meant as a Teams conversation id (checked in full by
/// [`ChannelId::parse_for`]).
fn is_teams_conversation(text: &str) -> bool {
    text.starts_with("19:")
}

fn is_platform_id(text: &str) -> bool {
    text.len() >= 2
        && text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    #[test]
    fn request_with_duration_and_reason() {
        assert_eq!(
            parse("request prod-db 2h fixing INC-123").unwrap(),
            Command::Request {
                groups: vec![group("prod-db")],
                duration: Some(HumanDuration::parse("2h").unwrap()),
                reason: "fixing INC-123".into(),
            }
        );
    }

    #[test]
    fn request_without_duration_uses_the_default_later() {
        assert_eq!(
            parse("jit request prod-db fixing &lt;INC&gt; &amp; more").unwrap(),
            Command::Request {
                groups: vec![group("prod-db")],
                duration: None,
                reason: "fixing <INC> & more".into(),
            }
        );
    }

    #[test]
    fn several_groups_are_one_request() {
        assert_eq!(
            parse("request prod-db,billing,logs 1h INC-7").unwrap(),
            Command::Request {
                groups: vec![group("prod-db"), group("billing"), group("logs")],
                duration: Some(HumanDuration::parse("1h").unwrap()),
                reason: "INC-7".into(),
            }
        );
        for (typed, says) in [
            ("request prod-db,prod-db 1h x", "named twice"),
            ("request prod-db, 1h x", "not a valid group name"),
            ("request ,prod-db 1h x", "not a valid group name"),
            ("request a,B;c 1h x", "not a valid group name"),
        ] {
            let err = parse(typed).unwrap_err();
            assert!(err.to_string().contains(says), "{typed}: {err}");
            assert_eq!(err.usage, USAGE_REQUEST);
        }
    }

    #[test]
    fn home_takes_no_arguments() {
        assert_eq!(parse("jit home").unwrap(), Command::Home);
        assert!(parse("home sweet").is_err());
    }

    #[test]
    fn bare_request_opens_the_form() {
        assert_eq!(parse("request").unwrap(), Command::OpenRequestForm);
        assert_eq!(parse("").unwrap(), Command::Help);
    }

    #[test]
    fn typo_in_duration_is_explained() {
        let err = parse("request prod-db 2x fixing").unwrap_err();
        assert!(err.problem.contains("2x"), "{err}");
        assert_eq!(err.usage, USAGE_REQUEST);
    }

    #[test]
    fn signed_and_non_ascii_durations_are_refused_not_read_as_reason() {
        for word in [
            "-1h",
            "+1h",
            "\u{2212}1h",
            "\u{0661}h",
            "\u{ff12}h",
            "\u{0968}m",
        ] {
            let err = parse(&format!("request prod-db {word} fixing it")).unwrap_err();
            assert!(err.problem.contains("is not a duration"), "{word}: {err}");
            assert!(err.problem.contains("like 90s, 30m"), "{word}: {err}");
        }
        // A reason may still start with a word that is not a number.
        assert!(matches!(
            parse("request prod-db -- fixing it").unwrap(),
            Command::Request { duration: None, .. }
        ));
    }

    #[test]
    fn bad_group_name_is_explained() {
        let err = parse("request Prod;DB 1h x").unwrap_err();
        assert!(err.to_string().contains("not a valid group name"));
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse("list").unwrap(), Command::List);
        assert_eq!(parse("GROUPS").unwrap(), Command::Groups);
        assert_eq!(
            parse("cancel r-7k3q9x").unwrap(),
            Command::Cancel(RequestId::parse("R-7K3Q9X").unwrap())
        );
        assert_eq!(
            parse("release G-7K3Q9X").unwrap(),
            Command::Release(ReleaseTarget::Grant(GrantId::parse("G-7K3Q9X").unwrap()))
        );
        assert_eq!(
            parse("release prod-db").unwrap(),
            Command::Release(ReleaseTarget::Group(group("prod-db")))
        );
        assert!(matches!(
            parse("extend G-7K3Q9X 1h more time").unwrap(),
            Command::Extend { .. }
        ));
        assert!(parse("cancel").is_err());
        assert!(parse("list extra").is_err());
        assert!(parse("frobnicate")
            .unwrap_err()
            .to_string()
            .contains("frobnicate"));
    }

    #[test]
    fn admin_commands_accept_escaped_and_bare_references() {
        for channel in [
            "<#C0APPROVALS|approvals>",
            "<#C0APPROVALS>",
            "#C0APPROVALS",
            "C0APPROVALS",
        ] {
            assert_eq!(
                parse(&format!("admin map {channel} prod-db")).unwrap(),
                Command::Admin(AdminCommand::Map {
                    channel: ChannelId::new("C0APPROVALS"),
                    group: group("prod-db"),
                }),
                "{channel}"
            );
        }
        assert_eq!(
            parse("admin audit <@U0LEAD|lead> 2h").unwrap(),
            Command::Admin(AdminCommand::Audit {
                filter: Some(AuditFilter::User(UserId::new("U0LEAD"))),
                since: Some(HumanDuration::parse("2h").unwrap()),
                page: 1,
            })
        );
        assert_eq!(
            parse("admin audit prod-db 3").unwrap(),
            Command::Admin(AdminCommand::Audit {
                filter: Some(AuditFilter::Group(group("prod-db"))),
                since: None,
                page: 3,
            })
        );
        assert_eq!(
            parse("admin grants 2").unwrap(),
            Command::Admin(AdminCommand::Grants { page: 2 })
        );
        assert_eq!(
            parse("admin unused prod-db").unwrap(),
            Command::Admin(AdminCommand::Unused {
                group: Some(GroupName::parse("prod-db").unwrap())
            })
        );
        assert_eq!(
            parse("admin unused").unwrap(),
            Command::Admin(AdminCommand::Unused { group: None })
        );
        assert!(parse("admin unused a b").is_err());
        assert!(parse("admin grants 0").is_err());
        assert!(parse("admin grants two").is_err());
        assert!(parse("admin map #lowercase prod-db").is_err());
        assert_eq!(
            parse("admin map 19:abc123@thread.tacv2 prod-db").unwrap(),
            Command::Admin(AdminCommand::Map {
                channel: ChannelId::new("19:abc123@thread.tacv2"),
                group: group("prod-db"),
            })
        );
        assert!(parse("admin").is_err());
    }

    #[test]
    fn overlong_reason_is_refused() {
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert!(parse(&format!("request prod-db 1h {long}")).is_err());
    }
}
