//! How many connections each peer holds. One source address may keep at
//! most `limit` connections open at once; more are refused at accept, so
//! one client — stalling on purpose or not — can take only its share of
//! the server's connections, never all of them.
//!
//! A peer is an IPv4 address, or an IPv6 /64: one host is routinely given
//! a whole /64, so counting single IPv6 addresses would bound nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The open connections of every peer.
#[derive(Debug)]
pub(super) struct PeerLimit {
    limit: usize,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

#[derive(Debug, Default)]
struct Peer {
    open: usize,
    /// Whether its refusal was logged since it last held none: a peer over
    /// its limit is reported once, not for every connection refused.
    reported: bool,
}

/// One connection of a peer, counted until dropped.
#[derive(Debug)]
pub(super) struct PeerSlot {
    limits: Arc<PeerLimit>,
    peer: IpAddr,
}

/// What a connection is counted under.
fn peer_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

impl PeerLimit {
    pub(super) fn new(limit: usize) -> Arc<PeerLimit> {
        Arc::new(PeerLimit {
            limit: limit.max(1),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Count one more connection from `address`, or `None` if its peer
    /// already holds as many as it may.
    pub(super) fn open(self: &Arc<Self>, address: IpAddr) -> Option<PeerSlot> {
        let peer = peer_of(address);
        // Held only to count: never across an await.
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = peers.entry(peer).or_default();
        if entry.open >= self.limit {
            if !entry.reported {
                entry.reported = true;
                tracing::warn!(
                    %peer,
                    limit = self.limit,
                    "a peer holds as many connections as it may; refusing more (JITBOT_MAX_CONNECTIONS_PER_PEER)"
                );
            }
            return None;
        }
        entry.open += 1;
        Some(PeerSlot {
            limits: self.clone(),
            peer,
        })
    }

    /// Connections `address`'s peer holds now.
    #[cfg(test)]
    fn open_from(&self, address: IpAddr) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&peer_of(address)).map_or(0, |p| p.open)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.limits.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = peers.get_mut(&self.peer) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
                // Forgotten once it holds nothing: the map stays as small
                // as the set of peers connected now.
                peers.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_limit_and_gets_places_back_as_it_closes() {
        let limits = PeerLimit::new(2);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limits.open(one).unwrap();
        let _second = limits.open(one).unwrap();
        assert!(limits.open(one).is_none(), "a third is refused");
        assert!(limits.open(other).is_some(), "another peer is not");
        drop(first);
        assert_eq!(limits.open_from(one), 1);
        assert!(limits.open(one).is_some(), "a place is free again");
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limits = PeerLimit::new(1);
        let _held = limits.open("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            limits
                .open("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none(),
            "the same /64"
        );
        assert!(limits.open("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = limits.open("192.0.2.7".parse().unwrap()).unwrap();
        assert!(limits.open("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }
}
