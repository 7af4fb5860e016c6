//! Claims on work. A process that shares the store with others holds a
//! lease on each job it runs and each outbox queue it delivers; the store
//! keeps it alive while the work runs and says when it can no longer prove
//! the claim (then the work must stop: another process may take it over).

use std::fmt;

use tokio_util::sync::CancellationToken;

/// This process's claim on one piece of work, given up when dropped.
pub struct Lease {
    lost: CancellationToken,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Lease {
    /// The claim of the store's only user: nobody can contest it.
    pub fn sole() -> Lease {
        Lease {
            lost: CancellationToken::new(),
            release: None,
        }
    }

    /// A claim that ends (is lost) when `lost` fires, and calls `release`
    /// when dropped.
    pub fn new(lost: CancellationToken, release: impl FnOnce() + Send + Sync + 'static) -> Lease {
        Lease {
            lost,
            release: Some(Box::new(release)),
        }
    }

    /// Resolves when the claim can no longer be proven.
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// Work claimed under a lease.
#[derive(Debug)]
pub struct Claimed<T> {
    pub item: T,
    pub lease: Lease,
}

impl<T> Claimed<T> {
    /// `item`, claimed by the store's only user.
    pub fn sole(item: T) -> Claimed<T> {
        Claimed {
            item,
            lease: Lease::sole(),
        }
    }
}
