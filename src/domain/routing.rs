//! Where a group's approval cards go.

use super::ids::{Destination, Platform};
use super::mapping::Mapping;
use super::policy::GroupPolicy;

/// Where `group`'s approval cards go on each of `platforms`: the channels
/// admins mapped at run time, or else the policy's channel.
pub fn approval_destinations(
    group: &GroupPolicy,
    mappings: &[Mapping],
    platforms: impl Iterator<Item = Platform>,
) -> Vec<Destination> {
    let mut out = Vec::new();
    for platform in platforms {
        let mapped: Vec<Destination> = mappings
            .iter()
            .filter(|m| m.group == group.name && m.destination.platform == platform)
            .map(|m| m.destination.clone())
            .collect();
        if !mapped.is_empty() {
            out.extend(mapped);
            continue;
        }
        let fallback = match platform {
            // The console shows the policy's Slack channels.
            Platform::Slack | Platform::Console => group.channel.clone(),
            Platform::Teams => group.teams_channel.clone(),
            Platform::Email => None,
        };
        out.extend(fallback.map(|channel| Destination { platform, channel }));
    }
    out.sort();
    out
}
