//! Turning archived mail into what a browser may safely show: sanitised HTML,
//! the headers that confine it, and safe names for downloads.
