//! Wiring shared by the `m365-archiver` command line and the `m365-archiverd` service:
//! the data directory and its permissions, logging, and the assembly of the library
//! crates (credentials, Graph sources, user store, archive, profile engine) from it.
//!
//! Nothing here holds archiving logic: that lives in the library crates.

pub mod datadir;
pub mod logging;
pub mod settings;
pub mod wiring;
