//! Who someone is. A person is known by ids that come only from trusted
//! sources — the platform's verified id (a Slack user id from a signed
//! payload, a Teams AAD object id from a verified token, an address from a
//! signed email link), the chat directory, and the policy's `[identities]`
//! links — never from text in a request body.
//!
//! Two people are compared three ways ([`Sameness`]): the same person when
//! they share an id; different people when both are known on some platform
//! (or by address) and share no id there; and *unknown* otherwise — a
//! Slack user whose address jitbot cannot read and an email approver may be
//! one person. Whoever must establish that a decider is not the requester
//! refuses on `Unknown`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::email::EmailAddress;
use super::ids::{Actor, Platform, UserId};

/// One id a person is known by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KnownId {
    Slack(UserId),
    /// An AAD object id, lower-cased.
    Teams(UserId),
    Email(EmailAddress),
    /// A GitHub login, lower-cased.
    GitHub(String),
    /// A `jitbot console` user (the terminal's stand-in for chat).
    Console(UserId),
}

impl KnownId {
    /// The id `actor` acts with on their platform.
    pub fn of_actor(actor: &Actor) -> KnownId {
        match actor.platform {
            Platform::Slack => KnownId::Slack(actor.user.clone()),
            Platform::Teams => KnownId::Teams(UserId::new(actor.user.as_str().to_lowercase())),
            Platform::Console => KnownId::Console(actor.user.clone()),
            Platform::Email => match actor
                .email
                .clone()
                .or_else(|| EmailAddress::parse(actor.user.as_str()).ok())
            {
                Some(address) => KnownId::Email(address),
                // An email actor's id is its address; one that does not
                // parse is compared by its text, and so matches nobody else.
                None => KnownId::Console(UserId::new(format!("unparsed:{}", actor.user))),
            },
        }
    }

    /// Which namespace the id lives in: ids of one kind name one person each.
    fn kind(&self) -> u8 {
        match self {
            KnownId::Slack(_) => 0,
            KnownId::Teams(_) => 1,
            KnownId::Email(_) => 2,
            KnownId::GitHub(_) => 3,
            KnownId::Console(_) => 4,
        }
    }
}

impl fmt::Display for KnownId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownId::Slack(id) => write!(f, "slack:{id}"),
            KnownId::Teams(id) => write!(f, "teams:{id}"),
            KnownId::Email(address) => write!(f, "email:{address}"),
            KnownId::GitHub(login) => write!(f, "github:{login}"),
            KnownId::Console(id) => write!(f, "console:{id}"),
        }
    }
}

/// Whether two people are one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sameness {
    Same,
    Different,
    /// jitbot cannot tell: they are known on no common platform.
    Unknown,
}

impl Sameness {
    /// The least reassuring of several answers: any `Same` wins, then any
    /// `Unknown`; `Different` only if every answer is.
    pub fn worst(answers: impl IntoIterator<Item = Sameness>) -> Sameness {
        answers
            .into_iter()
            .fold(Sameness::Different, |worst, next| match (worst, next) {
                (Sameness::Same, _) | (_, Sameness::Same) => Sameness::Same,
                (Sameness::Unknown, _) | (_, Sameness::Unknown) => Sameness::Unknown,
                _ => Sameness::Different,
            })
    }
}

/// Every id jitbot knows one person by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    ids: BTreeSet<KnownId>,
}

impl Person {
    /// The person acting as `actor`, known so far by the id they act with
    /// (and, for a chat user, the address jitbot established for them —
    /// [`Actor::email`] is only ever filled from a trusted source).
    pub fn of(actor: &Actor) -> Person {
        let mut person = Person::default();
        person.know(KnownId::of_actor(actor));
        if let Some(address) = &actor.email {
            person.know(KnownId::Email(address.clone()));
        }
        person
    }

    pub fn know(&mut self, id: KnownId) {
        self.ids.insert(id);
    }

    pub fn knows(&self, id: &KnownId) -> bool {
        self.ids.contains(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &KnownId> {
        self.ids.iter()
    }

    /// Their address, if one is known.
    pub fn email(&self) -> Option<&EmailAddress> {
        self.ids.iter().find_map(|id| match id {
            KnownId::Email(address) => Some(address),
            _ => None,
        })
    }

    /// Whether `other` is this person. One shared id makes them one; ids of
    /// a common kind (both on Slack, both by address) that all differ make
    /// them two; with no kind in common jitbot cannot tell.
    pub fn compare(&self, other: &Person) -> Sameness {
        if self.ids.intersection(&other.ids).next().is_some() {
            return Sameness::Same;
        }
        let kinds: BTreeSet<u8> = self.ids.iter().map(KnownId::kind).collect();
        if other.ids.iter().any(|id| kinds.contains(&id.kind())) {
            Sameness::Different
        } else {
            Sameness::Unknown
        }
    }
}

/// The keys of an `[identities]` entry that link one person's ids rather
/// than name a provider's principal; no provider may be named so.
pub const LINK_KEYS: &[&str] = &["slack", "teams", "email", "github"];

/// One `[identities]` entry: a person's linked ids and their principal
/// overrides per provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEntry {
    /// The entry's key as written (`U0ALICE`).
    pub key: String,
    /// Every id the entry names, its key's included.
    pub ids: BTreeSet<KnownId>,
    /// Provider name → the principal to grant this person.
    pub principals: BTreeMap<String, String>,
}

impl IdentityEntry {
    /// The address the entry links, if any.
    pub fn email(&self) -> Option<&EmailAddress> {
        self.ids.iter().find_map(|id| match id {
            KnownId::Email(address) => Some(address),
            _ => None,
        })
    }

