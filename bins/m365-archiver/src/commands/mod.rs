//! One module per command group.

pub mod archive;
pub mod credentials;
pub mod demo;
pub mod profile;
pub mod users;

/// The error of a command whose library is not there yet.
pub(crate) fn not_available(what: &str) -> anyhow::Error {
    anyhow::anyhow!("`{what}` is not available in this build")
}
