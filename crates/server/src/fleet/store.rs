//! What the keys of a fleet's store hold, decoded and checked as the file loader checks
//! them: the key layout, the documents, and the mirror of the store a node keeps. Sans-IO.
//!
//! | key below the prefix | value |
//! |---|---|
//! | `roles/NAME` | one role document, as a roles file holds it (`metadata.name` = NAME) |
//! | `users/NAME` | a `kind: user` document (argon2id hash, roles) |
//! | `network_restrictions` | the policy document |
//! | `lockouts/NAME` | `{"until": RFC 3339, "failures": N}`, on a lease of the lockout's length |
//! | `failures/NAME/NODE-N` | one failed login, on a lease of the failure window |

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::UserConfig;
use crate::directory::Directory;

/// The largest value decoded (etcd's own request limit is 1.5 MiB): the network
/// restrictions document.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The largest role or user document: a few of them fit in one page of a read, in one
/// watch message and in one transaction's answer.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Where a resource lives below the prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Key {
    /// `roles/NAME`.
    Role(String),
    /// `users/NAME`.
    User(String),
    /// `network_restrictions`.
    Restrictions,
    /// `lockouts/NAME`.
    Lockout(String),
    /// `failures/NAME/…`.
    Failure(String),
}

impl Key {
    /// The key's text below the prefix.
    pub fn path(&self) -> String {
        match self {
            Key::Role(n) => format!("roles/{n}"),
            Key::User(n) => format!("users/{n}"),
            Key::Restrictions => "network_restrictions".to_owned(),
            Key::Lockout(n) => format!("lockouts/{n}"),
            Key::Failure(n) => format!("failures/{n}/"),
        }
    }

    /// Reads a key below the prefix; `None` for a key of no known form (ignored).
    pub fn parse(rel: &str) -> Option<Key> {
        use crate::admin::Kind;
        let name_ok = |n: &str| crate::config::check_name(n).is_ok();
        match Kind::from_key(rel) {
            Some((Kind::Role, name)) => return Some(Key::Role(name)),
            Some((Kind::User, name)) => return Some(Key::User(name)),
            Some((Kind::NetworkRestrictions, _)) => return Some(Key::Restrictions),
            _ => {}
        }
        let (kind, rest) = rel.split_once('/')?;
        match kind {
            "lockouts" if name_ok(rest) => Some(Key::Lockout(rest.to_owned())),
            "failures" => {
                let (name, node) = rest.split_once('/')?;
                (name_ok(name) && !node.is_empty() && node.len() <= 128)
                    .then(|| Key::Failure(name.to_owned()))
            }
            _ => None,
        }
    }
}

/// A decoded value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Entry {
    /// A role.
    Role(Box<ippin_policy::Role>),
    /// A user.
    User(UserConfig),
    /// The network restrictions document (checked by parsing; kept as text).
    Restrictions(Vec<u8>),
    /// A lockout.
    Lockout(Lockout),
    /// A failed login (counted, nothing else).
    Failure,
}

/// A lockout's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    /// Until when (RFC 3339, UTC).
    pub until: String,
    /// How many failed logins locked it.
    pub failures: u32,
}

impl Lockout {
    /// Until when, as a time; `None` when the text is not RFC 3339.
    pub fn until_time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.until).ok()
    }
}

/// A `kind: user` document, for writing one (`crate::admin` reads and checks them).
#[derive(Debug, Serialize)]
pub struct UserDocument {
    /// `user`.
    pub kind: String,
    /// `v1`.
    pub version: String,
    /// `{name}`.
    pub metadata: UserMetadata,
    /// `{password_hash, roles}`.
    pub spec: UserSpec,
}

/// A user document's `metadata`.
#[derive(Debug, Serialize)]
pub struct UserMetadata {
    /// The user's name.
    pub name: String,
}

/// A user document's `spec`.
#[derive(Debug, Serialize)]
pub struct UserSpec {
    /// PHC argon2id hash.
    pub password_hash: String,
    /// Role names.
    pub roles: Vec<String>,
}

