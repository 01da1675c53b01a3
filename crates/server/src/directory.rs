//! The roles and users in force, and the fleet's lockouts: what a login, a renewal and an
//! access look up. One node reads them from its files once; a node of a fleet replaces them
//! whenever the store changes (the `fleet` module), atomically: a decision sees one version
//! whole. Below `state`; imports nothing of the server but the configuration's data.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ippin_policy::{PinRequirement, RoleSet};

use crate::config::UserConfig;

/// One version of the roles and users.
#[derive(Debug)]
pub struct Directory {
    roles: RoleSet,
    users: HashMap<String, UserConfig>,
    /// The users' names, sorted: [`Directory::stand_in_hash`] picks among them.
    names: Vec<String>,
    /// The store revision this version was read at (0: the files).
    pub revision: i64,
}

impl Directory {
    /// The roles and users given, read at `revision`.
    pub fn new(roles: RoleSet, users: Vec<UserConfig>, revision: i64) -> Directory {
        let users: HashMap<String, UserConfig> =
            users.into_iter().map(|u| (u.name.clone(), u)).collect();
        let mut names: Vec<String> = users.keys().cloned().collect();
        names.sort_unstable();
        Directory {
            roles,
            users,
            names,
            revision,
        }
    }

    /// The roles.
    pub fn roles(&self) -> &RoleSet {
        &self.roles
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.get(name)
    }

    /// The hash of one user (the one with the smallest name), to make a decoy of the same
    /// cost.
    pub fn some_hash(&self) -> Option<&str> {
        self.users
            .values()
            .min_by(|a, b| a.name.cmp(&b.name))
            .map(|u| u.password_hash.as_str())
    }

    /// The hash a password for `name`, a name no user has, is checked against, so that the
    /// check costs what a real user's costs: the hash of a stand-in user, the one whose
    /// HMAC of (name, user) under `key` is highest (rendezvous hashing: the same stand-in for
    /// the same name on every node sharing `key` and after restarts; adding or removing a
    /// user moves only the names that user stood in for; every user stands in for a share
    /// of names). Users' hashes may differ in their argon2 parameters (pasted from another
    /// tool); one decoy would then time differently from some of them, and timing would tell
    /// real names from unknown ones. `None` when there is no user. The check's answer is
    /// never used: the name has no user.
    pub fn stand_in_hash(&self, name: &str, key: &[u8; 32]) -> Option<&str> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let score = |user: &str| {
            let mut ctx = ring::hmac::Context::with_key(&key);
            ctx.update(&(name.len() as u64).to_be_bytes());
            ctx.update(name.as_bytes());
            ctx.update(user.as_bytes());
            let tag = ctx.sign();
            let mut first = [0u8; 8];
            first.copy_from_slice(tag.as_ref().get(..8).unwrap_or(&[0; 8]));
            u64::from_be_bytes(first)
        };
        let stand_in = self.names.iter().max_by_key(|u| score(u))?;
        self.users.get(stand_in).map(|u| u.password_hash.as_str())
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// What `user`'s roles require of a pin (whether one is required, and how wide it may
    /// be), and their names; `None` when the user is unknown or a role is missing.
    pub fn requires_pin(&self, user: &str) -> Option<(PinRequirement, Vec<String>)> {
        let u = self.user(user)?;
        let selected = self.roles.select(&u.roles).ok()?;
        // The selection's names: each role once, however often the user's list names it
        // (the certificate builders refuse a repeated role).
        Some((selected.pin_requirement(), selected.names().to_vec()))
    }

    /// The OS logins `roles` allow (allows minus denies); `None` when a role is missing.
    pub fn logins_of(&self, roles: &[String]) -> Option<Vec<String>> {
        let selected = self.roles.select(roles).ok()?;
        Some(selected.logins().iter().cloned().collect())
    }

    /// Whether any of `roles` has `spec.options.admin: true` (the admin API); `false` when
    /// a role is missing.
    pub fn is_admin(&self, roles: &[String]) -> bool {
        roles.iter().all(|r| self.roles.get(r).is_some())
            && roles
                .iter()
                .any(|r| self.roles.get(r).is_some_and(|role| role.admin))
    }

    /// `user` as the SSH service sees them; `None` when unknown or a role is missing (a
    /// certificate for them is then refused, `unknown_user`).
    pub fn ssh_user(&self, user: &str) -> Option<ippin_access::User> {
        let u = self.user(user)?;
        let roles = self.roles.select(&u.roles).ok()?;
        Some(
            ippin_access::User::new(roles.requires_pin(), roles.names().to_vec())
                .with_pin_requirement(roles.pin_requirement())
                .with_logins(roles.logins().iter().cloned()),
        )
    }
}

/// The version in force, and the fleet's lockouts.
#[derive(Debug)]
pub struct LiveDirectory {
    current: RwLock<Arc<Directory>>,
    /// User → locked until, from the store's leased `lockouts/` keys.
    locks: RwLock<HashMap<String, SystemTime>>,
    /// Users with failed logins in the store (`failures/` keys).
    failed: RwLock<std::collections::HashSet<String>>,
}

