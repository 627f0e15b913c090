//! Shared helpers for the self-contained examples.
