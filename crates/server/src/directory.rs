//! The roles and users in force, and the fleet's lockouts: what a login, a renewal and an
//! access look up. One node reads them from its files once; a node of a fleet replaces them
//! whenever the store changes (`crate::fleet`), atomically: a decision sees one version
//! whole. Below `state`; imports nothing of the server but the configuration's data.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ippin_policy::RoleSet;

use crate::config::UserConfig;

/// One version of the roles and users.
#[derive(Debug)]
pub struct Directory {
    roles: RoleSet,
    users: HashMap<String, UserConfig>,
    /// The store revision this version was read at (0: the files).
    pub revision: i64,
}

impl Directory {
    /// The roles and users given, read at `revision`.
    pub fn new(roles: RoleSet, users: Vec<UserConfig>, revision: i64) -> Directory {
        Directory {
            roles,
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
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

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether `user`'s roles require a pin, and their names; `None` when the user is
    /// unknown or a role is missing.
    pub fn requires_pin(&self, user: &str) -> Option<(bool, Vec<String>)> {
        let u = self.user(user)?;
        let selected = self.roles.select(&u.roles).ok()?;
        Some((selected.requires_pin(), u.roles.clone()))
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
}

impl LiveDirectory {
    /// Starts with `first`.
    pub fn new(first: Directory) -> LiveDirectory {
        LiveDirectory {
            current: RwLock::new(Arc::new(first)),
            locks: RwLock::new(HashMap::new()),
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
