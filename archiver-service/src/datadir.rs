//! The archiver's data directory: where it is, what lives in it, and who may use it.
//!
//! Layout: `credentials/` (one TOML per app registration), `profiles/` (one TOML per
//! profile), `users/` (the local user store), `archive/` (packs and indexes), `audit/`
//! (the audit log), `access/` (role grants, local passwords, API tokens) and `state/`
//! (checkpoints, run history, run locks). The directory is created `0700` and every file the process writes is `0600` (the binaries set a `077` umask).
//! Credentials open every mailbox of a tenant, so commands that manage credentials
//! or profiles refuse a directory someone else owns or could write to.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// Name of the environment variable that names the data directory.
pub const DATA_DIR_ENV: &str = "M365_ARCHIVER_DATA";

/// The data directory a binary uses: `flag` (`--data-dir`), else [`DATA_DIR_ENV`],
/// else [`platform_data_dir`]. `env` reads an environment variable (the binary
/// passes `std::env::var_os`; the service never reads the environment itself).
pub fn resolve_data_dir(
    flag: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = env(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let text = |name: &str| env(name).and_then(|v| v.into_string().ok());
    platform_data_dir(text("XDG_DATA_HOME").as_deref(), text("HOME").as_deref())
}

/// The data directory to use when neither `--data-dir` nor [`DATA_DIR_ENV`] is given:
/// `$XDG_DATA_HOME/m365-archiver`, else `~/.local/share/m365-archiver`
/// (`~/Library/Application Support/m365-archiver` on macOS).
///
/// `xdg_data_home` and `home` are the values of `XDG_DATA_HOME` and `HOME`, read by the caller.
pub fn platform_data_dir(xdg_data_home: Option<&str>, home: Option<&str>) -> Result<PathBuf> {
    if cfg!(target_os = "macos")
        && let Some(home) = home.filter(|h| !h.is_empty())
    {
        return Ok(Path::new(home).join("Library/Application Support/m365-archiver"));
    }
    if let Some(xdg) = xdg_data_home.filter(|x| Path::new(x).is_absolute()) {
        return Ok(Path::new(xdg).join("m365-archiver"));
    }
    if let Some(home) = home.filter(|h| !h.is_empty()) {
        return Ok(Path::new(home).join(".local/share/m365-archiver"));
    }
    Err(ServiceError::invalid(format!(
        "no data directory: pass --data-dir DIR or set {DATA_DIR_ENV} (neither XDG_DATA_HOME nor HOME is set)"
    )))
}

/// What a command is about to do with the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only (listing, searching, stats): the directory must exist.
    Read,
    /// Writes archives, users or state: created if missing, must be writable.
    Write,
    /// Manages credentials or profiles: like `Write`, and the directory must be
    /// owned by the caller and writable by nobody else.
    Admin,
}

