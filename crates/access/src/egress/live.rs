//! A `network_restrictions` policy that can change while the server runs.
//!
//! The file is re-read on demand ([`LiveRestrictions::reload`]), on `SIGHUP`
//! ([`LiveRestrictions::reload_on_sighup`]) or when it changes ([`LiveRestrictions::watch`],
//! polling). A new policy applies to every dial made after it is loaded, in every session,
//! without dropping any: connections already made stay up. A file that cannot be read or
//! parsed is refused with an error and the previous policy stays in force.
//!
//! Replace the file by writing a new one beside it and renaming it over the old
//! (`mv`, `rename(2)`): a reload that catches an edit in place half written would read a
//! shorter file, which may parse as a looser policy until the next poll.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ippin_policy::{NetDecision, NetworkRestrictions};

use super::dial::DialPolicy;

/// The largest policy file read, in bytes.
pub const MAX_POLICY_FILE: u64 = 1 << 20;

/// Why a policy file was refused. The previous policy stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file could not be read.
    #[error("network restrictions `{path}`: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Users other than root and this process's user may change the file (group or others
    /// have write permission, or another user owns it): whoever can change it decides
    /// where sessions may connect.
    #[error(
        "network restrictions `{path}`: {} (mode {mode:04o}, owner uid {owner}): refused; \
         make it root's or this user's and `chmod go-w` it",
        if mode & 0o022 != 0 { "writable by group or others" } else { "owned by another user" }
    )]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
    /// The file is larger than [`MAX_POLICY_FILE`].
    #[error("network restrictions `{path}`: larger than {MAX_POLICY_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The policy is in force for the dials, but something told of it (a
    /// [`LiveRestrictions::on_change`] hook, e.g. the kernel maps) could not follow.
    #[error(
        "network restrictions `{path}`: in force for the server's dials, but not applied everywhere: {reason}"
    )]
    Hook {
        /// The file.
        path: PathBuf,
        /// What the hooks said.
        reason: String,
    },
    /// The policy does not parse (the policy crate's error names the entry).
    #[error("network restrictions `{path}`: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the policy crate refused.
        source: ippin_policy::Error,
    },
}

/// What is told of every new policy (see [`LiveRestrictions::on_change`]).
pub type ChangeHook = Box<dyn Fn(&NetworkRestrictions) -> Result<(), String> + Send + Sync>;

/// The policy in force, and where it comes from.
pub struct LiveRestrictions {
    path: PathBuf,
    /// Whether `path` is a file to re-read (`false`: a name for a document that a store
    /// hands over with [`LiveRestrictions::set_document`]).
    from_file: bool,
    current: RwLock<Arc<NetworkRestrictions>>,
    generation: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The text in force; `None` when a hook failed, so the next update applies again.
    last_text: Mutex<Option<Option<Vec<u8>>>>,
    hooks: Mutex<Vec<ChangeHook>>,
    /// Held by each update from its read to its last hook, and by [`LiveRestrictions::follow`]:
    /// updates never interleave (an older text read first cannot be put in force after a
    /// newer one), and a follower starts from the policy its hook then follows.
    updates: Mutex<()>,
}

