//! Look-ups about people that decisions need: who is in a user group (for
//! approvers like `S0DBAS`) and a user's email (for principal templates).
//! [`CachedDirectory`] keeps answers briefly so a burst of clicks does not
//! become a burst of API calls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::ChatError;
use crate::domain::ids::UserId;

#[async_trait]
pub trait Directory: Send + Sync {
    async fn user_group_members(&self, group: &str) -> Result<Vec<UserId>, ChatError>;
    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError>;
    /// The user whose profile has this address (to DM whoever is on
    /// call); platforms that cannot say answer `None`.
    async fn user_by_email(&self, _email: &str) -> Result<Option<UserId>, ChatError> {
        Ok(None)
    }
}

/// Membership changes (someone leaves the DBA group) must take effect
/// quickly, so group answers are kept for one minute only.
const MEMBERSHIP_TTL: Duration = Duration::from_secs(60);
/// Emails rarely change; an hour saves a `users.info` call per grant.
const EMAIL_TTL: Duration = Duration::from_secs(3600);

type Cached<T> = Mutex<HashMap<String, (Instant, T)>>;

pub struct CachedDirectory {
    inner: Arc<dyn Directory>,
    groups: Cached<Arc<HashSet<UserId>>>,
    emails: Cached<Option<String>>,
    users_by_email: Cached<Option<UserId>>,
}

impl CachedDirectory {
    pub fn new(inner: Arc<dyn Directory>) -> Self {
        Self {
            inner,
            groups: Mutex::new(HashMap::new()),
            emails: Mutex::new(HashMap::new()),
            users_by_email: Mutex::new(HashMap::new()),
        }
    }

    fn fresh<T: Clone>(cache: &Cached<T>, key: &str, ttl: Duration) -> Option<T> {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still usable as a cache.
        let map = cache.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    fn keep<T>(cache: &Cached<T>, key: &str, value: T) {
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(key.to_string(), (Instant::now(), value));
    }

    /// The members of `group`, from the cache if it is young enough.
    pub async fn members(&self, group: &str) -> Result<Arc<HashSet<UserId>>, ChatError> {
        if let Some(members) = Self::fresh(&self.groups, group, MEMBERSHIP_TTL) {
            return Ok(members);
        }
        self.members_now(group).await
    }

    /// The members of `group` as the platform says now: for decisions on
    /// someone's rights (an approval, an admin action), where a person who
    /// left the group a minute ago must no longer count.
    pub async fn members_now(&self, group: &str) -> Result<Arc<HashSet<UserId>>, ChatError> {
        let members: Arc<HashSet<UserId>> = Arc::new(
            self.inner
                .user_group_members(group)
                .await?
                .into_iter()
                .collect(),
        );
        Self::keep(&self.groups, group, members.clone());
        Ok(members)
    }

    pub async fn email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        if let Some(email) = Self::fresh(&self.emails, user.as_str(), EMAIL_TTL) {
            return Ok(email);
        }
        let email = self.inner.user_email(user).await?;
        Self::keep(&self.emails, user.as_str(), email.clone());
        Ok(email)
    }

    /// The user with this address in their profile.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserId>, ChatError> {
        if let Some(user) = Self::fresh(&self.users_by_email, email, EMAIL_TTL) {
            return Ok(user);
        }
        let user = self.inner.user_by_email(email).await?;
        Self::keep(&self.users_by_email, email, user.clone());
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(AtomicUsize);

    #[async_trait]
    impl Directory for Counting {
        async fn user_group_members(&self, _group: &str) -> Result<Vec<UserId>, ChatError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![UserId::new("U1")])
        }
        async fn user_email(&self, _user: &UserId) -> Result<Option<String>, ChatError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_fresh_look_up_always_asks() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let directory = CachedDirectory::new(inner.clone());
        directory.members("S1").await.unwrap();
        directory.members_now("S1").await.unwrap();
        directory.members_now("S1").await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn membership_is_cached() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let directory = CachedDirectory::new(inner.clone());
        for _ in 0..3 {
            assert!(directory
                .members("S1")
                .await
                .unwrap()
                .contains(&UserId::new("U1")));
        }
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
    }
}
