//! One module per command group.

pub mod access;
pub mod archive;
pub mod audit;
pub mod credentials;
#[cfg(feature = "demo")]
pub mod demo;
pub mod erase;
pub mod hold;
pub mod profile;
pub mod restore;
pub mod retention;
pub mod transfer;
pub mod users;
