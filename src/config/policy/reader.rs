//! The walker's primitives: typed reads of one key, each recording a problem
//! (with its position) instead of failing, and the "did you mean" hints.

use std::ops::Range;

use toml_edit::{Item, TableLike};

use super::problems::{line_col, Problem};
use crate::config::email::EmailSetup;
use crate::domain::duration::HumanDuration;
use crate::domain::email::EmailAddress;
use crate::domain::on_call::Schedule;
use crate::domain::policy::Subject;

pub(super) struct Reader<'s> {
    pub(super) source: &'s str,
    pub(super) problems: Vec<Problem>,
    /// Which email settings are present: an email approver needs them.
    pub(super) email: EmailSetup,
}

/// The lists that may name people by email address.
const EMAIL_KEYS: &[&str] = &["approvers", "escalate_to"];

pub(super) type Span = Option<Range<usize>>;

impl Reader<'_> {
    pub(super) fn problem(&mut self, span: Span, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.map_or(0, |s| s.start));
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    pub(super) fn key_span(table: &dyn TableLike, key: &str) -> Span {
        table.key(key).and_then(|k| k.span())
    }

    pub(super) fn value_span(table: &dyn TableLike, key: &str) -> Span {
        table
            .get(key)
            .and_then(Item::span)
            .or_else(|| Self::key_span(table, key))
    }

    /// Report every key not in `allowed`.
    pub(super) fn check_keys(&mut self, table: &dyn TableLike, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key) {
                let hint = match closest(key, allowed) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => format!(" (expected one of: {})", allowed.join(", ")),
                };
                self.problem(
                    Self::key_span(table, key),
                    format!("unknown key `{key}` in {context}{hint}"),
                );
            }
        }
    }

    pub(super) fn string(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<String> {
        let item = table.get(key)?;
        match item.as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context} must be a string"),
                );
                None
            }
        }
    }

    pub(super) fn required_string(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
        at: Span,
    ) -> Option<String> {
        if table.get(key).is_none() {
            self.problem(at, format!("{context} is missing `{key}`"));
            return None;
        }
        let text = self.string(table, key, context)?;
        if text.trim().is_empty() {
            self.problem(
                Self::value_span(table, key),
                format!("`{key}` in {context} must not be empty"),
            );
            return None;
        }
        Some(text)
    }

    pub(super) fn duration(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<HumanDuration> {
        let text = self.string(table, key, context)?;
        match HumanDuration::parse(&text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context}: {error}"),
                );
                None
            }
        }
    }

    pub(super) fn boolean(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<bool> {
        let item = table.get(key)?;
        match item.as_bool() {
            Some(value) => Some(value),
            None => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context} must be true or false"),
                );
                None
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<(String, Span)>> {
        let item = table.get(key)?;
        let Some(array) = item.as_array() else {
            self.problem(
                Self::value_span(table, key),
                format!("`{key}` in {context} must be a list of strings"),
            );
            return None;
        };
        let mut out = Vec::new();
        for value in array.iter() {
            match value.as_str() {
                Some(text) => out.push((text.to_string(), value.span())),
                None => self.problem(
                    value.span(),
                    format!("`{key}` in {context} must contain only strings"),
                ),
            }
        }
        Some(out)
    }

    /// A list of people who decide or administer (`admins`, `approvers`,
    /// `escalate_to`, break-glass `requesters`): each must be named, since
    /// `"*"` there would let anyone approve, take access unapproved or run
    /// the admin commands. It is reported (at the list, with its line and
    /// column) and kept, so the list's other checks do not pile up.
    pub(super) fn subjects(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<Subject>> {
        let subjects = self.subjects_or_anyone(table, key, context)?;
        if subjects.contains(&Subject::Anyone) {
            let name_them = match key {
                "admins" => "name the admins (chat user ids or Slack user groups)",
                "escalate_to" => "name the people or user groups who decide escalated requests",
                "requesters" => "name the people who may break the glass",
                _ => "name the people or user groups who approve",
            };
            self.problem(
                Self::value_span(table, key),
                format!("{context}: \"*\" is not allowed in `{key}`; {name_them}"),
            );
        }
        Some(subjects)
    }

    /// A list of who may *ask* (a group's `requesters`, auto-approval's
    /// `requesters`), where `"*"` means anyone.
    pub(super) fn subjects_or_anyone(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<Subject>> {
        let entries = self.string_list(table, key, context)?;
        let mut subjects = Vec::new();
        for (text, span) in entries {
            match Subject::parse(&text) {
                Some(Subject::Email(address)) => {
                    self.email_subject(&address, span, key, context);
                    subjects.push(Subject::Email(address));
                }
                Some(Subject::OnCall(schedule)) if key != "approvers" => self.problem(
                    span,
                    format!("`{schedule}` in `{key}` of {context}: on-call schedules may only approve (in `approvers`); to auto-approve whoever is on call, use auto_approve.on_call"),
                ),
                Some(subject) => subjects.push(subject),
                None if Schedule::looks_like(&text) => {
                    let why = Schedule::parse(&text).err().unwrap_or_default();
                    self.problem(span, format!("in `{key}` of {context}: {why}"));
                }
                None if EmailAddress::looks_like(&text) => {
                    let why = EmailAddress::parse(&text)
                        .err()
                        .map_or_else(String::new, |e| e.to_string());
                    self.problem(span, format!("in `{key}` of {context}: {why}"));
                }
                None => self.problem(
                    span,
                    format!(
                        "`{text}` in `{key}` of {context} is not a Slack user id (U…/W…), a Slack user group id (S…), a Teams AAD object id, an on-call schedule (pagerduty:<id>, opsgenie:<name>), or \"*\""
                    ),
                ),
            }
        }
        Some(subjects)
    }

    /// An email address in a list: only approvers may be one, and only
    /// when jitbot can send them their link.
    fn email_subject(&mut self, address: &EmailAddress, span: Span, key: &str, context: &str) {
        if !EMAIL_KEYS.contains(&key) {
            self.problem(
                span,
                format!("`{address}` in `{key}` of {context}: email addresses may only approve (in `approvers` or `escalate_to`); name a chat user here"),
            );
            return;
        }
        let missing = self.email.missing();
        if let Some(first) = missing.first() {
            self.problem(
                span,
                format!(
                    "`{address}` in `{key}` of {context} is an email approver, but {first} is not set (email approvers need {})",
                    missing.join(", ")
                ),
            );
        }
    }
}

/// The allowed word within edit distance 2 of `word`, if there is one.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
