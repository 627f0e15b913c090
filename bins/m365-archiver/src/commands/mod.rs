//! One module per command group.

pub mod archive;
pub mod credentials;
pub mod demo;
pub mod profile;
pub mod transfer;
pub mod users;
