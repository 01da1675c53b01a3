//! Users: password hashing (argon2id), verification, `ippin user add`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::Outcome;
use crate::config::{self, Config, ConfigError};

/// The longest password accepted (bytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes).
fn argon2_default() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes `password` with argon2id and a fresh random salt, in PHC format.
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_with(password, argon2_default())
}

/// Hashes with light argon2id parameters (4 MiB, 1 pass). Used only for the
/// demo's throw-away users, so the whole demo stays within a few seconds in
/// a debug build. The parameters are in the hash, so verification follows.
pub fn hash_password_light(password: &str) -> Result<String, String> {
    let params = Params::new(4096, 1, 1, None).map_err(|e| e.to_string())?;
    hash_with(
        password,
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
    )
}

fn hash_with(password: &str, argon: Argon2<'_>) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A hash verified against when the user does not exist, so that unknown
/// and known users cost the same time: made with the argon2 parameters of
/// `like` (a configured user's hash) when it parses, else the defaults.
pub fn decoy_hash(like: Option<&str>) -> String {
    let params = like
        .and_then(|h| PasswordHash::new(h).ok())
        .and_then(|h| Params::try_from(&h).ok())
        .unwrap_or_default();
    hash_with(
        "decoy password that matches nothing",
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
    )
    .unwrap_or_default()
}

/// Whether `password` matches the PHC `hash`. Only argon2id hashes are
/// accepted; a malformed hash never matches. CPU-heavy: call it from a
/// blocking thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    argon2_default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Reads a password: from the terminal without echo, or one line from
/// stdin when stdin is not a terminal. The trailing newline is removed.
pub fn read_password(prompt: &str) -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line
    };
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(password)
}

trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    /// Reads one line, at most `MAX_PASSWORD_BYTES + 2` bytes.
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        let limit = (MAX_PASSWORD_BYTES + 2) as u64;
        self.by_ref().take(limit).read_line(out)
    }
}

/// Adds user `name` with `roles` to the configuration at `path`, with a
/// password hash; the edited file is validated before it replaces the old
/// one: written to a new temporary file (random name, created exclusively, so
/// nothing planted at that name is followed) with the configuration's mode
/// less what group and others had (the file holds password hashes: at most
/// 0700), synced, then renamed over it ([`crate::files::replace`]).
pub fn add_user(path: &Path, name: &str, roles: &[String], hash: &str) -> Result<(), ConfigError> {
    let new_text = checked_text_with_user(path, name, roles, hash)?;
    let io = |action, source| ConfigError::Io {
        file: path.to_path_buf(),
        action,
        source,
    };
    let mode = {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .map_err(|e| io("read", e))?
                .permissions()
                .mode()
                & 0o7700
        }
        #[cfg(not(unix))]
        0o600
    };
    crate::files::replace(path, new_text.as_bytes(), mode).map_err(|e| io("replace", e))?;
    Ok(())
}

/// The configuration text with the user added, validated (the roles exist).
fn checked_text_with_user(
    path: &Path,
    name: &str,
    roles: &[String],
    hash: &str,
) -> Result<String, ConfigError> {
    let text = config::read_bounded(path, config::MAX_CONFIG_BYTES)?;
    let new_text = config::add_user_to_text(path, &text, name, hash, roles)?;
    // The roles must exist in the role files named by the config.
    let parsed = Config::parse(path, &new_text)?;
    let role_set = config::load_roles(&parsed.roles)?;
    if let Err(e) = role_set.select(roles) {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: 0,
            field: "users[].roles".into(),
            message: format!("user `{name}`: {e}"),
        });
    }
    Ok(new_text)
}

/// A well-formed argon2id PHC string (of no password anyone has), for checking a
/// configuration with a new user before the password is asked for.
const PLACEHOLDER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg";

/// `ippin user add`.
pub fn add_command(path: &Path, name: &str, roles: &[String]) -> Outcome {
    if let Err(m) = config::check_name(name) {
        return Outcome::fail(1, format!("error: {m}\n"));
    }
    // Everything but the password first, so a typo is reported before the
    // password is asked for.
    // (A well-formed hash stands in for the one not made yet.)
    if let Err(e) = checked_text_with_user(path, name, roles, PLACEHOLDER_HASH) {
        return Outcome::fail(1, format!("error: {e}\n"));
    }
    let password = match read_password(&format!("password for {name}: ")) {
        Ok(p) => p,
        Err(e) => return Outcome::fail(1, format!("error: {e}\n")),
    };
    let hash = match hash_password(&password) {
        Ok(h) => h,
        Err(e) => return Outcome::fail(1, format!("error: {e}\n")),
    };
    match add_user(path, name, roles, &hash) {
        Ok(()) => Outcome::ok(format!(
            "added user {name} (roles: {}) to {}\n",
            if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            },
            path.display()
        )),
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with password hashes is the owner's alone: `user add` takes group
    /// and others' bits away from a file that had them, and `Config::load` refuses one that
    /// group or others may read.
    #[test]
    fn password_hashes_are_kept_from_group_and_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = crate::ca::init(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let hash = hash_password_light("pw").unwrap();
        add_user(&path, "alice", &[], &hash).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(crate::config::Config::load(&path).is_ok());
        for open in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
            let e = crate::config::Config::load(&path).unwrap_err().to_string();
            assert!(e.contains("password hashes"), "{open:o}: {e}");
        }
    }

    #[test]
    fn hash_then_verify() {
        let h = hash_password_light("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!verify_password("not a hash", "x"));
        // Two hashes of one password differ (fresh salt).
        assert_ne!(h, hash_password_light("correct horse").unwrap());
    }

    #[test]
    fn the_decoy_follows_the_parameters_of_a_real_hash() {
        let light = hash_password_light("pw").unwrap();
        let decoy = decoy_hash(Some(&light));
        assert!(decoy.contains("m=4096,t=1,p=1"), "{decoy}");
        assert!(!verify_password(&decoy, "pw"));
        assert!(decoy_hash(None).contains("m=19456,t=2,p=1"));
    }

    #[test]
    fn other_argon2_variants_are_refused() {
        let params = Params::new(4096, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let h = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(!verify_password(&h, "pw"));
    }
}
