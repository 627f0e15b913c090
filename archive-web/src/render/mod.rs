//! Turning archived mail into what a browser may safely show: sanitised HTML,
//! the headers that confine it, and safe names for downloads; and the pages,
//! as pure functions of plain view models (no HTTP here).
//!
//! - [`sanitize`]: mail HTML through a strict allow-list, `cid:` images
//!   rewritten, remote images blocked and counted; plain text as HTML.
//! - [`csp`]: the Content Security Policies and the sandboxed message frame.
//! - [`disposition`]: safe download names, `Content-Disposition`, download
//!   headers.
//! - [`models`] and [`pages`]: the view models and the pages built from them.

pub mod csp;
pub mod disposition;
pub mod models;
pub mod pages;
pub mod sanitize;
mod style;

pub use csp::{MESSAGE_BODY_CSP, PAGE_CSP, iframe_tag, message_document};
pub use disposition::{SAFE_DOWNLOAD_HEADERS, content_disposition, safe_file_name};
pub use models::*;
pub use pages::{
    APP_CSS, audit_page, error_page, folders_page, holds_page, layout, message_page,
    safe_return_to, search_page, signin_page,
};
pub use sanitize::{BodyPolicy, SanitizedHtml, escape_html, sanitize_html, text_to_html};