/// The document of `user`, as the store holds it.
pub fn user_document(user: &UserConfig) -> String {
    let doc = UserDocument {
        kind: "user".into(),
        version: "v1".into(),
        metadata: UserMetadata {
            name: user.name.clone(),
        },
        spec: UserSpec {
            password_hash: user.password_hash.clone(),
            roles: user.roles.clone(),
        },
    };
    serde_yaml_ng::to_string(&doc).unwrap_or_default()
}

/// Decodes the value of `key` (its text `source` labels errors), checked as the file
/// loader checks the same document; a role's or a user's name must be the key's.
pub fn decode(key: &Key, source: &str, value: &[u8]) -> Result<Entry, String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("{source}: larger than {MAX_VALUE_BYTES} bytes"));
    }
    if matches!(key, Key::Role(_) | Key::User(_)) && value.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{source}: larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let text = std::str::from_utf8(value).map_err(|_| format!("{source}: not UTF-8"))?;
    let stored = |rel: &str| crate::admin::parse_stored(rel, text).map_err(|e| e.to_string());
    match key {
        Key::Role(_) => {
            stored(&key.path())?;
            // Checked above; read again for the policy crate's role object.
            let role = ippin_policy::parse_roles(source, text)
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| format!("{source}: no role"))?;
            Ok(Entry::Role(Box::new(role)))
        }
        Key::User(_) => stored(&key.path())?
            .user_config()
            .map(Entry::User)
            .ok_or_else(|| format!("{source}: not a user")),
        Key::Restrictions => {
            stored(&key.path())?;
            Ok(Entry::Restrictions(value.to_vec()))
        }
        Key::Lockout(_) => {
            let l: Lockout = serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))?;
            if l.until_time().is_none() {
                return Err(format!("{source}: until: not an RFC 3339 time"));
            }
            Ok(Entry::Lockout(l))
        }
        Key::Failure(_) => Ok(Entry::Failure),
    }
}

/// A node's copy of the store: every key below the prefix that decoded, at `revision`.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    entries: BTreeMap<String, (Key, Entry)>,
    /// The revision each key's value was written at.
    revisions: BTreeMap<String, i64>,
    /// Indices kept with `entries`, so that what changes often (a failure, a lock) costs
    /// its own size, not the store's: failure keys per user, and the lockout keys.
    failures: BTreeMap<String, usize>,
    lockout_keys: std::collections::BTreeSet<String>,
    /// The store revision applied last.
    pub revision: i64,
}

/// A key whose value was refused: not applied, the previous value (if any) stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The key below the prefix.
    pub key: String,
    /// The revision of the refused value.
    pub revision: i64,
    /// Why.
    pub message: String,
}

impl Mirror {
    /// Applies one change: `value` `None` for a delete. A value that does not decode is
    /// refused (the previous one stays); keys of no known form are ignored.
    pub fn apply(
        &mut self,
        rel: &str,
        value: Option<&[u8]>,
        revision: i64,
        source: &str,
    ) -> Result<(), Refused> {
        let Some(key) = Key::parse(rel) else {
            return Ok(());
        };
        match value {
            // Removing the policy would lift every restriction on every node: not followed
            // (the admin API refuses it; another etcd client can still delete the key).
            None if key == Key::Restrictions && self.entries.contains_key(rel) => Err(Refused {
                key: rel.to_owned(),
                revision,
                message: format!(
                    "{source}: deleted; the network restrictions are never removed this way \
                     (write an allow-all document), the last policy stays"
                ),
            }),
            None => {
                let existed = self.entries.remove(rel).is_some();
                self.revisions.remove(rel);
                self.index(&key, rel, existed, false);
                Ok(())
            }
            Some(v) => match decode(&key, source, v) {
                Ok(entry) => {
                    let existed = self
                        .entries
                        .insert(rel.to_owned(), (key.clone(), entry))
                        .is_some();
                    self.revisions.insert(rel.to_owned(), revision);
                    self.index(&key, rel, existed, true);
                    Ok(())
                }
                Err(message) => {
                    // A role or user that does not validate is dropped, not kept as it was:
                    // the value refused may narrow it (fewer roles, a new hash), and the old
                    // one would stay in force, wider. Without it, its users are refused (a
                    // missing role fails closed). Restrictions and locks keep their last value
                    // (none would lift them).
                    if matches!(key, Key::Role(_) | Key::User(_))
                        && let Some((old, _)) = self.entries.remove(rel)
                    {
                        self.revisions.remove(rel);
                        self.index(&old, rel, true, false);
                    }
                    Err(Refused {
                        key: rel.to_owned(),
                        revision,
                        message,
                    })
                }
            },
        }
    }