impl std::fmt::Debug for LiveRestrictions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRestrictions")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl LiveRestrictions {
    /// Loads the policy at `path`.
    ///
    /// # Errors
    /// When the file cannot be read or parsed: a server refuses to start with a broken
    /// policy rather than run without one.
    pub fn load(path: impl Into<PathBuf>) -> Result<LiveRestrictions, ReloadError> {
        let path = path.into();
        let text = read_bounded(&path)?;
        let policy = parse(&path, &text)?;
        Ok(LiveRestrictions {
            path,
            from_file: true,
            current: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(1),
            last_error: Mutex::new(None),
            last_text: Mutex::new(Some(Some(text))),
            hooks: Mutex::new(Vec::new()),
            updates: Mutex::new(()),
        })
    }

    /// A policy that a store (etcd, …) hands over rather than a file: `source` names it in
    /// errors and logs (e.g. the store key), `document` is its text, `None` when the store
    /// has none (every destination allowed, [`NetworkRestrictions::allow_all`]). Later
    /// versions come through [`LiveRestrictions::set_document`];
    /// [`LiveRestrictions::reload`] and the file watchers do nothing for it.
    ///
    /// # Errors
    /// When the document is larger than [`MAX_POLICY_FILE`] or does not parse: the caller
    /// refuses to start rather than run without the policy.
    pub fn from_document(
        source: impl Into<PathBuf>,
        document: Option<&[u8]>,
    ) -> Result<LiveRestrictions, ReloadError> {
        let path = source.into();
        let policy = match document {
            Some(text) => parse_bounded(&path, text)?,
            None => NetworkRestrictions::allow_all(),
        };
        Ok(LiveRestrictions {
            from_file: false,
            current: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(1),
            last_error: Mutex::new(None),
            last_text: Mutex::new(Some(document.map(<[u8]>::to_vec))),
            hooks: Mutex::new(Vec::new()),
            updates: Mutex::new(()),
            path,
        })
    }

    /// Puts a new version of a store-fed policy in force (see
    /// [`LiveRestrictions::from_document`]); `None`: the store has none any more, every
    /// destination is allowed. So pass `None` only for a deliberate removal the store
    /// vouches for: whoever can delete the key lifts every restriction, and a read that
    /// failed, or a watch that lost its place, is not "none" (keep the last policy then, as
    /// the reference server's mirror does). A document is parsed whatever it holds: an empty one is
    /// refused like any other that does not parse, never taken for "no policy". Returns whether the policy changed. The hooks are called as
    /// for [`LiveRestrictions::reload`].
    ///
    /// # Errors
    /// As [`LiveRestrictions::reload`]: a document that does not parse leaves the previous
    /// policy in force.
    pub fn set_document(&self, document: Option<&[u8]>) -> Result<bool, ReloadError> {
        let _update = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        // `None` is "no policy" (allow all); a document, even an empty one, must parse: a
        // key blanked in the store (or a write cut short) never lifts the restrictions.
        self.apply(document.map(<[u8]>::to_vec), |text| match text {
            None => Ok(NetworkRestrictions::allow_all()),
            Some(text) => parse_bounded(&self.path, text),
        })
    }

    /// Calls `hook` with every policy put in force from now on, right after the dials see
    /// it: this is how kernel enforcement (`ippin-restrict`'s `Enforcer::set_policy`) follows
    /// the file, so a session's processes and the server's dials for it change together.
    /// A hook's error is logged (at `error` level) and given back by
    /// [`LiveRestrictions::reload`] as [`ReloadError::Hook`]; the new policy stays in force
    /// for the dials.
    pub fn on_change(&self, hook: ChangeHook) {
        let _update = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Starts a follower from the policy in force and registers the hook `start` returns,
    /// with no update in between (updates wait): the follower can miss no policy. This is
    /// how kernel enforcement starts (`Enforcer::new` with the policy, then its
    /// `set_policy` as the hook); with [`LiveRestrictions::on_change`] after a separate
    /// start, a policy put in force meanwhile would reach the dials and not the follower.
    ///
    /// # Errors
    /// `start`'s error; nothing is registered then.
    pub fn follow<T, E>(
        &self,
        start: impl FnOnce(&NetworkRestrictions) -> Result<(T, ChangeHook), E>,
    ) -> Result<T, E> {
        let _update = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        let (started, hook) = start(&self.current())?;
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
        Ok(started)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<NetworkRestrictions> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many policies have been put in force (1 after [`LiveRestrictions::load`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The error of the last refused update, cleared by the next successful one.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Re-reads the file and, when it parses, puts it in force. Returns whether the policy
    /// text changed (an unchanged file is not reloaded).
    ///
    /// # Errors
    /// When the file cannot be read or parsed; the previous policy stays in force and
    /// [`LiveRestrictions::last_error`] says why.
    pub fn reload(&self) -> Result<bool, ReloadError> {
        if !self.from_file {
            return Ok(false);
        }
        let _update = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        match read_bounded(&self.path) {
            Ok(text) => self.apply(Some(text), |text| {
                parse(&self.path, text.unwrap_or_default())
            }),
            Err(e) => {
                self.set_error(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// Puts `text` in force (parsed by `parse`) unless it is the text in force already.
    fn apply(
        &self,
        text: Option<Vec<u8>>,
        parse: impl FnOnce(Option<&[u8]>) -> Result<NetworkRestrictions, ReloadError>,
    ) -> Result<bool, ReloadError> {
        let unchanged = self
            .last_text
            .lock()
            .map(|t| t.as_ref() == Some(&text))
            .unwrap_or(false);
        let result = if unchanged {
            Ok(None)
        } else {
            parse(text.as_deref()).map(|p| Some((p, text)))
        };
        match result {
            Ok(None) => {
                self.set_error(None);
                Ok(false)
            }
            Ok(Some((policy, text))) => {
                match self.current.write() {
                    Ok(mut p) => *p = Arc::new(policy),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
                }
                if let Ok(mut t) = self.last_text.lock() {
                    *t = Some(text);
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
                let current = self.current();
                let failed: Vec<String> = self
                    .hooks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .filter_map(|hook| hook(&current).err())
                    .collect();
                if !failed.is_empty() {
                    // Not "applied": the next reload (poll or SIGHUP) tries the hooks again,
                    // even if the file does not change.
                    if let Ok(mut t) = self.last_text.lock() {
                        *t = None;
                    }
                    let e = ReloadError::Hook {
                        path: self.path.clone(),
                        reason: failed.join("; "),
                    };
                    self.set_error(Some(e.to_string()));
                    return Err(e);
                }
                self.set_error(None);
                Ok(true)
            }
            Err(e) => {
                self.set_error(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// [`LiveRestrictions::reload`], logged: a new policy at `warn` level, a refused one at
    /// `error` level (once per distinct error, so a broken file watched every second does
    /// not flood the log).
    pub fn reload_logged(&self) {
        let before = self.last_error();
        match self.reload() {
            Ok(true) => tracing::warn!(
                file = %self.path.display(),
                generation = self.generation(),
                "network restrictions reloaded: the new policy applies to every new connection"
            ),
            Ok(false) => {}
            Err(e) => {
                if before.as_deref() != Some(e.to_string().as_str()) {
                    tracing::error!("{e}; refused, the previous policy stays in force");
                }
            }
        }
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e;
        }
    }

    /// Re-reads the file every `interval` and applies it when its content changed. Runs until
    /// the task is dropped or aborted.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = self.clone();
                // File I/O off the async workers.
                let _ = tokio::task::spawn_blocking(move || this.reload_logged()).await;
            }
        })
    }

    /// Re-reads the file on every `SIGHUP`. Registering replaces the signal's default action
    /// (terminate) for the whole process.
    ///
    /// # Errors
    /// When the signal handler cannot be installed.
    pub fn reload_on_sighup(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload_logged()).await;
            }
        }))
    }
}

impl DialPolicy for LiveRestrictions {
    fn decide(&self, _user: &str, dst: SocketAddr) -> NetDecision {
        self.current().decide(dst.ip())
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ReloadError> {
    let read_err = |source| ReloadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    // Of the file opened, not of the path (no swap between the check and the read).
    let (mode, owner) = {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(read_err)?;
        (meta.mode() & 0o7777, meta.uid())
    };
    if mode & 0o022 != 0 || (owner != 0 && owner != rustix::process::geteuid().as_raw()) {
        return Err(ReloadError::Writable {
            path: path.to_owned(),
            mode,
            owner,
        });
    }
    let mut text = Vec::new();
    file.take(MAX_POLICY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_POLICY_FILE {
        return Err(ReloadError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

fn parse_bounded(path: &Path, text: &[u8]) -> Result<NetworkRestrictions, ReloadError> {
    if text.len() as u64 > MAX_POLICY_FILE {
        return Err(ReloadError::TooLarge {
            path: path.to_owned(),
        });
    }
    parse(path, text)
}

fn parse(path: &Path, text: &[u8]) -> Result<NetworkRestrictions, ReloadError> {
    let name = path.display().to_string();
    let text = std::str::from_utf8(text).map_err(|e| ReloadError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    NetworkRestrictions::parse(&name, text).map_err(|source| ReloadError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> String {
        let mut s = String::from("kind: network_restrictions\nversion: v4\nspec:\n  allow:\n");
        for a in allow {
            s.push_str(&format!("  - cidr: {a}\n"));
        }
        if !deny.is_empty() {
            s.push_str("  deny:\n");
            for d in deny {
                s.push_str(&format!("  - cidr: {d}\n"));
            }
        }
        s
    }

    fn dst(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_store_fed_policy_follows_its_documents_and_keeps_the_last_good_one() {
        let live =
            LiveRestrictions::from_document("etcd:/ippin/network_restrictions", None).unwrap();
        // No document: every destination.
        assert!(live.decide("u", dst("10.1.2.3:1")).is_allowed());
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        live.on_change(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        let doc = policy(&["127.0.0.0/8"], &["127.0.0.9"]);
        assert!(live.set_document(Some(doc.as_bytes())).unwrap());
        assert!(!live.decide("u", dst("10.1.2.3:1")).is_allowed());
        assert!(!live.decide("u", dst("127.0.0.9:22")).is_allowed());
        assert!(live.decide("u", dst("127.0.0.1:22")).is_allowed());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The same text again: nothing to do.
        assert!(!live.set_document(Some(doc.as_bytes())).unwrap());
        // A broken one: refused, the previous policy stays (never "none").
        let err = live
            .set_document(Some(b"kind: network_restrictions\nspec: ["))
            .unwrap_err();
        assert!(
            err.to_string().contains("etcd:/ippin/network_restrictions"),
            "{err}"
        );
        assert!(!live.decide("u", dst("10.1.2.3:1")).is_allowed());
        assert!(live.last_error().is_some());
        // Too large: refused before parsing.
        let big = vec![b'#'; MAX_POLICY_FILE as usize + 1];
        assert!(matches!(
            live.set_document(Some(&big)),
            Err(ReloadError::TooLarge { .. })
        ));
        // An empty document (a key blanked, a write cut short) is not "no policy": refused,
        // the previous policy stays.
        assert!(live.set_document(Some(b"")).is_err());
        assert!(!live.decide("u", dst("10.1.2.3:1")).is_allowed());
        assert!(live.decide("u", dst("127.0.0.1:22")).is_allowed());
        // Reloading from a file does nothing for a store-fed policy.
        assert!(!live.reload().unwrap());
        // Removed from the store: every destination again.
        assert!(live.set_document(None).unwrap());
        assert!(live.decide("u", dst("10.1.2.3:1")).is_allowed());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(live.generation(), 3);
        // And from "no policy", an empty document is refused too: it stays "no policy".
        assert!(live.set_document(Some(b"")).is_err());
        assert_eq!(live.generation(), 3);
        let fresh = LiveRestrictions::from_document("etcd:/x", Some(b""));
        assert!(fresh.is_err(), "an empty first document refuses to start");
    }

    /// A follower starts from the policy in force and misses none after it: an update that
    /// comes while it starts waits, then reaches its hook.
    #[test]
    fn a_follower_started_during_an_update_misses_no_policy() {
        let live = Arc::new(
            LiveRestrictions::from_document("etcd:/ippin/network_restrictions", None).unwrap(),
        );
        let followed = Arc::new(Mutex::new(Vec::<bool>::new()));
        let (seen, updater) = (followed.clone(), live.clone());
        let mut update = None;
        let started_from = live
            .follow(|policy| {
                // No update runs while the follower starts.
                assert!(updater.updates.try_lock().is_err());
                let doc = policy_text(&["127.0.0.0/8"]);
                let other = updater.clone();
                update = Some(std::thread::spawn(move || {
                    other.set_document(Some(doc.as_bytes()))
                }));
                let hook: ChangeHook = Box::new(move |p| {
                    seen.lock().unwrap().push(p.has_policy());
                    Ok(())
                });
                Ok::<_, ()>((policy.has_policy(), hook))
            })
            .unwrap();
        assert!(!started_from, "started from the policy in force: none");
        assert!(update.take().unwrap().join().unwrap().unwrap());
        // The update that came during the start reached the follower.
        assert_eq!(*followed.lock().unwrap(), vec![true]);
        assert!(!live.decide("u", dst("10.1.2.3:1")).is_allowed());
    }

    fn policy_text(allow: &[&str]) -> String {
        policy(allow, &[])
    }

    #[test]
    fn a_failed_hook_makes_the_next_store_update_apply_again() {
        let live = LiveRestrictions::from_document("store", None).unwrap();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        live.on_change(Box::new(move |_| {
            if f.load(Ordering::SeqCst) {
                Err("map update failed".into())
            } else {
                Ok(())
            }
        }));
        let doc = policy(&["127.0.0.0/8"], &[]);
        assert!(matches!(
            live.set_document(Some(doc.as_bytes())),
            Err(ReloadError::Hook { .. })
        ));
        fail.store(false, Ordering::SeqCst);
        // Same text, but not applied everywhere yet: applied again.
        assert!(live.set_document(Some(doc.as_bytes())).unwrap());
        assert!(live.last_error().is_none());
    }

    #[test]
    fn update_applies_and_broken_update_keeps_the_old_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nr.yaml");
        std::fs::write(&path, policy(&["127.0.0.0/8"], &[])).unwrap();
        let live = LiveRestrictions::load(&path).unwrap();
        assert!(live.decide("u", dst("127.0.0.4:1")).is_allowed());

        std::fs::write(&path, policy(&["127.0.0.0/8"], &["127.0.0.4"])).unwrap();
        assert!(live.reload().unwrap());
        assert_eq!(live.generation(), 2);
        assert!(!live.decide("u", dst("127.0.0.4:1")).is_allowed());
        assert!(!live.decide("u", dst("[::ffff:127.0.0.4]:1")).is_allowed());
        assert!(live.decide("u", dst("127.0.0.1:1")).is_allowed());

        // Unchanged: nothing to do.
        assert!(!live.reload().unwrap());

        // Broken: refused, old policy kept, error reported.
        std::fs::write(&path, policy(&["127.0.0.1/8"], &[])).unwrap();
        assert!(live.reload().is_err());
        assert_eq!(live.generation(), 2);
        assert!(live.last_error().is_some());
        assert!(!live.decide("u", dst("127.0.0.4:1")).is_allowed());
        assert!(live.decide("u", dst("127.0.0.1:1")).is_allowed());

        // An empty allow list denies everything.
        std::fs::write(&path, policy(&[], &[])).unwrap();
        assert!(live.reload().unwrap());
        assert!(live.last_error().is_none());
        assert!(!live.decide("u", dst("127.0.0.1:1")).is_allowed());
    }

    #[test]
    fn hooks_see_every_new_policy_and_their_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nr.yaml");
        std::fs::write(&path, policy(&["127.0.0.0/8"], &[])).unwrap();
        let live = LiveRestrictions::load(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        live.on_change(Box::new(move |p| {
            let denied = !p.decide("127.0.0.4".parse().unwrap()).is_allowed();
            log.lock().unwrap().push(denied);
            if denied {
                Err("kernel said no".to_owned())
            } else {
                Ok(())
            }
        }));
        std::fs::write(&path, policy(&["127.0.0.0/8", "::1/128"], &[])).unwrap();
        assert!(live.reload().unwrap());
        // Unchanged and broken files are not told.
        assert!(!live.reload().unwrap());
        std::fs::write(&path, "kind: nope\n").unwrap();
        assert!(live.reload().is_err());
        assert_eq!(*seen.lock().unwrap(), vec![false]);
        // A hook that fails: the dials have the new policy, the error says it is not
        // applied everywhere.
        std::fs::write(&path, policy(&["127.0.0.0/8"], &["127.0.0.4"])).unwrap();
        let e = live.reload().unwrap_err();
        assert!(matches!(e, ReloadError::Hook { .. }), "{e}");
        assert!(e.to_string().contains("kernel said no"), "{e}");
        assert_eq!(*seen.lock().unwrap(), vec![false, true]);
        assert!(!live.decide("u", dst("127.0.0.4:1")).is_allowed());
        assert!(
            live.last_error()
                .unwrap()
                .contains("not applied everywhere")
        );
    }

    #[test]
    fn a_broken_file_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nr.yaml");
        std::fs::write(
            &path,
            "kind: network_restrictions\nversion: v4\nspec: {bogus: 1}\n",
        )
        .unwrap();
        assert!(matches!(
            LiveRestrictions::load(&path),
            Err(ReloadError::Parse { .. })
        ));
        assert!(matches!(
            LiveRestrictions::load(dir.path().join("missing.yaml")),
            Err(ReloadError::Read { .. })
        ));
    }

    /// A policy file others may write is refused, at load and at reload (the policy in
    /// force stays).
    #[test]
    fn a_policy_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nr.yaml");
        std::fs::write(&path, policy(&["127.0.0.0/8"], &[])).unwrap();
        let set = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        set(0o664).unwrap();
        let err = LiveRestrictions::load(&path).unwrap_err();
        assert!(
            matches!(err, ReloadError::Writable { mode: 0o664, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        set(0o644).unwrap();
        let live = LiveRestrictions::load(&path).unwrap();
        std::fs::write(&path, policy(&["10.0.0.0/8"], &[])).unwrap();
        set(0o602).unwrap();
        assert!(matches!(live.reload(), Err(ReloadError::Writable { .. })));
        assert!(live.decide("u", dst("127.0.0.1:1")).is_allowed());
        // Owned by another user (the tests run as root, which may give it away).
        set(0o644).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown: run the tests as root");
        let err = live.reload().unwrap_err();
        assert!(err.to_string().contains("owned by another user"), "{err}");
    }
}
