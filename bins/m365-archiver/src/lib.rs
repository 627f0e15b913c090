//! What the `m365-archiver` command line and the `m365-archiverd` service share as
//! processes: logging, the file-creation mask, and the [`archiver_service::Service`]
//! over the data directory named by the flag or the environment.
//!
//! Nothing here holds archiving logic: the use cases live in `archiver-service`.

use std::path::PathBuf;
use std::sync::Arc;

use archiver_service::{Service, ServiceOptions};

pub mod logging;

/// Makes every file and directory this process creates private to its owner
/// (`0600` files, `0700` directories), whatever the library that creates them.
pub fn restrict_umask() {
    // SAFETY: umask only changes the process file-creation mask; it cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o077);
    }
}

/// The data directory: `flag` (`--data-dir`), else `$M365_ARCHIVER_DATA`, else the
/// platform data directory (the rule is the service's; the environment is read here).
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, archiver_service::ServiceError> {
    archiver_service::resolve_data_dir(flag, &|name| std::env::var_os(name))
}

/// A secret kept as an environment-variable reference, read from this process's environment.
fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The service over `data_dir`, resolving secret references from the environment.
pub fn service(data_dir: PathBuf) -> Service {
    Service::new(
        data_dir,
        ServiceOptions {
            secret_lookup: Arc::new(env_secret),
            os_user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty()),
            ..ServiceOptions::default()
        },
    )
}
