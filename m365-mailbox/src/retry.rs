//! Retry rules of the mailbox client: the workspace's one [`RetryPolicy`] and
//! `Retry-After` parser, shared with every Graph client (see `m365_auth::transport`).
//! Faults back off with jitter; 429s wait what `Retry-After` says, capped.

pub use m365_auth::transport::{RetryPolicy, parse_retry_after};
