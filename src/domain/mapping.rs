//! Admins' run-time mappings of channels to groups.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{Actor, Destination, GroupName};

/// An admin's run-time mapping of a channel to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub group: GroupName,
    pub destination: Destination,
    pub by: Actor,
    pub at: DateTime<Utc>,
}