    /// Takes `previous`'s value of `rel` (or its absence).
    pub fn copy_from(&mut self, previous: &Mirror, rel: &str) {
        match previous.entries.get(rel) {
            Some(e) => {
                let existed = self.entries.insert(rel.to_owned(), e.clone()).is_some();
                if let Some(r) = previous.revisions.get(rel) {
                    self.revisions.insert(rel.to_owned(), *r);
                }
                self.index(&e.0.clone(), rel, existed, true);
            }
            None => {
                if let Some((key, _)) = self.entries.remove(rel) {
                    self.index(&key, rel, true, false);
                }
                self.revisions.remove(rel);
            }
        }
    }

    /// Keeps the indices with `entries`: `rel` (of `key`) existed before the change and
    /// exists after it.
    fn index(&mut self, key: &Key, rel: &str, existed: bool, exists: bool) {
        match (key, existed, exists) {
            (Key::Failure(user), false, true) => {
                *self.failures.entry(user.clone()).or_insert(0) += 1
            }
            (Key::Failure(user), true, false) => {
                if let Some(n) = self.failures.get_mut(user) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.failures.remove(user);
                    }
                }
            }
            (Key::Lockout(_), _, true) => {
                self.lockout_keys.insert(rel.to_owned());
            }
            (Key::Lockout(_), _, false) => {
                self.lockout_keys.remove(rel);
            }
            _ => {}
        }
    }

    /// Whether the store holds failed logins of `user`.
    pub fn has_failures(&self, user: &str) -> bool {
        self.failures.contains_key(user)
    }

    /// The roles and users, as a directory at this revision.
    pub fn directory(&self) -> Directory {
        let mut roles = Vec::new();
        let mut users = Vec::new();
        for (_, entry) in self.entries.values() {
            match entry {
                Entry::Role(r) => roles.push((**r).clone()),
                Entry::User(u) => users.push(u.clone()),
                _ => {}
            }
        }
        // Names are the keys', so they are unique: the set always builds.
        let roles = ippin_policy::RoleSet::new(roles).unwrap_or_default();
        Directory::new(roles, users, self.revision)
    }

    /// The network restrictions document, if the store has one.
    pub fn restrictions(&self) -> Option<&[u8]> {
        self.entries
            .get("network_restrictions")
            .and_then(|(_, e)| match e {
                Entry::Restrictions(t) => Some(t.as_slice()),
                _ => None,
            })
    }

    /// The lockouts: user → (until, the revision the lock was written at).
    pub fn lockouts_at(&self) -> HashMap<String, (SystemTime, i64)> {
        self.lockouts()
            .into_iter()
            .map(|(user, until)| {
                let rev = self
                    .revisions
                    .get(&format!("lockouts/{user}"))
                    .copied()
                    .unwrap_or(0);
                (user, (until, rev))
            })
            .collect()
    }

    /// The lockouts: user → until.
    pub fn lockouts(&self) -> HashMap<String, SystemTime> {
        self.lockout_keys
            .iter()
            .filter_map(|rel| match self.entries.get(rel)? {
                (Key::Lockout(user), Entry::Lockout(l)) => Some((user.clone(), l.until_time()?)),
                _ => None,
            })
            .collect()
    }

    /// The users with failed logins in the store.
    pub fn failed_users(&self) -> std::collections::HashSet<String> {
        self.failures.keys().cloned().collect()
    }

    /// How many keys of each kind (for `/readyz` and the logs).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for (_, e) in self.entries.values() {
            match e {
                Entry::Role(_) => c.0 += 1,
                Entry::User(_) => c.1 += 1,
                Entry::Lockout(_) => c.2 += 1,
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bI+5gKQd2U5oOZ0+Fq2v9mO7q8n+h3Y0nJ8y1ZcI8c";

    fn role(name: &str, pin: bool) -> String {
        format!(
            "kind: role\nversion: v7\nmetadata:\n  name: {name}\nspec:\n  options:\n    pin_source_ip: {pin}\n"
        )
    }

    #[test]
    fn keys_round_trip_and_odd_keys_are_ignored() {
        for k in [
            Key::Role("dev".into()),
            Key::User("alice".into()),
            Key::Restrictions,
            Key::Lockout("bob".into()),
        ] {
            assert_eq!(Key::parse(&k.path()), Some(k));
        }
        assert_eq!(
            Key::parse("failures/bob/node-1"),
            Some(Key::Failure("bob".into()))
        );
        for odd in [
            "roles/",
            "roles/a/b",
            "users/-x",
            "users/a b",
            "nothing",
            "failures/bob",
            "failures/bob/",
            "roles/../x",
            "",
        ] {
            assert_eq!(Key::parse(odd), None, "{odd}");
        }
    }

    #[test]
    fn values_are_checked_as_the_files_are() {
        let ok = decode(&Key::Role("dev".into()), "k", role("dev", true).as_bytes()).unwrap();
        assert!(matches!(ok, Entry::Role(r) if r.pin_source_ip));
        // The name must be the key's; one document only.
        assert!(decode(&Key::Role("ops".into()), "k", role("dev", true).as_bytes()).is_err());
        let two = format!("{}---\n{}", role("dev", true), role("dev", false));
        assert!(decode(&Key::Role("dev".into()), "k", two.as_bytes()).is_err());
        assert!(decode(&Key::Role("dev".into()), "k", b"kind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  options:\n    pin_source_ip: yes\n").is_err());
        let u = UserConfig {
            name: "alice".into(),
            password_hash: HASH.into(),
            roles: vec!["dev".into()],
        };
        let doc = user_document(&u);
        match decode(&Key::User("alice".into()), "k", doc.as_bytes()).unwrap() {
            Entry::User(back) => assert_eq!(back, u),
            other => panic!("{other:?}"),
        }
        assert!(decode(&Key::User("bob".into()), "k", doc.as_bytes()).is_err());
        for bad in [
            doc.replace("$argon2id$", "$argon2i$"),
            doc.replace("kind: user", "kind: role"),
            doc.replace("roles:", "bogus: 1\n  roles:"),
            format!("a: &x [1]\nb: *x\n{doc}"),
        ] {
            assert!(
                decode(&Key::User("alice".into()), "k", bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(
            decode(
                &Key::Restrictions,
                "k",
                b"kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 10.0.0.0/8\n"
            )
            .is_ok()
        );
        assert!(decode(&Key::Restrictions, "k", b"kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 10.0.0.0/33\n").is_err());
        assert!(
            decode(
                &Key::Lockout("a".into()),
                "k",
                br#"{"until":"2026-01-01T00:00:00Z","failures":5}"#
            )
            .is_ok()
        );
        assert!(
            decode(
                &Key::Lockout("a".into()),
                "k",
                br#"{"until":"soon","failures":5}"#
            )
            .is_err()
        );
        assert!(decode(&Key::Restrictions, "k", &vec![b'#'; MAX_VALUE_BYTES + 1]).is_err());
        assert!(decode(&Key::Restrictions, "k", b"\xff").is_err());
    }

    /// A role or user whose new value does not validate is dropped (the refused value may
    /// narrow it: the old one must not stay in force, wider); the restrictions keep their
    /// last value (none would lift them).
    #[test]
    fn a_refused_role_is_dropped_and_refused_restrictions_keep_the_last() {
        let mut m = Mirror::default();
        m.apply("roles/dev", Some(role("dev", false).as_bytes()), 2, "k")
            .unwrap();
        let r = m
            .apply("roles/dev", Some(b"kind: role\n"), 3, "k")
            .unwrap_err();
        assert_eq!((r.key.as_str(), r.revision), ("roles/dev", 3));
        assert!(m.directory().roles().get("dev").is_none());
        let policy =
            b"kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 10.0.0.0/8\n";
        m.apply("network_restrictions", Some(policy), 4, "k")
            .unwrap();
        m.apply("network_restrictions", Some(b"kind: x\n"), 5, "k")
            .unwrap_err();
        assert_eq!(m.restrictions(), Some(&policy[..]));
        // Unknown keys are ignored, not refused.
        m.apply("something/else", Some(b"\xff"), 6, "k").unwrap();
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// A change: a key (a few of each kind, and odd ones) and a value (valid for its
        /// kind, valid for another kind, broken, or a delete).
        fn change() -> impl Strategy<Value = (String, Option<Vec<u8>>)> {
            let key = prop_oneof![
                Just("roles/dev".to_owned()),
                Just("roles/ops".to_owned()),
                Just("users/alice".to_owned()),
                Just("network_restrictions".to_owned()),
                Just("lockouts/alice".to_owned()),
                Just("failures/alice/n-1".to_owned()),
                Just("failures/alice/n-2".to_owned()),
                Just("lockouts/bob".to_owned()),
                Just("other/key".to_owned()),
            ];
            let value = prop_oneof![Just(None), (0u8..6).prop_map(Some),];
            (key, value).prop_map(|(key, v)| {
                let value = v.map(|n| match n {
                    0 => role(key.rsplit('/').next().unwrap_or("x"), n % 2 == 0).into_bytes(),
                    1 => role("someone-else", true).into_bytes(),
                    2 => user_document(&UserConfig {
                        name: key.rsplit('/').next().unwrap_or("x").to_owned(),
                        password_hash: HASH.into(),
                        roles: vec!["dev".into()],
                    })
                    .into_bytes(),
                    3 => b"kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 10.0.0.0/8\n".to_vec(),
                    4 => br#"{"until":"2030-01-01T00:00:00Z","failures":5}"#.to_vec(),
                    _ => b"kind: role\n: [\n".to_vec(),
                });
                (key, value)
            })
        }

        proptest! {
            /// The mirror is, for every key, the last value that decoded for it (a refused
            /// value keeps the one before, but a refused role or user is dropped; a delete
            /// removes it, except the network restrictions'); keys of no known form hold
            /// nothing.
            #[test]
            fn the_mirror_keeps_the_last_good_value(changes in prop::collection::vec(change(), 0..40)) {
                let mut m = Mirror::default();
                let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (i, (key, value)) in changes.iter().enumerate() {
                    let rev = i as i64 + 2;
                    let result = m.apply(key, value.as_deref(), rev, key);
                    let parsed = Key::parse(key);
                    match (&parsed, value) {
                        (None, _) => prop_assert!(result.is_ok()),
                        (Some(Key::Restrictions), None) if model.contains_key(key) => {
                            prop_assert!(result.is_err());
                        }
                        (Some(_), None) => {
                            prop_assert!(result.is_ok());
                            model.remove(key);
                        }
                        (Some(k), Some(v)) => {
                            let ok = decode(k, key, v).is_ok();
                            prop_assert_eq!(result.is_ok(), ok);
                            if ok {
                                model.insert(key.clone(), v.clone());
                            } else if matches!(k, Key::Role(_) | Key::User(_)) {
                                model.remove(key);
                            }
                        }
                    }
                }
                let d = m.directory();
                for name in ["dev", "ops"] {
                    prop_assert_eq!(d.roles().get(name).is_some(), model.contains_key(&format!("roles/{name}")));
                }
                prop_assert_eq!(d.user("alice").is_some(), model.contains_key("users/alice"));
                prop_assert_eq!(m.restrictions().map(<[u8]>::to_vec), model.get("network_restrictions").cloned());
                prop_assert_eq!(m.lockouts().contains_key("alice"), model.contains_key("lockouts/alice"));
                let alice_failed = model.keys().any(|k| k.starts_with("failures/alice/"));
                prop_assert_eq!(m.failed_users().contains("alice"), alice_failed);
                prop_assert_eq!(m.has_failures("alice"), alice_failed);
                // The lockouts index agrees with the entries.
                for who in ["alice", "bob"] {
                    prop_assert_eq!(
                        m.lockouts().contains_key(who),
                        model.contains_key(&format!("lockouts/{who}"))
                    );
                }
                // A mirror made by copying every key agrees too.
                let mut copy = Mirror::default();
                for key in model.keys().chain(["failures/alice/n-1".to_owned()].iter()) {
                    copy.copy_from(&m, key);
                }
                prop_assert_eq!(copy.has_failures("alice"), alice_failed);
                prop_assert_eq!(copy.lockouts(), m.lockouts());
            }
        }
    }
}
