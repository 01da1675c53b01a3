//! Reading secret files and replacing files, the careful way.
//!
//! * [`read_private`] opens a private key, checks the mode **of the opened file** (`fstat`
//!   on the descriptor it then reads, so a swap of the path between check and read changes
//!   nothing) and refuses one that group or others may access, as sshd does.
//! * [`replace`] writes a new file next to the target — created exclusively (`O_CREAT |
//!   O_EXCL`: an existing file or a symlink planted at the temporary name is never opened,
//!   let alone followed), with its final mode from the start, synced — and renames it over
//!   the target. The target is never written through: its old inode, mode and any link to
//!   it stay as they were, readers see the old or the new content, never a mix.
//! * [`der_to_pem`] / [`pem_to_der`] write and read one PEM block, and
//!   [`generate_host_key`] makes a fresh Ed25519 SSH key.
//!
//! This is a leaf of the crate: it imports no other module of it, so the CA, the users
//! file, the key commands and the SSH service all use it without reaching into each other.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be used. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Opening or reading failed (missing, unreadable, a folder …).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A private key that group or others may access.
    #[error(
        "permissions {mode:04o} for '{}' are too open: a private key must not be accessible \
         by group or others (chmod 600 '{}')",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file that decides who gets in (configuration, roles, restrictions, a certificate
    /// or CA) that users other than root and this process's user may change: group or
    /// others have write permission, or another user owns it.
    #[error(
        "{}: {why}: whoever can change it decides who gets in (make it root's or this user's, \
         and `chmod go-w` it)",
        path.display()
    )]
    Writable {
        /// The file.
        path: PathBuf,
        /// What lets others change it.
        why: String,
    },
    /// Larger than the bound for this kind of file.
    #[error("{}: larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("{}: not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a text file of at most `limit` bytes.
///
/// # Errors
/// [`FileError::Read`], [`FileError::TooLarge`], [`FileError::NotText`].
pub fn read_public(path: &Path, limit: u64) -> Result<String, FileError> {
    let file = File::open(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    only_trusted_writers(path, &file)?;
    read_open(path, file, limit)
}

/// Refuses `file` (opened from `path`) when a user other than root and this process's
/// effective user may change it: group or others have write permission (`0o022`), or
/// another user owns it. Checked with `fstat` on the descriptor, so a swap of the path
/// between the check and the read changes nothing. (Not checked: the folders on the way,
/// which the operator keeps root's, as `docs/operations.md` sets them up.)
///
/// # Errors
/// [`FileError::Writable`], or [`FileError::Read`] when `fstat` fails.
pub fn only_trusted_writers(path: &Path, file: &File) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.mode() & 0o7777;
        let why = if mode & 0o022 != 0 {
            Some(format!("writable by group or others (mode {mode:04o})"))
        } else if meta.uid() != 0 && meta.uid() != nix::unistd::geteuid().as_raw() {
            Some(format!("owned by another user (uid {})", meta.uid()))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(FileError::Writable {
                path: path.to_path_buf(),
                why,
            });
        }
    }
    Ok(())
}

/// Reads a private key file of at most `limit` bytes, refusing it when its mode lets group
/// or others read, write or execute it (any of the bits `0o077`). The mode is read with
/// `fstat` on the descriptor that is then read.
///
/// # Errors
/// [`FileError::TooOpen`], and those of [`read_public`].
pub fn read_private(path: &Path, limit: u64) -> Result<String, FileError> {
    let file = File::open(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata().map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(FileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    only_trusted_writers(path, &file)?;
    read_open(path, file, limit)
}

fn read_open(path: &Path, file: File, limit: u64) -> Result<String, FileError> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// One-block PEM helpers, from `ippin-propagation` (the same strict reading everywhere).
pub use ippin_propagation::pem::{der_to_pem, pem_to_der};

/// No Ed25519 key could be generated (the system random number generator failed).
#[derive(Debug, thiserror::Error)]
#[error("host key: cannot generate an Ed25519 key: {0}")]
pub struct HostKeyError(pub String);

/// A fresh Ed25519 SSH private key, from the system random number generator.
///
/// # Errors
/// [`HostKeyError`] when no randomness is available.
pub fn generate_host_key() -> Result<ssh_key::PrivateKey, HostKeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| HostKeyError(e.to_string()))?;
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    Ok(ssh_key::PrivateKey::from(pair))
}

