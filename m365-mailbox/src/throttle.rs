//! Per-mailbox admission control, shared by every task of the process.
//!
//! Outlook limits each app, per mailbox, to 4 concurrent requests and 10,000 requests per
//! 10 minutes, and answers 429 with `Retry-After` beyond that. Each mailbox therefore gets
//! one gate (`m365_auth::transport::ResourceGate`) in a process-wide registry, keyed by
//! Graph root and mailbox ([`gate_key`]), so every [`crate::GraphMailboxSource`] of the
//! process talking to the same mailbox shares one.

pub use m365_auth::transport::{
    Admission, GateLimits, GateRegistry as ThrottleRegistry, ResourceGate as MailboxGate,
};

/// The registry key of a mailbox's gate: the API root and the mailbox, case-folded.
pub fn gate_key(api: &url::Url, mailbox: &str) -> String {
    format!("{}|{}", api.as_str(), mailbox.to_lowercase())
}
