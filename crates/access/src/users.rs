//! What an access decision needs to know about a user, through a trait: the user's roles
//! *now* (not the ones the certificate was issued with) and whether any of them requires a
//! pin.

use std::collections::HashMap;

/// A user as the access decisions see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct User {
    /// Whether any of the user's roles sets `pin_source_ip`.
    pub requires_pin: bool,
    /// The user's role names (for the audit log and the application).
    pub roles: Vec<String>,
}

impl User {
    /// A user with these roles; `requires_pin` as their roles decide.
    pub fn new(requires_pin: bool, roles: Vec<String>) -> User {
        User {
            requires_pin,
            roles,
        }
    }
}

/// Looks users up by name: the certificate's user (X.509 CN) or the SSH user name.
///
/// A user the directory does not know is refused (`unknown_user`), even with a valid
/// certificate: removing a user from the directory revokes their certificates at once.
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