/// An opened data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens (and for [`Access::Write`]/[`Access::Admin`] creates, `0700`) the data directory
    /// at `root`, checking what `access` requires. Errors name the directory and the fix.
    pub fn open(root: &Path, access: Access) -> Result<Self> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| ServiceError::io("cannot resolve the current directory", ".", e))?
                .join(root)
        };
        match fs::metadata(&root) {
            Ok(meta) if !meta.is_dir() => {
                return Err(ServiceError::invalid(format!(
                    "data directory {} is not a directory",
                    root.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if access == Access::Read {
                    return Err(ServiceError::not_found(format!(
                        "data directory {} does not exist: nothing has been set up there yet \
                         (add credentials with `m365-archiver credentials add`, or pass --data-dir)",
                        root.display()
                    )));
                }
                create_private_dir_all(&root)?;
            }
            Err(e) => {
                return Err(ServiceError::io("cannot access data directory", &root, e));
            }
        }
        let dir = Self { root };
        if access == Access::Admin {
            dir.check_private()?;
        }
        if access != Access::Read {
            dir.check_writable()?;
        }
        Ok(dir)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `credentials/`: one TOML per app registration.
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials")
    }

    /// `profiles/`: one TOML per profile.
    pub fn profiles(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// `users/`: the local user store.
    pub fn users(&self) -> PathBuf {
        self.root.join("users")
    }

    /// `archive/`: packs, record log and indexes.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// `audit/`: the audit log and its anchor.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// `access/`: role grants, unblocks, local passwords and API tokens
    /// (`access.json`, and the lock its writers take).
    pub fn access(&self) -> PathBuf {
        self.root.join("access")
    }

    /// `state/`: checkpoints, run history and run locks.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `users.db`: the local user store (SQLite). Earlier versions kept the users in a
    /// sled database in `users/` ([`DataDir::users`]), migrated on first open.
    pub fn users_db(&self) -> PathBuf {
        self.root.join("users.db")
    }

    /// `settings.toml`: options of the whole installation.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("settings.toml")
    }

    /// `state/checkpoints`: per profile and mailbox, the folders' delta cursors.
    pub fn checkpoints(&self) -> PathBuf {
        self.state().join("checkpoints")
    }

    /// `governance`: retention policies, legal holds and pending erasures
    /// (`governance.json`).
    pub fn governance(&self) -> PathBuf {
        self.root.join("governance")
    }

    /// `state/history`: one JSON line per finished run.
    pub fn history(&self) -> PathBuf {
        self.state().join("history")
    }

    /// `state/locks`: one lock file per profile, held while it runs.
    pub fn locks(&self) -> PathBuf {
        self.state().join("locks")
    }

    /// Creates a sub-directory (`0700`) if missing and returns its path.
    pub fn ensure(&self, sub: &Path) -> Result<PathBuf> {
        let path = if sub.is_absolute() {
            sub.to_path_buf()
        } else {
            self.root.join(sub)
        };
        if !path.is_dir() {
            create_private_dir_all(&path)?;
        }
        Ok(path)
    }

    /// Refuses a directory that another user owns or that group or others may write to.
    pub fn check_private(&self) -> Result<()> {
        check_private_path(&self.root)?;
        for sub in [self.credentials(), self.profiles()] {
            if sub.exists() {
                check_private_path(&sub)?;
            }
        }
        Ok(())
    }

    /// Proves the directory accepts new files (without leaving anything behind).
    fn check_writable(&self) -> Result<()> {
        tempfile::Builder::new()
            .prefix(".write-check")
            .tempfile_in(&self.root)
            .map(drop)
            .map_err(|e| {
                ServiceError::io("cannot create a file in", &self.root, e).context(format!(
                    "data directory {} is not writable: fix its permissions or pass another --data-dir",
                    self.root.display()
                ))
            })
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

fn check_private_path(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| ServiceError::io("cannot access", path, e))?;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(ServiceError::forbidden(format!(
            "refusing to use {}: it is owned by uid {}, not by you (uid {me}). Credentials and profiles \
             give access to every mailbox of the tenant; use a directory you own (chown it or pass --data-dir)",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(ServiceError::forbidden(format!(
            "refusing to use {}: it is writable by {} (mode {mode:03o}). Credentials and profiles give \
             access to every mailbox of the tenant; run `chmod 700 {}`",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        )));
    }
    Ok(())
}

fn create_private_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path)
        .map_err(|e| ServiceError::io("cannot create data directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| ServiceError::io("cannot make private (chmod 700)", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error::chain;

    #[test]
    fn the_flag_wins_then_the_variable_then_the_platform() {
        let env = |name: &str| match name {
            DATA_DIR_ENV => Some("/from/env".into()),
            "HOME" => Some("/home/a".into()),
            _ => None,
        };
        let none = |name: &str| (name == "HOME").then(|| "/home/a".into());
        assert_eq!(
            resolve_data_dir(Some("/flag".into()), &env).unwrap(),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_data_dir(None, &env).unwrap(),
            PathBuf::from("/from/env")
        );
        if !cfg!(target_os = "macos") {
            assert_eq!(
                resolve_data_dir(None, &none).unwrap(),
                PathBuf::from("/home/a/.local/share/m365-archiver")
            );
        }
        assert!(resolve_data_dir(None, &|_: &str| None).is_err());
    }

    #[test]
    fn platform_dir_prefers_xdg_then_home() {
        if cfg!(target_os = "macos") {
            return;
        }
        assert_eq!(
            platform_data_dir(Some("/x/data"), Some("/home/a")).unwrap(),
            PathBuf::from("/x/data/m365-archiver")
        );
        assert_eq!(
            platform_data_dir(Some("relative"), Some("/home/a")).unwrap(),
            PathBuf::from("/home/a/.local/share/m365-archiver")
        );
        assert_eq!(
            platform_data_dir(None, Some("/home/a")).unwrap(),
            PathBuf::from("/home/a/.local/share/m365-archiver")
        );
        assert!(platform_data_dir(None, None).is_err());
    }

    #[test]
    fn read_access_does_not_create() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = DataDir::open(&missing, Access::Read).unwrap_err();
        assert!(chain(&err).contains("does not exist"));
        assert!(!missing.exists());
    }

    #[test]
    fn write_access_creates_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        DataDir::open(&dir, Access::Write).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "write check leaves nothing"
        );
    }

    #[test]
    fn admin_access_refuses_group_writable_dir() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o770)).unwrap();
        let err = DataDir::open(tmp.path(), Access::Admin).unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains("writable by its group"), "{msg}");
        assert!(DataDir::open(tmp.path(), Access::Write).is_ok());
    }

    #[test]
    fn a_file_is_not_a_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(DataDir::open(&file, Access::Read).is_err());
        let err = DataDir::open(&file.join("sub"), Access::Write).unwrap_err();
        assert!(chain(&err).contains("sub"));
    }
}