impl LiveDirectory {
    /// Starts with `first`.
    pub fn new(first: Directory) -> LiveDirectory {
        LiveDirectory {
            current: RwLock::new(Arc::new(first)),
            locks: RwLock::new(HashMap::new()),
            failed: RwLock::new(std::collections::HashSet::new()),
        }
    }

    /// The version in force.
    pub fn get(&self) -> Arc<Directory> {
        match self.current.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `next` in force for every decision from now on.
    pub fn set(&self, next: Directory) {
        match self.current.write() {
            Ok(mut d) => *d = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
    }

    /// Replaces the fleet's lockouts.
    pub fn set_locks(&self, locks: HashMap<String, SystemTime>) {
        match self.locks.write() {
            Ok(mut l) => *l = locks,
            Err(poisoned) => *poisoned.into_inner() = locks,
        }
    }

    /// Replaces the users with failed logins in the store.
    pub fn set_failed(&self, users: std::collections::HashSet<String>) {
        match self.failed.write() {
            Ok(mut f) => *f = users,
            Err(poisoned) => *poisoned.into_inner() = users,
        }
    }

    /// Records whether the store holds failed logins of `user` (one user's change, not
    /// the whole set again).
    pub fn set_user_failed(&self, user: &str, failed: bool) {
        let mut f = match self.failed.write() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if failed {
            f.insert(user.to_owned());
        } else {
            f.remove(user);
        }
    }

    /// Whether the store holds failed logins of `user`.
    pub fn has_failures(&self, user: &str) -> bool {
        match self.failed.read() {
            Ok(f) => f.contains(user),
            Err(poisoned) => poisoned.into_inner().contains(user),
        }
    }

    /// Until when `user` is locked across the fleet, if they are at `now`.
    pub fn locked_until(&self, user: &str, now: SystemTime) -> Option<SystemTime> {
        let locks = match self.locks.read() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.get(user).copied().filter(|until| *until > now)
    }
}

/// The SSH service's user lookups, answered from the version in force at each lookup.
#[derive(Debug, Clone)]
pub struct LiveUsers(pub Arc<LiveDirectory>);

impl ippin_access::users::UserDirectory for LiveUsers {
    fn lookup(&self, name: &str) -> Option<ippin_access::User> {
        self.0.get().ssh_user(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dir(roles: &str, users: &[(&str, &[&str])]) -> Directory {
        let roles = RoleSet::new(ippin_policy::parse_roles("r", roles).unwrap()).unwrap();
        let users = users
            .iter()
            .map(|(n, r)| UserConfig {
                name: (*n).into(),
                password_hash: "$argon2id$x".into(),
                roles: r.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect();
        Directory::new(roles, users, 3)
    }

    const ROLES: &str = "kind: role\nversion: v7\nmetadata:\n  name: ops\nspec:\n  options:\n    admin: true\n---\nkind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  options:\n    pin_source_ip: true\n  allow:\n    logins: [app]\n";

    #[test]
    fn admin_needs_an_admin_role_and_every_role_defined() {
        let d = dir(ROLES, &[]);
        assert!(d.is_admin(&["ops".into()]));
        assert!(d.is_admin(&["dev".into(), "ops".into()]));
        assert!(!d.is_admin(&["dev".into()]));
        assert!(!d.is_admin(&[]));
        // A role that is gone makes the whole set unusable, as for logins.
        assert!(!d.is_admin(&["ops".into(), "gone".into()]));
    }

    #[test]
    fn lookups_follow_the_version_in_force() {
        let live = LiveDirectory::new(dir(ROLES, &[("bob", &["dev"]), ("eve", &["gone"])]));
        assert_eq!(
            live.get().requires_pin("bob"),
            Some((true.into(), vec!["dev".into()]))
        );
        assert_eq!(
            live.get().logins_of(&["dev".into()]),
            Some(vec!["app".into()])
        );
        // A role listed twice counts once (issuing refuses a repeated role).
        let twice = dir(ROLES, &[("carol", &["dev", "ops", "dev"])]);
        assert_eq!(
            twice.requires_pin("carol").map(|(_, roles)| roles),
            Some(vec!["dev".to_owned(), "ops".to_owned()])
        );
        // A user whose role is missing is nobody to the SSH service.
        assert!(live.get().ssh_user("eve").is_none());
        assert!(live.get().requires_pin("eve").is_none());
        let users = LiveUsers(Arc::new(LiveDirectory::new(dir(
            ROLES,
            &[("bob", &["dev"])],
        ))));
        assert!(ippin_access::UserDirectory::lookup(&users, "bob").is_some());
        live.set(dir(ROLES, &[]));
        assert!(live.get().user("bob").is_none());
        assert_eq!(live.get().user_count(), 0);
    }

    #[test]
    fn a_lock_holds_until_its_time() {
        let live = LiveDirectory::new(dir(ROLES, &[]));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        live.set_locks(HashMap::from([(
            "alice".to_owned(),
            now + Duration::from_secs(60),
        )]));
        assert_eq!(
            live.locked_until("alice", now),
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(live.locked_until("bob", now), None);
        // Past its time it no longer holds, even before the store deletes it.
        assert_eq!(
            live.locked_until("alice", now + Duration::from_secs(60)),
            None
        );
    }
}