    /// The chat user the entry is keyed by.
    pub fn actor(&self) -> Option<Actor> {
        self.ids.iter().find_map(|id| match id {
            KnownId::Slack(user) => Some(Actor::new(Platform::Slack, user.clone(), &self.key)),
            KnownId::Teams(user) => Some(Actor::new(Platform::Teams, user.clone(), &self.key)),
            _ => None,
        })
    }
}

/// The policy's `[identities]`: explicit links between one person's ids,
/// and principal overrides. Entries are disjoint (check-config refuses an
/// id linked twice), so a person is at most one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    entries: Vec<IdentityEntry>,
}

impl Identities {
    pub fn new(entries: Vec<IdentityEntry>) -> Identities {
        Identities { entries }
    }

    pub fn entries(&self) -> &[IdentityEntry] {
        &self.entries
    }

    /// The entry naming `id`, if any.
    pub fn entry_of(&self, id: &KnownId) -> Option<&IdentityEntry> {
        self.entries.iter().find(|entry| entry.ids.contains(id))
    }

    /// The entry of the person acting as `actor`.
    pub fn entry_of_actor(&self, actor: &Actor) -> Option<&IdentityEntry> {
        self.entry_of(&KnownId::of_actor(actor))
    }

    /// `person` with every id their entries link.
    pub fn expand(&self, mut person: Person) -> Person {
        let linked: Vec<KnownId> = self
            .entries
            .iter()
            .filter(|entry| entry.ids.iter().any(|id| person.knows(id)))
            .flat_map(|entry| entry.ids.iter().cloned())
            .collect();
        for id in linked {
            person.know(id);
        }
        person
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack(id: &str) -> Actor {
        Actor::new(Platform::Slack, UserId::new(id), id)
    }

    fn teams(id: &str) -> Actor {
        Actor::new(Platform::Teams, UserId::new(id), id)
    }

    fn address(text: &str) -> EmailAddress {
        EmailAddress::parse(text).unwrap()
    }

    #[test]
    fn one_shared_id_makes_one_person() {
        let alice = Person::of(&slack("U0ALICE").with_email(Some(address("alice@example.com"))));
        let by_link = Person::of(&Actor::by_email(&address("Alice@Example.com")));
        assert_eq!(alice.compare(&by_link), Sameness::Same);
        assert_eq!(
            alice.compare(&Person::of(&slack("U0ALICE"))),
            Sameness::Same
        );
    }

    #[test]
    fn ids_of_a_common_kind_that_differ_make_two_people() {
        assert_eq!(
            Person::of(&slack("U0ALICE")).compare(&Person::of(&slack("U0BOB"))),
            Sameness::Different
        );
        let alice = Person::of(&slack("U0ALICE").with_email(Some(address("alice@example.com"))));
        let bob = Person::of(&Actor::by_email(&address("bob@example.com")));
        assert_eq!(alice.compare(&bob), Sameness::Different);
    }

    #[test]
    fn without_a_common_kind_nobody_can_tell() {
        // A Slack user whose address is unknown may be the email approver,
        // or their own Teams account.
        let alice = Person::of(&slack("U0ALICE"));
        let approver = Person::of(&Actor::by_email(&address("lead@example.com")));
        assert_eq!(alice.compare(&approver), Sameness::Unknown);
        let on_teams = Person::of(&teams("6f1c2e4a-0000-4000-8000-00000000a11c"));
        assert_eq!(alice.compare(&on_teams), Sameness::Unknown);
    }

    #[test]
    fn links_join_a_persons_ids() {
        let teams_id = "6f1c2e4a-0000-4000-8000-00000000a11c";
        let identities = Identities::new(vec![IdentityEntry {
            key: "U0ALICE".into(),
            ids: BTreeSet::from([
                KnownId::Slack(UserId::new("U0ALICE")),
                KnownId::Teams(UserId::new(teams_id)),
                KnownId::Email(address("alice@example.com")),
            ]),
            principals: BTreeMap::new(),
        }]);
        let on_slack = identities.expand(Person::of(&slack("U0ALICE")));
        let on_teams = identities.expand(Person::of(&teams(&teams_id.to_uppercase())));
        assert_eq!(on_slack.compare(&on_teams), Sameness::Same);
        assert_eq!(
            on_teams.compare(&Person::of(&Actor::by_email(&address("alice@example.com")))),
            Sameness::Same
        );
        assert_eq!(
            on_teams.compare(&Person::of(&slack("U0BOB"))),
            Sameness::Different
        );
    }

    #[test]
    fn the_worst_answer_wins() {
        use Sameness::*;
        assert_eq!(Sameness::worst([]), Different);
        assert_eq!(Sameness::worst([Different, Unknown, Different]), Unknown);
        assert_eq!(Sameness::worst([Unknown, Same]), Same);
    }
}
