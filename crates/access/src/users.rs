//! What an access decision needs to know about a user, through a trait: the user's roles
//! *now* (not the ones the certificate was issued with), whether any of them requires a pin,
//! and the OS logins they allow.

use std::collections::{BTreeSet, HashMap};

use ippin_policy::{PinPrefix, PinRequirement};

/// A user as the access decisions see them.
///
/// Access comes from roles: a user with no roles is refused like an unknown one
/// (`unknown_user`), whatever else the value says. There is no `Default` (it would be a user
/// without roles or pin requirement); build one with [`User::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// Whether any of the user's roles sets `pin_source_ip`.
    pub requires_pin: bool,
    /// How wide the pin may be when one is required: the narrowest `pin_source_ip_prefix`
    /// of the pinning roles ([`PinPrefix::EXACT`], one address, unless a role says otherwise).
    pub pin_prefix: PinPrefix,
    /// The user's role names (for the audit log and the application).
    pub roles: Vec<String>,
    /// The OS logins the user's roles allow now (`ippin_policy::UserRoles::logins`: the
    /// roles' `allow.logins` minus their `deny.logins`). An SSH user name other than the
    /// user's own name must be one of these ([`crate::ssh::authorize`]).
    pub logins: BTreeSet<String>,
}

impl User {
    /// A user with these roles; `requires_pin` as their roles decide.
    pub fn new(requires_pin: bool, roles: Vec<String>) -> User {
        User {
            requires_pin,
            pin_prefix: PinPrefix::EXACT,
            roles,
            logins: BTreeSet::new(),
        }
    }

    /// This user with the pin requirement of their roles
    /// (`ippin_policy::UserRoles::pin_requirement`): required or not, and how wide.
    pub fn with_pin_requirement(mut self, requirement: PinRequirement) -> User {
        self.requires_pin = requirement.is_required();
        self.pin_prefix = requirement.prefix().unwrap_or(PinPrefix::EXACT);
        self
    }

    /// What the user's roles require of a certificate's pin.
    pub fn pin_requirement(&self) -> PinRequirement {
        if self.requires_pin {
            PinRequirement::Required(self.pin_prefix)
        } else {
            PinRequirement::NotRequired
        }
    }

    /// This user with `logins` as the OS logins their roles allow (repeats count once).
    pub fn with_logins(mut self, logins: impl IntoIterator<Item = impl Into<String>>) -> User {
        self.logins = logins.into_iter().map(Into::into).collect();
        self
    }
}

/// `name` in `directory`, as the decisions of this crate see them: a user the directory
/// does not know, or one without roles, is `None` (refused `unknown_user`). Fail closed: a
/// directory that answers `User::new(false, vec![])` for every name lets nobody in.
pub fn lookup_usable(directory: &dyn UserDirectory, name: &str) -> Option<User> {
    directory.lookup(name).filter(|u| !u.roles.is_empty())
}

/// Looks users up by name: the certificate's user (the X.509 CN, or the user in an SSH
/// certificate's key id; never the SSH user name, see [`crate::ssh::CertIdentity`]).
///
/// A user the directory does not know, or one without roles, is refused (`unknown_user`),
/// even with a valid certificate ([`lookup_usable`]). Removing a user from the directory
/// refuses every new connection of theirs at once, and every new request or channel on the
/// connections they have open (`axum::Verified`, `ssh::Authorized::recheck`).
///
/// Implemented for closures `Fn(&str) -> Option<User>`, for `HashMap<String, User>`, and
/// for `ippin_policy::UserRoles`-style maps through a closure.
pub trait UserDirectory: Send + Sync {
    /// The user called `name`, if there is one.
    fn lookup(&self, name: &str) -> Option<User>;
}

impl<F: Fn(&str) -> Option<User> + Send + Sync> UserDirectory for F {
    fn lookup(&self, name: &str) -> Option<User> {
        self(name)
    }
}

impl UserDirectory for HashMap<String, User> {
    fn lookup(&self, name: &str) -> Option<User> {
        self.get(name).cloned()
    }
}
