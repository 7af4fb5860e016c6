//! Turning a chat user into the provider's principal: the provider's
//! `principal` template (`{email_local}`, `{slack_user_id}`, …), unless the
//! policy's `[identities]` names one for that user.

use crate::domain::ids::{Actor, Platform};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("your account has no {0} that the `{1}` provider could use; ask an admin to add you to [identities] in the policy")]
    Missing(&'static str, String),
    #[error("the principal `{0}` is not usable (empty, starts with `-`, or has control characters); ask an admin to set one in [identities]")]
    Unusable(String),
}

/// Render `template` for `user`; `email` is the user's address if known.
pub fn render(
    template: &str,
    provider: &str,
    user: &Actor,
    email: Option<&str>,
) -> Result<String, PrincipalError> {
    let missing = |what| PrincipalError::Missing(what, provider.to_string());
    let out = crate::domain::template::fill(template, |name| {
        Ok(Some(match name {
            "user_id" => user.user.as_str().to_string(),
            // The console's users act under the policy's Slack ids.
            "slack_user_id" if matches!(user.platform, Platform::Slack | Platform::Console) => {
                user.user.as_str().to_string()
            }
            "slack_user_id" => return Err(missing("Slack user id")),
            "teams_aad_id" if user.platform == Platform::Teams => user.user.as_str().to_string(),
            "teams_aad_id" => return Err(missing("Teams AAD object id")),
            "email" => email.ok_or_else(|| missing("email address"))?.to_string(),
            "email_local" => email
                .and_then(|e| e.split_once('@'))
                .map(|(local, _)| local.to_string())
                .ok_or_else(|| missing("email address"))?,
            _ => return Ok(None),
        }))
    })?;
    check(out)
}

/// A principal is passed as a program argument or into SQL identifiers by
/// providers, so refuse shapes that could be read as options or break lines.
pub fn check(principal: String) -> Result<String, PrincipalError> {
    let usable = !principal.trim().is_empty()
        && !principal.starts_with('-')
        && !principal.chars().any(char::is_control);
    if usable {
        Ok(principal)
    } else {
        Err(PrincipalError::Unusable(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    fn alice() -> Actor {
        Actor::new(Platform::Slack, UserId::new("U0ALICE"), "alice")
    }

    #[test]
    fn templates_fill_in_known_values() {
        assert_eq!(
            render("{email_local}", "pg", &alice(), Some("alice@example.com")).unwrap(),
            "alice"
        );
        assert_eq!(
            render("slack-{slack_user_id}", "x", &alice(), None).unwrap(),
            "slack-U0ALICE"
        );
        assert_eq!(
            render("{email}", "x", &alice(), Some("a@b.c")).unwrap(),
            "a@b.c"
        );
    }

    #[test]
    fn an_email_is_never_read_as_a_placeholder() {
        assert_eq!(
            render(
                "{email_local}",
                "x",
                &alice(),
                Some("{user_id}@example.com")
            )
            .unwrap(),
            "{user_id}"
        );
    }

    #[test]
    fn missing_values_are_explained() {
        let err = render("{email}", "pg", &alice(), None).unwrap_err();
        assert!(err
            .to_string()
            .contains("no email address that the `pg` provider"));
        assert!(render("{teams_aad_id}", "pg", &alice(), None).is_err());
    }

    #[test]
    fn option_like_or_control_principals_are_refused() {
        assert!(render("{email_local}", "x", &alice(), Some("-rf@x.com")).is_err());
        assert!(check("a\nb".into()).is_err());
        assert!(check(" ".into()).is_err());
    }
}
