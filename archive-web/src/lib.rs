//! The archive's web pages and JSON API (`/api/v1`): sign-in (Entra ID OpenID
//! Connect and local accounts), sessions, roles, search, browse, view, export,
//! restore, holds and the audit viewer, as an [`axum::Router`] built from the
//! seams of `archiver-service`. Every rule (who may see what) lives in the
//! service; this crate turns HTTP into use-case calls and results into pages.

pub mod render;
