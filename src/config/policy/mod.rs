//! Reading the policy file. The TOML is walked by hand (rather than through
//! serde) so that every problem is collected — not just the first — and each
//! one points at the line and column it comes from.

mod groups;
mod identities;
mod problems;
mod providers;
mod reader;

use std::path::Path;

use toml_edit::{ImDocument, TableLike};

use crate::config::email::EmailSetup;
use crate::domain::policy::{Limits, Policy};
use problems::line_col;
use reader::{Reader, Span};

pub use problems::{PolicyError, Problem};
pub use providers::{placeholders, EXEC_PLACEHOLDERS, PRINCIPAL_PLACEHOLDERS};

/// Read and validate the policy file at `path`, with the email settings
/// present (`email`): an email approver needs them.
pub fn load(path: &Path, email: EmailSetup) -> Result<Policy, PolicyError> {
    let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_with(&source, email).map_err(|problems| PolicyError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

const ROOT_KEYS: &[&str] = &["admins", "defaults", "providers", "groups", "identities"];
const LIMIT_KEYS: &[&str] = &[
    "min_duration",
    "max_duration",
    "default_duration",
    "warn_before",
    "pending_timeout",
    "reason_required",
    "activity_interval",
];

/// Parse and validate policy text, as if email were set up; on failure,
/// every problem found.
pub fn parse(source: &str) -> Result<Policy, Vec<Problem>> {
    parse_with(source, EmailSetup::READY)
}

/// [`parse`], with the email settings present.
pub fn parse_with(source: &str, email: EmailSetup) -> Result<Policy, Vec<Problem>> {
    let document = match ImDocument::parse(source) {
        Ok(document) => document,
        Err(error) => {
            let (line, column) = line_col(source, error.span().map_or(0, |s| s.start));
            return Err(vec![Problem {
                line,
                column,
                message: format!("not valid TOML: {}", error.message().trim()),
            }]);
        }
    };
    let mut reader = Reader {
        source,
        problems: Vec::new(),
        email,
    };
    let policy = reader.policy(document.as_table());
    if reader.problems.is_empty() {
        Ok(policy)
    } else {
        reader.problems.sort_by_key(|p| (p.line, p.column));
        Err(reader.problems)
    }
}

impl Reader<'_> {
    fn policy(&mut self, root: &dyn TableLike) -> Policy {
        self.check_keys(root, ROOT_KEYS, "the policy");
        let admins = self
            .subjects(root, "admins", "the policy")
            .unwrap_or_default();
        let defaults = match root.get("defaults") {
            Some(item) => match item.as_table_like() {
                Some(table) => {
                    self.check_keys(table, LIMIT_KEYS, "[defaults]");
                    self.limits(
                        table,
                        Limits::default(),
                        "[defaults]",
                        Reader::key_span(root, "defaults"),
                    )
                }
                None => {
                    self.problem(item.span(), "`defaults` must be a table");
                    Limits::default()
                }
            },
            None => Limits::default(),
        };
        let providers = self.providers(root);
        let groups = self.groups(root, &defaults, &providers);
        let identities = self.identities(root, &providers);
        Policy {
            admins,
            defaults,
            providers,
            groups,
            identities,
        }
    }

    /// Limits from `table` on top of `base`, checked for consistency.
    pub(super) fn limits(
        &mut self,
        table: &dyn TableLike,
        base: Limits,
        context: &str,
        at: Span,
    ) -> Limits {
        let mut limits = base;
        if let Some(d) = self.duration(table, "min_duration", context) {
            limits.min_duration = d;
        }
        if let Some(d) = self.duration(table, "max_duration", context) {
            limits.max_duration = d;
        }
        if let Some(d) = self.duration(table, "default_duration", context) {
            limits.default_duration = d;
        }
        if let Some(d) = self.duration(table, "warn_before", context) {
            limits.warn_before = d;
        }
        if let Some(d) = self.duration(table, "pending_timeout", context) {
            limits.pending_timeout = d;
        }
        if let Some(b) = self.boolean(table, "reason_required", context) {
            limits.reason_required = b;
        }
        if let Some(d) = self.duration(table, "activity_interval", context) {
            limits.activity_interval = d;
        }
        let span_of = |key: &str| Reader::value_span(table, key).or_else(|| at.clone());
        if limits.max_duration < limits.min_duration {
            self.problem(
                span_of("max_duration"),
                format!(
                    "{context}: max_duration ({}) is below min_duration ({})",
                    limits.max_duration, limits.min_duration
                ),
            );
        } else if limits.default_duration < limits.min_duration
            || limits.default_duration > limits.max_duration
        {
            self.problem(
                span_of("default_duration"),
                format!(
                    "{context}: default_duration ({}) is outside min_duration..max_duration ({}..{})",
                    limits.default_duration, limits.min_duration, limits.max_duration
                ),
            );
        }
        limits
    }
}

#[cfg(test)]
mod tests;
