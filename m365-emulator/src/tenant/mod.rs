//! The emulated tenant: users, mailboxes, folders and messages, generated deterministically from a seed.
