//! How many connections each peer holds. One source address is served on
//! at most `limit` connections at once, so one client — stalling on
//! purpose or not — can take only its share of the server, never all of
//! it. Its further connections wait their turn (in the order they came)
//! instead of being refused: a burst from one address — a pipeline, a
//! load balancer, a test suite — is served, only more slowly. While one
//! waits, the peer's next answer says `Connection: close` and its
//! connection closes after it, so kept-alive connections hand their places
//! on. (An idle one is never closed for this: a client may be sending on it
//! that very moment, and would lose its request.)
//!
//! A peer is an IPv4 address, or an IPv6 /64: one host is routinely given
//! a whole /64, so counting single IPv6 addresses would bound nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connections of every peer.
#[derive(Debug)]
pub(super) struct PeerLimit {
    limit: usize,
    peers: Mutex<HashMap<IpAddr, Known>>,
}

/// A peer while it has connections, served or waiting.
#[derive(Debug)]
struct Known {
    connections: usize,
    peer: Arc<Peer>,
}

#[derive(Debug)]
struct Peer {
    /// Its places: `limit` connections served at once.
    places: Arc<Semaphore>,
    /// Answers owed a `Connection: close`: one for each connection that
    /// began waiting for a place.
    yields_owed: AtomicUsize,
    /// Whether its waiting was logged since it last held nothing: a peer
    /// over its limit is reported once, not for every connection.
    reported: AtomicBool,
}

impl Peer {
    fn take_owed_yield(&self) -> bool {
        self.yields_owed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Where a new connection stands.
pub(super) enum Turn {
    /// Served now.
    Now(PeerPlace),
    /// Its peer holds all its places: it waits for one.
    Wait(PeerWait),
}

/// One connection of a peer, counted until dropped.
#[derive(Debug)]
struct Counted {
    limits: Arc<PeerLimit>,
    address: IpAddr,
    peer: Arc<Peer>,
}

/// A served connection's place.
#[derive(Debug)]
pub(super) struct PeerPlace {
    _place: OwnedSemaphorePermit,
    counted: Counted,
}

/// A connection waiting for a place.
#[derive(Debug)]
pub(super) struct PeerWait {
    counted: Counted,
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

    /// Count one more connection from `address`: served now if its peer
    /// has a place free, else waiting for one.
    pub(super) fn open(self: &Arc<Self>, address: IpAddr) -> Turn {
        let address = peer_of(address);
        let peer = {
            // Held only to count: never across an await.
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            let known = peers.entry(address).or_insert_with(|| Known {
                connections: 0,
                peer: Arc::new(Peer {
                    places: Arc::new(Semaphore::new(self.limit)),
                    yields_owed: AtomicUsize::new(0),
                    reported: AtomicBool::new(false),
                }),
            });
            known.connections += 1;
            known.peer.clone()
        };
        let counted = Counted {
            limits: self.clone(),
            address,
            peer,
        };
        match counted.peer.places.clone().try_acquire_owned() {
            Ok(place) => Turn::Now(PeerPlace {
                _place: place,
                counted,
            }),
            Err(_) => {
                if !counted.peer.reported.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        peer = %address,
                        limit = self.limit,
                        "a peer holds as many connections as it may; its next ones wait (JITBOT_MAX_CONNECTIONS_PER_PEER)"
                    );
                }
                Turn::Wait(PeerWait { counted })
            }
        }
    }

    /// Connections `address`'s peer holds now, served or waiting.
    #[cfg(test)]
    fn connections_of(&self, address: IpAddr) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&peer_of(address)).map_or(0, |p| p.connections)
    }
}

impl PeerWait {
    /// A place once one of the peer's served connections closes — the
    /// next answer on one says it will — or `None` after `within`.
    pub(super) async fn place(self, within: Duration) -> Option<PeerPlace> {
        let peer = self.counted.peer.clone();
        peer.yields_owed.fetch_add(1, Ordering::SeqCst);
        match tokio::time::timeout(within, peer.places.clone().acquire_owned()).await {
            Ok(Ok(place)) => Some(PeerPlace {
                _place: place,
                counted: self.counted,
            }),
            _ => {
                // Not needed any more, if nobody took it yet.
                peer.take_owed_yield();
                None
            }
        }
    }
}

impl PeerPlace {
    /// Whether the answer about to be sent on this connection must close
    /// it: another connection of its peer waits for its place.
    pub(super) fn closes_for_a_waiting_one(&self) -> bool {
        self.counted.peer.take_owed_yield()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut peers = self.limits.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = peers.get_mut(&self.address) {
            known.connections = known.connections.saturating_sub(1);
            if known.connections == 0 {
                // Forgotten once it holds nothing: the map stays as small
                // as the set of peers connected now.
                peers.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(turn: Turn) -> PeerPlace {
        match turn {
            Turn::Now(place) => place,
            Turn::Wait(_) => panic!("made to wait"),
        }
    }

    fn waiting(turn: Turn) -> PeerWait {
        match turn {
            Turn::Now(_) => panic!("served at once"),
            Turn::Wait(wait) => wait,
        }
    }

    #[tokio::test]
    async fn a_peer_is_served_on_at_most_its_limit_and_the_rest_wait_their_turn() {
        let limits = PeerLimit::new(2);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = served(limits.open(one));
        let second = served(limits.open(one));
        assert!(!first.closes_for_a_waiting_one(), "nobody waits yet");
        let third = waiting(limits.open(one));
        let _elsewhere = served(limits.open(other));
        assert_eq!(limits.connections_of(one), 3);
        let third = tokio::spawn(third.place(Duration::from_secs(60)));
        // The next answer of one served connection closes it; the waiting
        // one is served then.
        let yielded = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if first.closes_for_a_waiting_one() || second.closes_for_a_waiting_one() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(yielded.is_ok(), "a served connection is asked to make way");
        assert!(
            !first.closes_for_a_waiting_one() && !second.closes_for_a_waiting_one(),
            "one waiting connection closes one other"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .unwrap()
            .unwrap()
            .expect("a place");
        assert_eq!(limits.connections_of(one), 2);
        drop(third);
        drop(second);
        assert_eq!(limits.connections_of(one), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waits_no_longer_than_it_may() {
        let limits = PeerLimit::new(1);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let _held = served(limits.open(one));
        let started = tokio::time::Instant::now();
        assert!(waiting(limits.open(one))
            .place(Duration::from_secs(10))
            .await
            .is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(limits.connections_of(one), 1);
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limits = PeerLimit::new(1);
        let _held = served(limits.open("2001:db8:1:2::1".parse().unwrap()));
        waiting(limits.open("2001:db8:1:2:ffff::9".parse().unwrap()));
        served(limits.open("2001:db8:1:3::1".parse().unwrap()));
        let _v4 = served(limits.open("192.0.2.7".parse().unwrap()));
        waiting(limits.open("::ffff:192.0.2.7".parse().unwrap()));
    }
}