/// A fresh name in the folder of `path`: `.NAME.RANDOM.tmp` (64 random bits).
fn temp_name(path: &Path) -> std::io::Result<PathBuf> {
    let mut r = [0u8; 8];
    ippin_cert::getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?
        .to_string_lossy();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(path.with_file_name(format!(".{name}.{hex}.tmp")))
}

/// Replaces the file at `path` with `contents`, mode `mode` (Unix), atomically: see the
/// module docs. The folder is synced after the rename, so the new name survives a crash.
///
/// # Errors
/// The operating-system error of the step that failed; the temporary file is then removed
/// and the target left as it was.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    replace_via(path, &temp_name(path)?, contents, mode)
}

/// [`replace`] through the temporary name `tmp`, which must not exist.
fn replace_via(path: &Path, tmp: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    // create_new is O_CREAT | O_EXCL: fails on any existing entry, symlinks included.
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    // Anything at `tmp` (a planted file or symlink) makes this fail; it is left alone.
    let mut file = opts.open(tmp)?;
    let written = (|| {
        // The umask may have cleared bits of `mode`; set exactly what was asked for.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Best effort: some filesystems refuse to sync a folder.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_key_readable_by_others_is_refused_naming_the_file() {
        let dir = ippin_test_support::temp_dir();
        let p = dir.path().join("key");
        std::fs::write(&p, "secret").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o601, 0o660, 0o610] {
            set_mode(&p, mode);
            let e = read_private(&p, 100).unwrap_err().to_string();
            assert!(e.contains(&format!("permissions {mode:04o}")), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains("too open"), "{e}");
        }
        for mode in [0o600, 0o400] {
            set_mode(&p, mode);
            assert_eq!(read_private(&p, 100).unwrap(), "secret");
        }
        // Public files are read whatever their mode.
        set_mode(&p, 0o644);
        assert_eq!(read_public(&p, 100).unwrap(), "secret");
        assert!(matches!(
            read_public(&p, 3),
            Err(FileError::TooLarge { limit: 3, .. })
        ));
        let missing = read_private(&dir.path().join("nope"), 10).unwrap_err();
        assert!(matches!(missing, FileError::Read { .. }), "{missing}");
    }

    #[test]
    fn replace_makes_a_new_file_with_the_mode_asked() {
        let dir = ippin_test_support::temp_dir();
        let p = dir.path().join("k");
        std::fs::write(&p, "old").unwrap();
        set_mode(&p, 0o644);
        let old_ino = std::fs::metadata(&p).unwrap().ino();
        replace(&p, b"new", 0o600).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_ne!(meta.ino(), old_ino);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        replace(&p, b"newer", 0o640).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_file_or_symlink_at_the_temp_name_is_never_written_through() {
        let dir = ippin_test_support::temp_dir();
        let p = dir.path().join("k");
        std::fs::write(&p, "old").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        let link = dir.path().join("link.tmp");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = dir.path().join("dangling.tmp");
        std::os::unix::fs::symlink(dir.path().join("would-be-created"), &dangling).unwrap();
        let file = dir.path().join("file.tmp");
        std::fs::write(&file, "planted").unwrap();
        for tmp in [&link, &dangling, &file] {
            let e = replace_via(&p, tmp, b"new", 0o600).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{tmp:?}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "planted");
        assert!(!dir.path().join("would-be-created").exists());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        // Two replacements never pick the same name.
        assert_ne!(temp_name(&p).unwrap(), temp_name(&p).unwrap());
    }

    #[test]
    fn replace_never_writes_through_a_symlink_at_the_target() {
        // A symlink at the target is replaced by the new file, not followed.
        let dir = ippin_test_support::temp_dir();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        let p = dir.path().join("k");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        replace(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
    }
}
